"""Soundalike's web service: the upload page, the JSON API and the audio players' files.

    python app.py                    (what `make run` does: the production server, model/service/server.py)
    flask --app app run              (Flask's development server)

Configuration comes from SOUNDALIKE_* environment variables (model/service/settings.py), or from the
mapping given to `create_app`.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import soundfile as sf
from flask import Flask, Response, g, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException

from model.audio.av_decode import EXTENSIONS as AV_EXTENSIONS, AvFile
from model.audio.decoding import AudioError, decode
from model.audio.tags import read_tags
from model.network.classifier import GenreClassifier
from model.service.admission import Admission, Busy
from model.service.library import Analysis, Library
from model.service.playlists import MIMETYPE as M3U_MIMETYPE, m3u8
from model.service.settings import FORM_OVERHEAD_BYTES, from_env
from model.service.uploads import Uploads, accept_attribute, audio_extension, format_names
from model.stores.demo_library import is_demo
from model.stores.feature_store import Store, Track
from model.stores.naming import describe, display_name

# What browsers play as it is; a library or upload file in another format is sent as WAV.
BROWSER_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
                 ".opus": "audio/ogg", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".mp4": "audio/mp4",
                 ".aac": "audio/aac", ".webm": "audio/webm"}
# "More like this" playlists: how many tracks unless asked (?n=), and the most.
PLAYLIST_N, PLAYLIST_MAX = 20, 200
# For operators, in /api/health (the page shows listeners only what they need).
OPERATOR_HELP = {
    "index_a_collection": "python preprocess.py /path/to/music --data data/music "
                          "(GTZAN as Kaggle or its tarball lay it out, one sub-folder per genre, or a tagged "
                          "Artist/Album library: docs/own-music.md)",
    "serve_it": "SOUNDALIKE_DATA_DIR=data/music make run",
    "more": "README.md: 'Index a collection' and 'Configuration'",
}


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
            "MAX_ANALYSES": s.max_analyses, "MAX_QUEUED": s.max_queued, "RUNTIME": s.runtime}


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
                      features=app.config["FEATURES"], scope=app.config["SCOPE"])
    uploads = Uploads(app.config["UPLOAD_DIR"], app.config["MAX_UPLOADS"], app.config["MAX_UPLOADS_BYTES"])
    admission = Admission(app.config["MAX_ANALYSES"], app.config["MAX_QUEUED"])
    about = {"tracks": len(store), "genres": {g: len(store.tracks(g)) for g in store.genres},
             "demo": is_demo(store), "features": library.features, "scope": library.scope,
             "limit_mb": limit / 1024 / 1024}
    app.logger.setLevel(logging.INFO)
    app.logger.info("Soundalike: %d tracks from %s (%s), features %s, scope %s", about["tracks"], store.root,
                    "demo library" if about["demo"] else "own store", library.features, library.scope)

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
                audio = decode(data, spans=library.spans)   # of a long song, only what is analysed
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

    def keep(analysis: Analysis, upload_id: str, filename: str, tags: dict) -> tuple[dict, str]:
        """The analysis as the API answers it, kept beside its upload so that its page has a URL
        of its own: (the answer, the result's id)."""
        answer = {
            "genre": analysis.genre,
            "probabilities": analysis.probabilities,
            "recommendations": [{**library_track(r.track), "distance": r.distance, "similarity": r.similarity,
                                 "why": list(r.why)} for r in analysis.recommendations],
            "match": None if analysis.match is None else library_track(analysis.match),
            "duration_s": analysis.duration_s,
            "truncated": analysis.truncated,
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

    def send_audio(path: Path) -> Response:
        if path.suffix.lower() in BROWSER_TYPES:
            return send_file(path, mimetype=BROWSER_TYPES[path.suffix.lower()])
        # Browsers do not play AU, AIFF, WMA or Matroska: send the same samples as WAV.
        wav = io.BytesIO()
        if path.suffix.lower() in AV_EXTENSIONS:
            with AvFile(path) as f, sf.SoundFile(wav, "w", f.samplerate, f.channels, format="WAV",
                                                 subtype="PCM_16") as out:
                for block in f.blocks():
                    out.write(block)
        else:
            data, sample_rate = sf.read(path, dtype="int16", always_2d=True)
            sf.write(wav, data, sample_rate, format="WAV", subtype="PCM_16")
        wav.seek(0)
        return send_file(wav, mimetype="audio/wav", download_name=f"{path.stem}.wav")

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
        return response

    def too_large(the_file: str = "The file") -> str:
        return (f"{the_file} is larger than the {about['limit_mb']:g} MB limit. "
                "Choose a smaller file, or a shorter excerpt of the song.")

    @app.context_processor
    def page_context() -> dict[str, Any]:
        return {"about": about, "formats": format_names(), "accept": accept_attribute(),
                "limit_bytes": limit}

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
        return render_template("result.html", result=result)

    @app.post("/api/analyze")
    def analyse_api():
        answer, result_id = keep(*receive())
        return jsonify(**answer, result_url=url_for("result_page", result_id=result_id))

    @app.get("/api/similar/<track_id>")
    def similar(track_id: str):
        """"More like this": the n library tracks nearest a library track, by the picks' rules."""
        track, n = seed(track_id), playlist_length()
        return jsonify(track=library_track(track),
                       similar=[{**library_track(r.track), "distance": r.distance, "similarity": r.similarity,
                                 "why": list(r.why)} for r in library.similar(track_id, n)],
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
        return Response(body, content_type=f"{M3U_MIMETYPE}; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="more-like-this.m3u8"'})

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
        if not Path(track.source).is_file():
            return error(404, f"The audio of {track_id} is no longer where it was indexed.")
        return send_audio(Path(track.source))

    @app.get("/uploads/<upload_id>")
    def upload_audio(upload_id: str):
        path = uploads.path(upload_id)
        if path is None:
            return error(404, "There is no such upload (only the latest uploads are kept).")
        return send_audio(path)

    return app


if __name__ == "__main__":
    # The production server (model/service/server.py); an empty data folder gets the demo library first.
    from model.service import server
    from model.stores import demo_library

    demo_library.main(["--if-empty", "--data", str(from_env().data_dir)])
    server.main()
