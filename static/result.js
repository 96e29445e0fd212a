// The result page's enhancements (the page works without them): one-button players, focus on the answer,
// votes without a reload, a copy-link button, and the list of recent results kept in this browser.
(function () {
  "use strict";

  function clock(seconds) {
    // Whole seconds rounded down, as the page and browsers' own players show a length.
    var s = Math.floor(seconds || 0);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  // Players: one button each (one tab stop), named for what it plays; Left and Right seek 5 s.
  document.querySelectorAll(".player").forEach(function (box) {
    var audio = box.querySelector("audio");
    if (!audio) return;
    var what = audio.getAttribute("aria-label");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary play";
    button.setAttribute("aria-keyshortcuts", "ArrowLeft ArrowRight");
    var bar = document.createElement("span");
    bar.className = "player-bar";
    bar.setAttribute("aria-hidden", "true");
    var fill = document.createElement("span");
    fill.className = "player-fill";
    bar.appendChild(fill);
    var time = document.createElement("span");
    time.className = "player-time";
    time.setAttribute("aria-hidden", "true");

    function show() {
      var playing = !audio.paused;
      button.textContent = playing ? "Pause" : "Play";
      button.setAttribute("aria-label", (playing ? "Pause " : "Play ") + what);
      time.textContent = clock(audio.currentTime) + " / " + clock(audio.duration);
      fill.style.width = audio.duration ? (100 * audio.currentTime / audio.duration) + "%" : "0";
    }
    button.addEventListener("click", function () {
      if (audio.paused) audio.play(); else audio.pause();
    });
    button.addEventListener("keydown", function (event) {
      var step = {ArrowLeft: -5, ArrowRight: 5}[event.key];
      if (!step || !audio.duration) return;
      event.preventDefault();
      audio.currentTime = Math.min(audio.duration, Math.max(0, audio.currentTime + step));
    });
    bar.addEventListener("click", function (event) {   // a pointer seeks; the keyboard has the arrows
      var box = bar.getBoundingClientRect();
      if (audio.duration) audio.currentTime = audio.duration * (event.clientX - box.left) / box.width;
    });
    ["play", "pause", "timeupdate", "loadedmetadata", "ended", "seeked"].forEach(function (name) {
      audio.addEventListener(name, show);
    });
    audio.controls = false;
    audio.hidden = true;
    box.classList.add("enhanced");
    box.appendChild(button);
    box.appendChild(bar);
    box.appendChild(time);
    show();
  });

  var answer = document.querySelector(".answer[data-result-url]");

  // After a result loads, the answer has the focus (a vote's return to its pick keeps the pick in view).
  if (answer && !location.hash) document.getElementById("answer").focus();

  // Votes: the form's own POST, sent in the background; the buttons say which vote is kept.
  document.querySelectorAll("form.vote").forEach(function (form) {
    var status = form.querySelector(".vote-status");
    form.querySelectorAll("button[name=vote]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.fetch) return;   // the plain form then posts, and the page comes back
        event.preventDefault();
        var data = new FormData(form);
        data.append("vote", button.value);
        fetch(form.action, {method: "POST", body: data, redirect: "manual"}).then(function (response) {
          // The form's answer is a redirect back to the page (opaque here): anything else is an error.
          if (response.type !== "opaqueredirect" && !response.ok) throw new Error(String(response.status));
          form.querySelectorAll("button[name=vote]").forEach(function (b) {
            b.setAttribute("aria-pressed", String(b === button));
          });
          status.textContent = "Thanks: your vote is kept.";
        }).catch(function () {
          status.textContent = "The vote could not be sent. Try again in a moment.";
        });
      });
    });
  });

  // Copy link: the result's own URL, to the clipboard (or selected in a prompt where that is refused).
  var share = document.querySelector(".share");
  if (answer && share) {
    var copy = share.querySelector(".copy-link");
    var copied = share.querySelector(".copy-status");
    var link = new URL(answer.dataset.resultUrl, location.href).href;
    share.hidden = false;
    copy.addEventListener("click", function () {
      var done = function () { copied.textContent = "Link copied: " + link; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(link).then(done, function () { window.prompt("Copy this link:", link); });
      } else {
        window.prompt("Copy this link:", link);
      }
    });
  }

  // Recent results, newest first, in this browser's localStorage.
  var KEY = "soundalike.recent";
  var MAX_RECENT = 10;
  var recent = [];
  try {
    recent = JSON.parse(localStorage.getItem(KEY) || "[]");
    if (!Array.isArray(recent)) recent = [];
  } catch (error) {
    recent = [];   // storage refused (private mode) or damaged: no list
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(recent)); } catch (error) { /* storage refused: no list */ }
  }
  if (answer) {
    var url = answer.dataset.resultUrl;
    recent = [{url: url, title: answer.dataset.resultTitle, answer: answer.dataset.resultAnswer,
               at: new Date().toISOString()}]
      .concat(recent.filter(function (r) { return r && r.url !== url; })).slice(0, MAX_RECENT);
    save();
  }
  var section = document.querySelector("section.recent");
  if (section) {
    var list = section.querySelector(".recent-list");
    var render = function () {
      list.textContent = "";
      recent.forEach(function (r) {
        var item = document.createElement("li");
        var a = document.createElement("a");
        a.href = r.url;
        a.textContent = r.title + ": " + r.answer;
        if (answer && r.url === answer.dataset.resultUrl) a.setAttribute("aria-current", "page");
        item.appendChild(a);
        list.appendChild(item);
      });
      section.hidden = recent.length === 0;
    };
    section.querySelector(".forget-recent").addEventListener("click", function () {
      recent = [];
      save();
      render();
      var main = document.getElementById("main");
      if (main) main.focus();
    });
    render();
  }
}());
