#!/bin/sh
# Builds the feature store on first start, then serves with waitress (model/service/server.py).
#  - GTZAN (or any <genre>/ music folder) mounted at $SOUNDALIKE_GTZAN_DIR: preprocess.py indexes it
#    into $SOUNDALIKE_DATA_DIR. It stores only what is new, so a restart finishes an interrupted build.
#  - Nothing mounted there and no store in $SOUNDALIKE_DATA_DIR: the synthesised demo library is built
#    in $SOUNDALIKE_DATA_DIR/demo and served (a sub-folder, so a later GTZAN store never mixes with it).
set -eu
cd "$(dirname "$0")"
if [ -d "$SOUNDALIKE_GTZAN_DIR" ] && [ -n "$(ls -A "$SOUNDALIKE_GTZAN_DIR")" ]; then
    python preprocess.py "$SOUNDALIKE_GTZAN_DIR" --data "$SOUNDALIKE_DATA_DIR"
elif [ ! -f "$SOUNDALIKE_DATA_DIR/manifest.json" ]; then
    SOUNDALIKE_DATA_DIR="$SOUNDALIKE_DATA_DIR/demo"
    export SOUNDALIKE_DATA_DIR
    python -m model.stores.demo_library --if-empty
fi
exec python app.py --no-demo
