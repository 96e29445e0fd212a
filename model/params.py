"""The single source of truth for every audio, feature and label parameter.

Stores record `feature_params()` in their manifest; reading a store whose recorded
parameters differ from these is refused until a rescan (preprocess.py) has computed again the parts of
its rows they change (see `model.stores.feature_store`).
"""
from __future__ import annotations

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop",
    "jazz", "metal", "pop", "reggae", "rock",
)

# MusiCNN's input, as the musicnn 0.1.0 wheel computes it (configuration.py there).
# 16 kHz also keeps the network blind above 8 kHz, where GTZAN clips differ in bandwidth.
SAMPLE_RATE = 16000          # Hz
N_FFT = 512                  # samples (32 ms)
HOP_LENGTH = 256             # samples (16 ms)
N_MELS = 96
PATCH_FRAMES = 187           # frames per network patch (~3 s)
LOG_MEL_SCALE = 10000.0      # log10(1 + scale * power mel), as the wheel does

# Chromagram for the recommender, from the same 16 kHz signal (pitch lives well below 8 kHz).
CHROMA_N_FFT = 4096          # samples (256 ms): ~3.9 Hz bins resolve semitones from ~65 Hz up
CHROMA_HOP = 512             # samples (32 ms)
N_CHROMA = 12

# What a track's chroma summary and an upload's fingerprint query read: its middle EXCERPT_S (all of a
# shorter one). So a 10-minute song costs what a 30 s clip does, and stored tracks are summarised alike.
# A little over GTZAN's "30 s" clips (29.9-30.7 s), which are then summarised whole, as before.
EXCERPT_S = 32.0             # s

# Tempo (model.audio.features.tempo), of the middle EXCERPT_S's log-mel: librosa's defaults (8 s of lags, a
# prior around 120 BPM); a shorter excerpt holds too few beats to say.
TEMPO_AC_S = 8.0             # s: the longest beat period looked for is this window's
TEMPO_START_BPM = 120.0      # the prior's centre
MIN_TEMPO_S = 8.0            # s: no tempo is claimed of less audio
# Nor where the onset envelope correlates less than this with itself one beat later: noise scores 0.0, the
# shared GTZAN clips 0.08-0.59 (median about 0.25; a few quiet classical and jazz ones fall below).
MIN_PULSE = 0.1

MIN_DURATION_S = 1.0         # shorter uploads or library files are rejected
MAX_PATCHES = 5              # patches per track at prediction, spread over it: bounds the cost of long songs
SHORT_CROP_S = (2.0, 3.0)    # the short uploads served: training crops of long tracks are cut to this range

# What decoding accepts (model.audio.decoding): checked on the header, before anything is read, so that no
# upload can make a worker decode or resample without bound (issue 6).
MIN_SOURCE_RATE = 4000       # Hz: below any audio format's rates; a 1-7 Hz header is damage (and 16 kHz from it, gigabytes)
MAX_SOURCE_RATE = 384000     # Hz: the highest rate of studio converters
MAX_CHANNELS = 64            # 7th-order ambisonics (64 channels) is the most a recording holds; a read block holds them all
MAX_DURATION_S = 20 * 60     # s: longer audio is refused; its 16 kHz float32 samples are at most 77 MB
# Float files can hold any level. Up to +6 dBFS is kept as decoded (lossy decoders overshoot full scale
# on loud masters); louder, up to +60 dBFS, is scaled to a peak of 1.0; beyond that is not audio levels.
FULL_SCALE_HEADROOM = 2.0    # peak, times full scale
MAX_FLOAT_PEAK = 1000.0      # peak, times full scale

# Bump when the way features (or the chroma summaries and fingerprints stored of them) are computed changes
# without a parameter changing (a rescan then computes every row's chroma summary and fingerprint again).
# 2: the stored chromagram is of a track's middle EXCERPT_S only (1: of all of it).
FEATURE_VERSION = 2


def network_params() -> dict:
    """The parameters of the network's input (the log-mel and its patches), as a trained genre head
    records them: the chromagram's are not among them, so a new chroma recipe keeps the head."""
    return {
        "sample_rate": SAMPLE_RATE,
        "n_fft": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mels": N_MELS,
        "log_mel_scale": LOG_MEL_SCALE,
        "patch_frames": PATCH_FRAMES,
    }


def feature_params() -> dict:
    """The parameters a store's features depend on, as recorded in its manifest."""
    return {
        "feature_version": FEATURE_VERSION,
        **network_params(),
        "chroma_n_fft": CHROMA_N_FFT,
        "chroma_hop": CHROMA_HOP,
        "n_chroma": N_CHROMA,
        "excerpt_s": EXCERPT_S,
    }


def tempo_params() -> dict:
    """What a store's tempos were estimated with, as recorded in its manifest (not among
    `feature_params`: a store of an older recipe, or of none, still serves; it names no tempos)."""
    return {"tempo_version": 1, "tempo_ac_s": TEMPO_AC_S, "tempo_start_bpm": TEMPO_START_BPM,
            "min_tempo_s": MIN_TEMPO_S, "min_pulse": MIN_PULSE, "hop_length": HOP_LENGTH, "sample_rate": SAMPLE_RATE}


# The approximate nearest-neighbour index (model.index.ann): HNSW graphs (faiss), one per genre.
# A genre (or, with scope "library", a library) of fewer tracks is searched exhaustively: at 500 tracks
# that is as fast as a graph (0.15 ms), at 1,000 twice as slow (0.3 ms), at 10,000 twenty times
# (benchmarks/bench_index.py); below, it is exact and needs no build.
ANN_MIN_ROWS = 1000
HNSW_CONNECTIVITY = 16       # links per node (M): memory ~ 2 * M * 4 bytes per track on the base layer
HNSW_EXPANSION_ADD = 32      # candidates kept while linking a new node (ef_construction): build time vs graph quality
HNSW_EXPANSION_SEARCH = 256  # candidates kept while searching (ef): recall@3 vs query time


def index_params() -> dict:
    """The parameters a saved index was built with, as recorded in its manifest (the search's
    HNSW_EXPANSION_SEARCH is not one: it is set when the index is loaded)."""
    return {
        "ann_min_rows": ANN_MIN_ROWS,
        "hnsw_connectivity": HNSW_CONNECTIVITY,
        "hnsw_expansion_add": HNSW_EXPANSION_ADD,
    }
