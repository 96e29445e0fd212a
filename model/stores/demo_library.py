"""Soundalike's default library: short clips synthesised here, in genre-flavoured styles, so that the
service runs on a fresh machine with no music collection and no download.

    python -m model.stores.demo_library [--data DIR] [--if-empty]

The clips are made by this module's generator from a fixed seed (tempo, drum pattern, chords and
timbre differ by genre folder); their genre labels are the generator's, not real recordings'.
They are written as FLAC under DIR/demo-audio/<genre>/ and indexed into the store at DIR.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from model.atomic import atomic_write
from model.params import GENRES, SAMPLE_RATE
from model.service.settings import from_env
from model.stores.feature_store import MANIFEST, Store
from model.stores.ingest import Summary, ingest

AUDIO_FOLDER = "demo-audio"   # no tracks.csv directly inside it, so the store never takes it for a genre
CLIPS_PER_GENRE = 3
CLIP_SECONDS = 12.0
SEED = 20240601

# Per genre: tempo (bpm), swing (fraction of an eighth delayed), drums per 16th step over one bar
# (k kick, s snare, h hat, o open hat, . rest), chord roots in semitones from the key over 4 bars,
# chord quality, timbre (harmonic amplitude decay, distortion gain), comping pattern (16ths that play).
STYLES: dict[str, dict] = {
    "blues":     dict(bpm=84,  swing=0.33, drums="k..hs.h.k.hhs.h.", roots=(0, 5, 0, 7), chord="dom7",
                      decay=0.5, drive=1.5, comp="x..x..x..x..x..."),
    "classical": dict(bpm=66,  swing=0.0,  drums="................", roots=(0, 9, 5, 7), chord="major",
                      decay=0.8, drive=1.0, comp="x...x...x...x..."),
    "country":   dict(bpm=112, swing=0.0,  drums="k.h.s.h.k.h.s.h.", roots=(0, 5, 7, 0), chord="major",
                      decay=0.6, drive=1.0, comp="x.x.x.x.x.x.x.x."),
    "disco":     dict(bpm=120, swing=0.0,  drums="k.o.k.o.k.o.k.o.", roots=(0, 3, 5, 3), chord="min7",
                      decay=0.4, drive=1.0, comp="..x...x...x...x."),
    "hiphop":    dict(bpm=88,  swing=0.2,  drums="k.....k.s..k..h.", roots=(0, 0, 8, 7), chord="minor",
                      decay=0.3, drive=1.0, comp="x.......x......."),
    "jazz":      dict(bpm=132, swing=0.33, drums="h..hh..hh..hh..h", roots=(2, 7, 0, 9), chord="maj7",
                      decay=0.7, drive=1.0, comp="...x.....x...x.."),
    "metal":     dict(bpm=168, swing=0.0,  drums="kkkkskkkkkkkskkk", roots=(0, 1, 0, 6), chord="power",
                      decay=0.9, drive=12.0, comp="xxxxxxxxxxxxxxxx"),
    "pop":       dict(bpm=116, swing=0.0,  drums="k.h.s.h.k.k.s.h.", roots=(0, 7, 9, 5), chord="major",
                      decay=0.5, drive=1.2, comp="x..x..x...x..x.."),
    "reggae":    dict(bpm=76,  swing=0.1,  drums="h.h.h.h.k.h.h.h.", roots=(0, 5, 0, 7), chord="minor",
                      decay=0.4, drive=1.0, comp="....x.......x..."),
    "rock":      dict(bpm=128, swing=0.0,  drums="k.h.s.h.k.k.s.h.", roots=(0, 5, 7, 5), chord="power",
                      decay=0.8, drive=5.0, comp="x.x.x.x.x.x.x.x."),
}
CHORDS = {"major": (0, 4, 7), "minor": (0, 3, 7), "dom7": (0, 4, 7, 10), "min7": (0, 3, 7, 10),
          "maj7": (0, 4, 7, 11), "power": (0, 7, 12)}


def _envelope(n: int, decay_s: float, sr: int) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * sr))


def _drum(kind: str, rng: np.random.Generator, sr: int) -> np.ndarray:
    n = int(0.25 * sr)
    t = np.arange(n) / sr
    if kind == "k":   # a sine falling from 120 to 45 Hz
        return np.sin(2 * np.pi * (45 * t + 75 * 0.03 * (1 - np.exp(-t / 0.03)))) * _envelope(n, 0.08, sr)
    noise = rng.standard_normal(n)
    if kind == "s":
        return 0.5 * noise * _envelope(n, 0.05, sr) + 0.4 * np.sin(2 * np.pi * 190 * t) * _envelope(n, 0.04, sr)
    hiss = np.diff(noise, prepend=0.0)   # differencing tilts the noise towards the highs
    return 0.25 * hiss * _envelope(n, 0.09 if kind == "o" else 0.02, sr)


def _tone(freqs: list[float], seconds: float, decay: float, drive: float, sr: int) -> np.ndarray:
    """A chord of harmonic tones whose harmonics fall off by `decay` each, driven by tanh."""
    t = np.arange(int(seconds * sr)) / sr
    wave = sum(decay ** (h - 1) * np.sin(2 * np.pi * f * h * t) for f in freqs for h in range(1, 7) if f * h < sr / 2)
    wave = np.tanh(drive * wave / len(freqs)) / np.tanh(drive)
    attack = np.minimum(1.0, t / 0.01)
    return wave * attack * _envelope(len(t), 0.6 * seconds + 0.05, sr)


def synthesise(genre: str, variant: int, seconds: float = CLIP_SECONDS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One clip of `genre`'s style; `variant` picks the key, tempo nudge and noise: the same
    arguments always give the same samples."""
    style = STYLES[genre]
    rng = np.random.default_rng([SEED, GENRES.index(genre), variant])
    bpm = style["bpm"] * (1 + 0.04 * (variant - 1))
    key = 110.0 * 2 ** (int(rng.integers(0, 12)) / 12)     # A2 and up to an octave above
    step = 60.0 / bpm / 4                                   # a 16th note, in seconds
    out = np.zeros(int(seconds * sr) + sr)
    for i in range(int(seconds / step)):
        beat_pos, bar = i % 16, i // 16
        start = int((i + (style["swing"] if i % 2 else 0.0)) * step * sr)
        drum = style["drums"][beat_pos]
        if drum != ".":
            hit = _drum(drum, rng, sr)
            out[start:start + len(hit)] += 0.8 * hit
        if style["comp"][beat_pos] == "x":
            root = key * 2 ** (style["roots"][bar % 4] / 12)
            freqs = [root * 2 ** (s / 12) for s in CHORDS[style["chord"]]]
            note = _tone(freqs, 2 * step if genre != "classical" else 4 * step, style["decay"], style["drive"], sr)
            out[start:start + len(note)] += 0.35 * note
            if beat_pos % 4 == 0:   # bass on the beat, an octave below the root
                bass = _tone([root / 2], step * 2, 0.3, 1.0, sr)
                out[start:start + len(bass)] += 0.4 * bass
    out = out[:int(seconds * sr)]
    return (0.8 * out / np.max(np.abs(out))).astype(np.float32)


