#!/bin/sh
# Builds the feature store on first start, then serves with waitress (model/service/server.py).
#  - GTZAN (or any <genre>/ music folder) mounted at $SOUNDALIKE_GTZAN_DIR: preprocess.py indexes it
#    into $SOUNDALIKE_DATA_DIR. It stores only what is new, so a restart finishes an interrupted build.
#  - Nothing mounted there and no store in $SOUNDALIKE_DATA_DIR: the synthesised demo library is built
#    in $SOUNDALIKE_DATA_DIR/demo and served (a sub-folder, so a later GTZAN store never mixes with it).
# As PID 1 this shell gets `docker stop`'s SIGTERM and Ctrl-C's SIGINT, which no default action would act
# on: it passes them to the step at work (preprocess.py keeps what it stored) and exits 0. The server,
# exec'd in its place, stops on them itself.
# `docker-entrypoint.sh --health` is the image's HEALTHCHECK: healthy while the service answers /api/health,
# and until it first does, while this script builds the store (hours, for a large collection) or starts it
# (a marker file says which).
set -eu
PREPARING=/tmp/soundalike-preparing
if [ "${1:-}" = --health ]; then
    if python -c "import os, urllib.request
urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('SOUNDALIKE_PORT', '5000'), timeout=4)" \
            2>/dev/null; then
        rm -f "$PREPARING"
        exit 0
    fi
    if [ -e "$PREPARING" ]; then
        echo "not answering yet: $(cat "$PREPARING")"
        exit 0
    fi
    echo "the service does not answer /api/health"
    exit 1
fi
cd "$(dirname "$0")"
rm -f "$PREPARING"
if ! mkdir -p "$SOUNDALIKE_DATA_DIR" 2>/dev/null || [ ! -w "$SOUNDALIKE_DATA_DIR" ]; then
    echo "soundalike: the data folder $SOUNDALIKE_DATA_DIR cannot be written by this container's user" \
         "(uid $(id -u)): mount a named volume there (-v soundalike-data:$SOUNDALIKE_DATA_DIR), or a folder" \
         "that uid $(id -u) owns (chown $(id -u) FOLDER on the host)." >&2
    exit 1
fi

child=
stopping=
stop() {
    stopping=1
    if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap stop TERM INT

# A step of the first start, run in the background so that the trap runs while it works.
prepare() {
    echo "$*" > "$PREPARING"
    "$@" &
    child=$!
    status=0
    wait "$child" || status=$?
    if [ -n "$stopping" ]; then   # wait returned for the signal: now for the step, which stops at once
        wait "$child" || true
        rm -f "$PREPARING"
        exit 0
    fi
    child=
    rm -f "$PREPARING"
    return "$status"
}

if [ -d "$SOUNDALIKE_GTZAN_DIR" ] && [ -n "$(ls -A "$SOUNDALIKE_GTZAN_DIR")" ]; then
    prepare python preprocess.py "$SOUNDALIKE_GTZAN_DIR" --data "$SOUNDALIKE_DATA_DIR"
elif [ ! -f "$SOUNDALIKE_DATA_DIR/manifest.json" ]; then
    SOUNDALIKE_DATA_DIR="$SOUNDALIKE_DATA_DIR/demo"
    export SOUNDALIKE_DATA_DIR
    prepare python -m model.stores.demo_library --if-empty
fi
[ -z "$stopping" ] || exit 0
echo "starting the service" > "$PREPARING"
exec python app.py --no-demo
