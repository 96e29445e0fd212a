"""Soundalike's web service: the upload page, the JSON API and the audio players' files.

    python app.py                    (what `make run` does: the production server, model/service/server.py)
    python app.py --no-demo          (the same, serving the data folder as it is: no demo library built)
    flask --app app run              (Flask's development server)

Configuration comes from SOUNDALIKE_* environment variables (model/service/settings.py), or from the
mapping given to `create_app`.
"""
from __future__ import annotations

import argparse
import io
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException

from model.atomic import remove_leftovers
from model.audio.decoding import AudioError, decode
from model.audio.tags import read_tags
from model.network.classifier import GenreClassifier
from model.service.admission import Admission, Busy
from model.service.feedback import VOTES, Feedback
from model.service.headers import SECURITY_HEADERS, content_disposition
from model.service.library import Analysis, Library, Recommendation
from model.service.origin import foreign_sender
from model.service.playback import (BROWSER_TYPES, COPY_SUFFIX, PlaybackLimits, browser_plays, library_copy_name,
                                    prune_copies, write_copy)
from model.service.playlists import MIMETYPE as M3U_MIMETYPE, m3u8
from model.service.server import prepare_process, serve
from model.service.settings import FEEDBACK_FILE, FORM_OVERHEAD_BYTES, from_env
from model.service.uploads import Uploads, accept_attribute, audio_extension, format_names
from model.stores import demo_library
from model.stores.feature_store import Store, Track
from model.stores.naming import describe, display_name

# "More like this" playlists: how many tracks unless asked (?n=), and the most.
PLAYLIST_N, PLAYLIST_MAX = 20, 200
# For operators, in /api/health (the page shows listeners only what they need).
OPERATOR_HELP = {
    "index_a_collection": "python preprocess.py /path/to/music --data data/music "
                          "(GTZAN as Kaggle or its tarball lay it out, one sub-folder per genre, or a tagged "
                          "Artist/Album library: docs/own-music.md)",
    "serve_it": "SOUNDALIKE_DATA_DIR=data/music make run",
    "more": "docs/indexing.md, and README.md's 'Configuration'",
    "tempos": "a store built before tempos were serves picks without tempo reasons ('tempos': false): "
              "run preprocess.py on its collection again to add them",
    "feedback": "listeners' votes on picks: /api/feedback/summary (counts), /api/feedback/votes.csv (every vote)",
}
# How a genre's name is written for a listener, where capitalising its folder name is not it.
GENRE_NAMES = {"hiphop": "Hip-hop"}


def genre_name(genre: str) -> str:
    return GENRE_NAMES.get(genre, genre[:1].upper() + genre[1:])


