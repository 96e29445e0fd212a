// Soundalike's pages work without this file; with it: the size limit checked before sending, upload
// progress and a busy button, drag and drop anywhere on the page, and one player at a time.
(function () {
  "use strict";

  // One player at a time: starting one pauses the others ("play" does not bubble, so capture it).
  document.addEventListener("play", function (event) {
    document.querySelectorAll("audio").forEach(function (audio) {
      if (audio !== event.target) audio.pause();
    });
  }, true);

  var form = document.querySelector("form.upload");
  var message = document.getElementById("message");
  if (!form || !message || !window.FormData) return;
  var input = form.querySelector("input[type=file]");
  var button = form.querySelector("button[type=submit]");
  var progress = form.querySelector(".progress");
  var bar = progress.querySelector("progress");
  var status = progress.querySelector(".status");
  var maxBytes = Number(form.dataset.maxBytes);

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  // The server's own sentences, for what can be told before sending.
  function problem(file) {
    if (!file) return "No file was chosen. Choose a song to analyse.";
    var named = "The file \u201c" + file.name + "\u201d";
    if (file.size === 0) return named + " is empty. Choose a file that holds a song.";
    if (file.size > maxBytes) {
      return named + " is larger than the " + form.dataset.limitMb +
        " MB limit. Choose a smaller file, or a shorter excerpt of the song.";
    }
    return "";
  }

  function working(text) {
    form.setAttribute("aria-busy", "true");
    button.disabled = true;
    button.textContent = text;
    progress.hidden = false;
  }

  function idle() {
    form.removeAttribute("aria-busy");
    button.disabled = false;
    button.textContent = "Analyse";
    progress.hidden = true;
  }

  function send() {
    var file = input.files[0];
    var why = problem(file);
    if (why) {
      say(why);
      input.focus();
      return;
    }
    say("");
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.onprogress = function (event) {
      if (!event.lengthComputable) return;
      var percent = Math.floor(100 * event.loaded / event.total);
      bar.value = percent;
      status.textContent = "Uploading " + file.name + ": " + percent + " %";
    };
    request.upload.onload = function () {
      bar.removeAttribute("value");   // indeterminate: the analysis takes a few seconds
      button.textContent = "Analysing\u2026";
      status.textContent = "Uploaded. Listening to " + file.name + "\u2026";
    };
    request.onload = function () {
      // The server answers a good upload with a redirect to its result's own URL.
      if (request.status === 200 && request.responseURL.indexOf("/results/") !== -1) {
        status.textContent = "Done. Opening the result\u2026";
        window.location.assign(request.responseURL);
        return;
      }
      var page = new DOMParser().parseFromString(request.responseText, "text/html");
      var error = page.getElementById("message");
      say((error && error.textContent.trim()) ||
        "The server answered " + request.status + ". Try again in a moment.");
      idle();
    };
    request.onerror = function () {
      say("The upload of \u201c" + file.name + "\u201d failed: the server could not be reached. " +
        "Check the connection and try again.");
      idle();
    };
    working("Uploading\u2026");
    bar.value = 0;
    status.textContent = "Uploading " + file.name + "\u2026";
    request.send(new FormData(form));
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    send();
  });
  input.addEventListener("change", function () {
    say(input.files.length ? problem(input.files[0]) : "");
  });

  // Drag and drop: a song dropped anywhere on the page is analysed at once.
  function dragging(on) {
    document.body.classList.toggle("dragging", on);
  }
  document.addEventListener("dragover", function (event) {
    event.preventDefault();
    dragging(true);
  });
  document.addEventListener("dragleave", function (event) {
    if (!event.relatedTarget) dragging(false);
  });
  document.addEventListener("drop", function (event) {
    event.preventDefault();
    dragging(false);
    if (!event.dataTransfer || !event.dataTransfer.files.length || button.disabled) return;
    input.files = event.dataTransfer.files;
    send();
  });
}());
