"""Soundalike's web service: the upload page, the JSON API and the audio players' files.

    gunicorn 'app:create_app()'      (what `make run` does, with gunicorn.conf.py)
    python app.py                    (Flask's own server)

Configuration comes from SOUNDALIKE_* environment variables (model/settings.py), or from the
mapping given to `create_app`.
"""
from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import soundfile as sf
from flask import Flask, Response, g, jsonify, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException

from model.audio import AudioError, decode
from model.classifier import GenreClassifier
from model.demo_library import is_demo
from model.library import Analysis, Library
from model.settings import from_env
from model.store import Store
from model.uploads import EXTENSIONS, Uploads, audio_extension

# What browsers play as it is; a library or upload file in another format is sent as WAV.
BROWSER_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg",
                 ".opus": "audio/ogg", ".mp3": "audio/mpeg"}
READABLE = ", ".join(sorted({e.lstrip(".").upper() for e in EXTENSIONS.values()}))


class BadUpload(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def default_config() -> dict[str, Any]:
    s = from_env()
    return {"DATA_DIR": s.data_dir, "WEIGHTS_DIR": s.weights_dir, "UPLOAD_DIR": s.upload_dir,
            "FEATURES": s.features, "SCOPE": s.scope, "MAX_UPLOADS": s.max_uploads,
            "MAX_CONTENT_LENGTH": int(s.max_upload_mb * 1024 * 1024)}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The service, with its store, classifier and index loaded and warmed up."""
    app = Flask(__name__)
    app.config.update(default_config())
    app.config.update(config or {})
    store = Store(app.config["DATA_DIR"])
    weights_dir = Path(app.config["WEIGHTS_DIR"])
    library = Library(store, GenreClassifier.load(weights_dir), weights_dir,
                      features=app.config["FEATURES"], scope=app.config["SCOPE"])
    uploads = Uploads(app.config["UPLOAD_DIR"], app.config["MAX_UPLOADS"])
    about = {"tracks": len(store), "genres": {g: len(store.tracks(g)) for g in store.genres},
             "demo": is_demo(store), "features": library.features, "scope": library.scope,
             "limit_mb": app.config["MAX_CONTENT_LENGTH"] / 1024 / 1024}
    app.logger.setLevel(logging.INFO)
    app.logger.info("Soundalike: %d tracks from %s (%s), features %s, scope %s", about["tracks"], store.root,
                    "demo library" if about["demo"] else "own store", library.features, library.scope)

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    def receive() -> tuple[Analysis, str, str]:
        """Check, keep and analyse the posted file: (analysis, upload id, the sender's file name)."""
        file = request.files.get("file")
        if file is None:
            raise BadUpload(400, "no file was sent: post it as the multipart field 'file'")
        data = file.read()
        if not data:
            raise BadUpload(400, "the file is empty" if file.filename else "no file was chosen")
        extension = audio_extension(data)
        if extension is None:
            raise BadUpload(415, f"this is not an audio file that Soundalike reads ({READABLE})")
        try:
            audio = decode(data)
        except AudioError as error:
            raise BadUpload(422, f"the audio cannot be used: {error}") from None
        upload_id = uploads.save(data, extension)
        return library.analyse(audio), upload_id, file.filename or "upload"

    def send_audio(path: Path) -> Response:
        if path.suffix.lower() in BROWSER_TYPES:
            return send_file(path, mimetype=BROWSER_TYPES[path.suffix.lower()])
        # Browsers do not play AU or AIFF: send the same samples as WAV.
        data, sample_rate = sf.read(path, dtype="int16", always_2d=True)
        wav = io.BytesIO()
        sf.write(wav, data, sample_rate, format="WAV", subtype="PCM_16")
        wav.seek(0)
        return send_file(wav, mimetype="audio/wav", download_name=f"{path.stem}.wav")

    def error(status: int, message: str) -> tuple[Response | str, int]:
        if wants_json():
            return jsonify(error=message, status=status), status
        return render_template("index.html", about=about, error=message), status

    @app.before_request
    def start_clock() -> None:
        g.start = time.perf_counter()

    @app.after_request
    def report_time(response: Response) -> Response:
        # Server-side time, for benchmarks and browsers' developer tools.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - g.start) * 1000:.1f}"
        return response

    @app.errorhandler(BadUpload)
    def bad_upload(e: BadUpload):
        return error(e.status, e.message)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        messages = {413: f"the file is larger than the {about['limit_mb']:g} MB limit",
                    404: "there is nothing here", 405: f"{request.method} is not allowed here"}
        return error(e.code or 500, messages.get(e.code, e.description))

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        app.logger.exception("unexpected error on %s", request.path)
        return error(500, "something went wrong on the server; the error is logged")

    @app.get("/")
    def index():
        return render_template("index.html", about=about)

    @app.post("/")
    def analyse_page():
        analysis, upload_id, filename = receive()
        return render_template("result.html", about=about, analysis=analysis, filename=filename,
                               upload_url=url_for("upload_audio", upload_id=upload_id))

    @app.post("/api/analyze")
    def analyse_api():
        analysis, upload_id, _ = receive()
        return jsonify(
            genre=analysis.genre,
            probabilities=analysis.probabilities,
            recommendations=[{"id": r.track.id, "genre": r.track.genre, "distance": r.distance,
                              "similarity": r.similarity, "why": r.why,
                              "audio_url": url_for("library_audio", track_id=r.track.id)}
                             for r in analysis.recommendations],
            match=None if analysis.match is None else {"id": analysis.match.id, "genre": analysis.match.genre},
            duration_s=analysis.duration_s,
            upload_url=url_for("upload_audio", upload_id=upload_id))

    @app.get("/api/health")
    def health():
        return jsonify(status="ok", **about)

    @app.get("/audio/<track_id>")
    def library_audio(track_id: str):
        track = store.find(track_id)
        if track is None:
            return error(404, f"no library track {track_id!r}")
        if not Path(track.source).is_file():
            return error(404, f"the audio of {track_id} is no longer where it was indexed")
        return send_audio(Path(track.source))

    @app.get("/uploads/<upload_id>")
    def upload_audio(upload_id: str):
        path = uploads.path(upload_id)
        if path is None:
            return error(404, "no such upload (only the latest uploads are kept)")
        return send_audio(path)

    return app


if __name__ == "__main__":
    from model import demo_library

    settings = from_env()
    demo_library.main(["--if-empty", "--data", str(settings.data_dir)])
    create_app().run(host=settings.host, port=settings.port)