class BadUpload(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def default_config() -> dict[str, Any]:
    s = from_env()
    return {"DATA_DIR": s.data_dir, "WEIGHTS_DIR": s.weights_dir, "UPLOAD_DIR": s.upload_dir,
            "FEATURES": s.features, "SCOPE": s.scope, "MAX_UPLOADS": s.max_uploads,
            "MAX_UPLOADS_BYTES": int(s.max_uploads_mb * 1024 * 1024),
            "MAX_FILE_BYTES": s.max_file_bytes,
            "MAX_ANALYSES": s.max_analyses, "MAX_QUEUED": s.max_queued, "RUNTIME": s.runtime,
            "PLAYBACK_MAX_S": s.playback_max_s,
            "MIN_PICK_S": s.min_pick_s, "FEEDBACK_DB": s.feedback_db, "MAX_VOTES": s.max_votes}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The service, with its store, classifier and index loaded and warmed up."""
    app = Flask(__name__)
    app.config.update(default_config())
    app.config.update(config or {})
    limit = app.config["MAX_FILE_BYTES"]
    app.config["MAX_CONTENT_LENGTH"] = limit + FORM_OVERHEAD_BYTES
    store = Store(app.config["DATA_DIR"])
    weights_dir = Path(app.config["WEIGHTS_DIR"])
    library = Library(store, GenreClassifier.load(weights_dir, app.config["RUNTIME"]), weights_dir,
                      features=app.config["FEATURES"], scope=app.config["SCOPE"], min_pick_s=app.config["MIN_PICK_S"])
    feedback_path = Path(app.config["FEEDBACK_DB"] or Path(app.config["DATA_DIR"]) / FEEDBACK_FILE)
    try:
        feedback: Feedback | None = Feedback(feedback_path, app.config["MAX_VOTES"])
    except (sqlite3.Error, OSError) as reason:
        # A read-only data folder serves everything else; only votes are not taken.
        app.logger.warning("votes are not kept: %s cannot be written (%s); set SOUNDALIKE_FEEDBACK_DB",
                           feedback_path, reason)
        feedback = None
    playback = PlaybackLimits(max_s=app.config["PLAYBACK_MAX_S"])
    uploads = Uploads(app.config["UPLOAD_DIR"], app.config["MAX_UPLOADS"], app.config["MAX_UPLOADS_BYTES"], playback)
    # Playable copies of library files in formats browsers do not play, made on first request.
    library_copies = Path(app.config["UPLOAD_DIR"]) / "library-copies"
    pruned = 0
    if library_copies.is_dir():
        remove_leftovers(library_copies)   # a killed server's half-written copies
        # Copies of files a rescan removed or changed, or of another library served before, are never asked for.
        pruned = prune_copies(library_copies, (Path(t.source) for t in store.tracks()))
    admission = Admission(app.config["MAX_ANALYSES"], app.config["MAX_QUEUED"])
    about = {"tracks": len(store), "genres": {g: len(store.tracks(g)) for g in store.genres},
             "demo": demo_library.is_demo(store), "features": library.features, "scope": library.scope,
             "limit_mb": limit / 1024 / 1024, "min_pick_s": library.min_pick_s, "tempos": library.tempos_known}
    app.logger.setLevel(logging.INFO)
    app.logger.info("Soundalike: %d tracks from %s (%s), features %s, scope %s", about["tracks"], store.root,
                    "demo library" if about["demo"] else "own store", library.features, library.scope)
    if pruned:
        app.logger.info("removed %d playable copies of library files no longer in the store", pruned)

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    def receive() -> tuple[Analysis, str, str, dict]:
        """Check, keep and analyse the posted file: (analysis, upload id, the sender's file name, its tags)."""
        file = request.files.get("file")
        if file is None:
            raise BadUpload(400, "No file was sent. Post it as the multipart field 'file'.")
        name = file.filename or "upload"
        the_file = f"The file “{name if len(name) <= 80 else name[:79] + '…'}”"
        size = file.stream.seek(0, io.SEEK_END)
        file.stream.seek(0)
        if size > limit:
            raise BadUpload(413, too_large(the_file))
        # The file's bytes, decoded samples and features are held only while it has a turn.
        with admission.turn():
            data = file.read()
            if not data:
                raise BadUpload(400, f"{the_file} is empty. Choose a file that holds a song." if file.filename
                                else "No file was chosen. Choose a song to analyse.")
            extension = audio_extension(data)
            if extension is None:
                raise BadUpload(415, f"{the_file} is not an audio file that Soundalike reads. "
                                     f"Choose a song in {format_names()}.")
            try:
                audio = decode(data)   # all of it: all of it is searched for library tracks
            except AudioError as error:
                raise BadUpload(422, f"{the_file} cannot be analysed: {error}. "
                                     "Choose another song, or another copy of this one.") from None
            upload_id = uploads.save(data, extension)
            tags = read_tags(io.BytesIO(data))
            return library.analyse(audio), upload_id, name, {"title": tags.title, "artist": tags.artist,
                                                             "album": tags.album, "year": tags.year}

    def library_track(track: Track) -> dict:
        """A library track as the API and the page name it, with its player's and its playlist's URLs."""
        return {**describe(track), "audio_url": url_for("library_audio", track_id=track.id),
                "playlist_url": url_for("similar_playlist", track_id=track.id)}

    def picks(recommendations: list[Recommendation]) -> list[dict]:
        """Picks (or "more like this" tracks) as the API answers them, best first."""
        return [{**library_track(r.track), "rank": rank, "distance": r.distance, "similarity": r.similarity,
                 "percentile": round(r.percentile, 1), "why": list(r.why),
                 "reasons": [reason.as_dict() for reason in r.reasons]}
                for rank, r in enumerate(recommendations, 1)]

    def keep(analysis: Analysis, upload_id: str, filename: str, tags: dict) -> tuple[dict, str]:
        """The analysis as the API answers it, kept beside its upload so that its page has a URL
        of its own: (the answer, the result's id)."""
        answer = {
            "genre": analysis.genre,
            "probabilities": analysis.probabilities,
            "match": None if analysis.match is None else library_track(analysis.match),
            "excerpt": analysis.excerpt,
            "contains": [{**library_track(c.track), "start_s": c.start_s, "end_s": c.end_s}
                         for c in analysis.contains],
            "searched_s": [list(span) for span in analysis.searched_s],
            "picks_genre": analysis.picks_genre,
            "key": None if analysis.key is None else analysis.key.name,
            "tempo_bpm": None if analysis.tempo_bpm is None else round(analysis.tempo_bpm, 1),
            "recommendations": picks(analysis.recommendations),
            "min_pick_s": library.min_pick_s,
            "duration_s": analysis.duration_s,
            "truncated": analysis.truncated,
            "unsure": analysis.unsure_reason is not None,
            "unsure_reason": analysis.unsure_reason,
            "filename": filename,
            # The upload's own tags; its name on the page: "Artist – Title", else the file's name.
            "tags": tags,
            "name": (f"{tags['artist']} – {tags['title']}" if tags["artist"] else tags["title"]) if tags["title"]
            else filename,
            "upload_url": url_for("upload_audio", upload_id=upload_id)}
        return answer, uploads.save_result(upload_id, answer)

    def playlist_length() -> int:
        n = request.args.get("n", str(PLAYLIST_N))
        if not n.isdigit() or not 1 <= int(n) <= PLAYLIST_MAX:
            raise BadUpload(400, f"n is how many tracks the playlist holds: a whole number from 1 to {PLAYLIST_MAX}.")
        return int(n)

    def seed(track_id: str) -> Track:
        row = library.row(track_id)
        if row is None:
            raise BadUpload(404, f"There is no library track {track_id!r}.")
        return library.tracks[row]

    def send_audio(path: Path, name: str) -> Response:
        """A file from disk (Range requests answered, HEAD without reading it), named `name`."""
        media_type = BROWSER_TYPES[".wav" if path.name.endswith(COPY_SUFFIX) else path.suffix.lower()]
        # werkzeug would put the file's own name in the header, and refuses one with a newline (500).
        response = send_file(path, mimetype=media_type, download_name="audio")
        response.headers["Content-Disposition"] = content_disposition(name)
        return response

    def library_copy(source: Path) -> Path:
        """The playable copy of a library file browsers do not play, made once (one turn of the
        analyses: its memory is one block, its time bounded by `playback`)."""
        copy = library_copies / library_copy_name(source)
        if not copy.is_file():
            with admission.turn():
                if not copy.is_file():
                    write_copy(source, copy, playback)
        return copy

    def error(status: int, message: str) -> tuple[Response | str, int]:
        if wants_json():
            return jsonify(error=message, status=status), status
        return render_template("index.html", error=message), status

    @app.before_request
    def start_clock() -> None:
        g.start = time.perf_counter()

    @app.after_request
    def report_time(response: Response) -> Response:
        # Server-side time, for benchmarks and browsers' developer tools.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - g.start) * 1000:.1f}"
        response.headers.update(SECURITY_HEADERS)
        if response.status_code in (301, 308) and response.location:
            # Werkzeug's redirect of a `//` path is absolute, built from the request's Host header:
            # a relative one points at the same place and repeats nothing the client sent.
            target = urlsplit(response.location)
            response.location = target.path + (f"?{target.query}" if target.query else "")
        return response

    def too_large(the_file: str = "The file") -> str:
        return (f"{the_file} is larger than the {about['limit_mb']:g} MB limit. "
                "Choose a smaller file, or a shorter excerpt of the song.")

    @app.context_processor
    def page_context() -> dict[str, Any]:
        return {"about": about, "formats": format_names(), "accept": accept_attribute(),
                "limit_bytes": limit, "genre_name": genre_name}

    @app.errorhandler(BadUpload)
    def bad_upload(e: BadUpload):
        return error(e.status, e.message)

    @app.errorhandler(Busy)
    def busy(e: Busy):
        response, status = error(503, f"Soundalike is busy: {admission.running} songs are being analysed and "
                                      f"{admission.waiting} more are waiting. Try again in {e.retry_after_s} s.")
        response = app.make_response((response, status))
        response.headers["Retry-After"] = str(e.retry_after_s)
        return response

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 413:
            # Werkzeug's form limits (parts, text fields) also end in a 413; only a body over the
            # limit is about the file.
            body = request.content_length
            message = too_large() if body is None or body > app.config["MAX_CONTENT_LENGTH"] else (
                "The form has too many parts or too long a text field. Send only the file, as the field 'file'.")
            return error(413, message)
        messages = {404: "There is nothing here.", 405: f"{request.method} is not allowed here."}
        return error(e.code or 500, messages.get(e.code, e.description))

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        app.logger.exception("unexpected error on %s", request.path)
        return error(500, "Something went wrong on the server; the error is logged. Try again later.")

    @app.get("/")
    def index():
        return render_template("index.html")

    @app.post("/")
    def analyse_page():
        # Post, then redirect, then get: a reload, or back and forward, never posts the song again.
        _, result_id = keep(*receive())
        return redirect(url_for("result_page", result_id=result_id), 303)

    @app.get("/results/<result_id>")
    def result_page(result_id: str):
        result = uploads.result(result_id)
        if result is None:
            return error(404, "This result is no longer kept (only the latest uploads are). Analyse the song again.")
        return render_template("result.html", result=result, result_id=result_id,
                               votes=None if feedback is None else feedback.votes_of(result_id))

    def kept_votes() -> Feedback:
        if feedback is None:
            raise BadUpload(503, "This server does not keep votes (its data folder cannot be written). "
                                 "Tell its operator.")
        return feedback

    def record_vote(result_id: str, pick_id: str, vote: str) -> None:
        sender = foreign_sender(request.headers, request.host)
        if sender is not None:   # another site's page posting in the listener's name (CSRF)
            raise BadUpload(403, f"This vote was sent by a page of {sender}, not by Soundalike's own result page, "
                                 "so it was not counted. Open the result on Soundalike and vote there.")
        result = uploads.result(result_id)
        if result is None:
            raise BadUpload(404, "This result is no longer kept (only the latest uploads are): its picks "
                                 "cannot be voted on.")
        pick = next((p for p in result["recommendations"] if p["id"] == pick_id), None)
        if pick is None:
            raise BadUpload(400, f"{pick_id!r} is not one of this result's picks. Vote on a pick of the result.")
        if vote not in VOTES:
            raise BadUpload(400, f"A vote is {' or '.join(map(repr, VOTES))}, not {vote!r}. Send one of them.")
        main = next((r["kind"] for r in pick.get("reasons", []) if r.get("main")), None)
        genre = result["match"]["genre"] if result.get("match") else result["genre"]
        kept_votes().vote(result_id, pick_id, vote, pick.get("rank", result["recommendations"].index(pick) + 1),
                      pick["genre"], genre, pick.get("percentile"), main)

    @app.post("/results/<result_id>/feedback")
    def vote_page(result_id: str):
        # A plain form: works without JavaScript, then back to the pick that was voted on.
        record_vote(result_id, request.form.get("pick", ""), request.form.get("vote", ""))
        return redirect(url_for("result_page", result_id=result_id, voted=request.form.get("pick")) +
                        f"#pick-{request.form.get('pick')}", 303)

    @app.post("/api/feedback")
    def vote_api():
        body = request.get_json(silent=True) or request.form
        result_id, pick_id, vote = (str(body.get(k, "")) for k in ("result_id", "pick_id", "vote"))
        record_vote(result_id, pick_id, vote)
        return jsonify(result_id=result_id, pick_id=pick_id, vote=vote)

    @app.get("/api/feedback/summary")
    def feedback_summary():
        return jsonify(kept_votes().summary())

    @app.get("/api/feedback/votes.csv")
    def feedback_csv():
        return Response(kept_votes().csv(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=soundalike-votes.csv"})

    @app.post("/api/analyze")
    def analyse_api():
        answer, result_id = keep(*receive())
        return jsonify(**answer, result_url=url_for("result_page", result_id=result_id))

    @app.get("/api/similar/<track_id>")
    def similar(track_id: str):
        """"More like this": the n library tracks nearest a library track, by the picks' rules."""
        track, n = seed(track_id), playlist_length()
        return jsonify(track=library_track(track),
                       similar=picks(library.similar(track_id, n)),
                       playlist_url=url_for("similar_playlist", track_id=track_id, n=n))

    @app.get("/api/similar/<track_id>/playlist.m3u8")
    def similar_playlist(track_id: str):
        """The seed and its n nearest as an M3U playlist: URLs of this service's audio, or with
        ?paths=relative paths relative to the collection (to save beside it)."""
        track, n = seed(track_id), playlist_length()
        paths = request.args.get("paths", "urls")
        if paths not in ("urls", "relative"):
            raise BadUpload(400, "paths is 'urls' (this service's audio) or 'relative' (paths in the collection).")
        tracks = [track] + [r.track for r in library.similar(track_id, n)]

        def location(t: Track) -> str:
            if paths == "relative":
                return t.path or t.source   # a row stored before paths were is named by its absolute path
            return url_for("library_audio", track_id=t.id, _external=True)

        body = m3u8(f"More like {display_name(track)}", tracks, location)
        return Response(body, content_type=f"{M3U_MIMETYPE}; charset=utf-8",
                        headers={"Content-Disposition": content_disposition("more-like-this.m3u8", "attachment")})

    @app.get("/api/health")
    def health():
        return jsonify(status="ok", **about, operator=OPERATOR_HELP)

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.ico")

    @app.get("/audio/<track_id>")
    def library_audio(track_id: str):
        track = store.find(track_id)
        if track is None:
            return error(404, f"There is no library track {track_id!r}.")
        source = Path(track.source)
        if not source.is_file():
            return error(404, f"The audio of {track_id} is no longer where it was indexed.")
        if browser_plays(source):
            return send_audio(source, source.name)
        try:
            return send_audio(library_copy(source), f"{source.stem}.wav")
        except AudioError as e:
            return error(422, f"The audio of {track_id} cannot be played back: {e}.")

    @app.get("/uploads/<upload_id>")
    def upload_audio(upload_id: str):
        if uploads.path(upload_id) is None:
            return error(404, "There is no such upload (only the latest uploads are kept).")
        path = uploads.playable(upload_id)
        if path is None:
            return error(404, "This upload was analysed, but it does not decode far enough to be played back.")
        return send_audio(path, f"{upload_id.split('.')[0]}{path.suffix}")

    return app


def main(argv: list[str] | None = None) -> None:
    """The production server (model/service/server.py); an empty data folder gets the demo library first."""
    parser = argparse.ArgumentParser(description="Serve Soundalike with waitress on SOUNDALIKE_HOST:SOUNDALIKE_PORT.")
    parser.add_argument("--no-demo", action="store_true",
                        help="serve the data folder as it is, never building the demo library into it")
    args = parser.parse_args(argv)
    settings = from_env()
    if not args.no_demo:
        demo_library.main(["--if-empty", "--data", str(settings.data_dir)])
    prepare_process()   # before create_app starts any thread
    serve(create_app(), settings)


if __name__ == "__main__":
    main()
