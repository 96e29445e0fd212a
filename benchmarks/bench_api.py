"""Server-side time of POST /api/analyze for a 30 s clip, median after warm-up, with the store of all
shared clips loaded (what the request costs inside the app: upload parsing, checks, decoding,
features, the network pass, the k-NN query; not the network between client and server).

    python benchmarks/bench_api.py [--data STORE] [--repeats 15]

Without --data, a store of ../shared/gtzan-dev is built in a temporary folder first (a few minutes);
without the shared clips, the demo library is used and the figure says so.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import create_app  # noqa: E402
from benchmarks.common import SHARED_GTZAN, verdict  # noqa: E402
from model.stores.demo_library import build, synthesise  # noqa: E402
from model.stores.ingest import ingest  # noqa: E402
from model.params import SAMPLE_RATE  # noqa: E402

TARGET_MS = 200.0


def server_ms(response) -> float:
    """The app's own measure of the request, from its Server-Timing header."""
    return float(response.headers["Server-Timing"].split("dur=")[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="an existing store (default: build one of the shared clips)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--features", default="chroma")
    parser.add_argument("--scope", default="genre")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, library = args.data, "given store"
        clip = SHARED_GTZAN / "rock" / "rock.00003.flac"
        if data is None and clip.exists():
            data, library = Path(tmp) / "data", "all shared clips"
            print(ingest(SHARED_GTZAN, data, progress=False).report())
        elif data is None:
            data, library = Path(tmp) / "data", "the demo library (shared clips absent)"
            build(data)
        if clip.exists():
            upload = clip.read_bytes()
        else:
            buffer = io.BytesIO()
            sf.write(buffer, synthesise("rock", 0, seconds=30.0), SAMPLE_RATE, format="FLAC")
            upload, clip = buffer.getvalue(), Path("generated-rock-30s.flac")

        start = time.perf_counter()
        app = create_app({"DATA_DIR": data, "UPLOAD_DIR": Path(tmp) / "uploads",
                          "FEATURES": args.features, "SCOPE": args.scope})
        print(f"service start (store, model, index, warm-up): {time.perf_counter() - start:.1f} s")
        client = app.test_client()
        server, wall = [], []
        for run in range(args.repeats + 2):   # the first two are warm-up
            start = time.perf_counter()
            response = client.post("/api/analyze", data={"file": (io.BytesIO(upload), clip.name)})
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                print(f"POST /api/analyze answered {response.status_code}: {response.get_data(as_text=True)}")
                return 1
            if run >= 2:
                server.append(server_ms(response))
                wall.append(1000 * elapsed)
        health = client.get("/api/health").get_json()
    print(f"{health['tracks']} tracks ({library}), features {args.features}, scope {args.scope}, clip {clip.name}")
    print(f"server-side runs: {', '.join(f'{t:.0f}' for t in server)} ms")
    print(f"test-client round trip, median: {statistics.median(wall):.1f} ms")
    print(verdict("POST /api/analyze server-side time, 30 s clip", statistics.median(server), TARGET_MS, "ms"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