def write_clips(folder: Path, per_genre: int = CLIPS_PER_GENRE, seconds: float = CLIP_SECONDS) -> list[Path]:
    """Write every genre's clips as 16-bit FLAC under folder/<genre>/<genre>.demoNN.flac."""
    paths = []
    for genre in GENRES:
        for variant in range(per_genre):
            path = folder / genre / f"{genre}.demo{variant + 1:02d}.flac"
            if not path.exists():
                with atomic_write(path) as f:
                    sf.write(f, synthesise(genre, variant, seconds), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            paths.append(path)
    return paths


def build(data_dir: Path, per_genre: int = CLIPS_PER_GENRE, seconds: float = CLIP_SECONDS,
          workers: int | None = None) -> Summary:
    """Synthesise the clips into data_dir/demo-audio and index them into the store at data_dir."""
    folder = Path(data_dir) / AUDIO_FOLDER
    write_clips(folder, per_genre, seconds)
    return ingest(folder, Path(data_dir), workers=workers, progress=False)


def is_demo(store: Store) -> bool:
    """Whether every track of `store` is a clip of this module's library."""
    folder = (store.root / AUDIO_FOLDER).resolve()
    return len(store) > 0 and all(Path(t.source).is_relative_to(folder) for t in store.tracks())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=from_env().data_dir,
                        help="store folder (default: SOUNDALIKE_DATA_DIR, or data/)")
    parser.add_argument("--if-empty", action="store_true", help="do nothing when the folder already holds a store")
    args = parser.parse_args(argv)
    if args.if_empty and (args.data / MANIFEST).exists():
        print(f"demo library: {args.data} already holds a store; left as it is")
        return 0
    print(f"demo library: {build(args.data).report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
