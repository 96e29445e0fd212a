# Soundalike on a GPU host (docs/docker.md):
#   docker build -t soundalike .
#   docker run --gpus all -p 5000:5000 -v soundalike-data:/data -v /path/to/gtzan:/gtzan:ro soundalike
# The base image brings TensorFlow (with CUDA); BASE lets CI stand a CPU base in for it (.ci/docker-test).
# Only the project's dependencies are installed (not the [cpu] extra: TensorFlow is the base's), not the
# project itself: it runs from /app, leaving no build files there and no `app` module in site-packages.
# On a GPU host the network runs on TensorFlow (SOUNDALIKE_RUNTIME=keras), not on the CPU's ONNX Runtime.
ARG BASE=tensorflow/tensorflow:2.18.0-gpu
FROM ${BASE}
# An index other than PyPI's; behind a TLS-intercepting proxy, pip gets the host's CA bundle as the build
# secret `pip_cert`, which no layer keeps (docs/docker.md, "Building behind a proxy").
ARG PIP_INDEX_URL=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SOUNDALIKE_HOST=0.0.0.0 \
    SOUNDALIKE_PORT=5000 \
    SOUNDALIKE_DATA_DIR=/data \
    SOUNDALIKE_RUNTIME=keras \
    SOUNDALIKE_GTZAN_DIR=/gtzan

WORKDIR /app
COPY pyproject.toml ./
# pyproject.toml's dependencies, read with the standard library's TOML reader (pip's copy before Python 3.11).
RUN --mount=type=secret,id=pip_cert \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python -c "import sys; toml = __import__('tomllib' if sys.version_info >= (3, 11) else 'pip._vendor.tomli', \
fromlist=['load']); print('\n'.join(toml.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && useradd --create-home --uid 10001 --user-group soundalike \
    && mkdir -p /data /gtzan /app/input_data \
    && chown soundalike /data /app/input_data
COPY model/ model/
COPY app.py preprocess.py docker-entrypoint.sh LICENSE ./
COPY templates/ templates/
COPY static/ static/
COPY weights/ weights/

USER 10001:10001
# librosa's numba functions compiled once into the image (model/audio/numba_cache.py keeps the snapshot in
# the user's ~/.cache), so that containers start without half a minute of compiling.
RUN python -c "from model.audio.features import warm_up; warm_up()"
# No VOLUME: each `docker run` would get a new anonymous volume. Mount a named volume on /data to keep the
# store (-v soundalike-data:/data), and a music folder on /gtzan to have it preprocessed and served.
EXPOSE 5000
# Healthy while a first start builds the store, then while the service answers (docker-entrypoint.sh --health):
# checked every 5 s, so that "healthy" follows the service's first answer within seconds.
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/app/docker-entrypoint.sh", "--health"]
ENTRYPOINT ["/app/docker-entrypoint.sh"]
