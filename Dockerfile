# Soundalike on a GPU host (see docs/docker-image.md):
#   docker build -t soundalike .
#   docker run --gpus all -p 5000:5000 -v soundalike-data:/data -v /path/to/gtzan:/gtzan:ro soundalike
# The base image brings TensorFlow with CUDA; installing the project adds everything else (no [cpu] extra).
# On a GPU host the network runs on TensorFlow (SOUNDALIKE_RUNTIME=keras), not on the CPU's ONNX Runtime.
FROM tensorflow/tensorflow:2.18.0-gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SOUNDALIKE_HOST=0.0.0.0 \
    SOUNDALIKE_PORT=5000 \
    SOUNDALIKE_DATA_DIR=/data \
    SOUNDALIKE_RUNTIME=keras \
    SOUNDALIKE_GTZAN_DIR=/gtzan

WORKDIR /app
COPY pyproject.toml README.md ./
COPY model/ model/
COPY app.py preprocess.py docker-entrypoint.sh ./
COPY templates/ templates/
COPY static/ static/
COPY weights/ weights/
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 --user-group soundalike \
    && mkdir -p /data /gtzan /app/input_data \
    && chown soundalike /data /app/input_data

USER 10001:10001
# librosa's numba functions compiled once into the image (model/audio/numba_cache.py keeps the snapshot in
# the user's ~/.cache), so that containers start without half a minute of compiling.
RUN python -c "from model.audio.features import warm_up; warm_up()"
VOLUME ["/data", "/app/input_data"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/api/health', timeout=4)"]
ENTRYPOINT ["/app/docker-entrypoint.sh"]
