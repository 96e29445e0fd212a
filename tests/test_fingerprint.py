"""Copies of library tracks recognised by their landmark fingerprints: lossy re-encodes, another
sample rate, a trimmed excerpt; never a distinct track."""
import numpy as np
import pytest
import soundfile as sf

from benchmarks.copies import COPIES, mp3_128k
from conftest import shared_clips, tone
from model.audio.decoding import decode, resample
from model.audio.features import excerpt_span, log_mel
from model.index.fingerprint import (PEAK_BANDS, PEAK_FRAMES, FingerprintIndex, _running_max, fingerprint, query_mels,
                                     query_prints)
from model.params import SAMPLE_RATE

# A few 30 s clips of every genre are the library; others of the same genres are distinct tracks.
LIBRARY_PER_GENRE, OTHERS_PER_GENRE = 2, 1


def prints_of(data: bytes):
    audio = decode(data)
    return query_prints(resample(audio.samples, audio.sample_rate))


@pytest.fixture(scope="module")
def clips(shared_gtzan):
    by_genre: dict[str, list] = {}
    for path, genre in shared_clips("full_30s"):
        by_genre.setdefault(genre, []).append(path)
    library = [p for paths in by_genre.values() for p in paths[:LIBRARY_PER_GENRE]]
    others = [p for paths in by_genre.values() for p in paths[LIBRARY_PER_GENRE:][:OTHERS_PER_GENRE]]
    # As preprocess stores them: the log-mel of the decoded 16 kHz samples.
    index = FingerprintIndex().fit([prints_of(p.read_bytes())[0] for p in library])
    return library, others, index


@pytest.mark.parametrize("copy", sorted(COPIES))
def test_copies_of_library_tracks_are_recognised_as_that_track_only(clips, copy):
    library, _, index = clips
    for row, path in enumerate(library):
        y, sr = sf.read(path, dtype="float32")
        data = COPIES[copy](y, sr)
        if copy.startswith("mp3"):
            assert abs(len(data) * 8 / (len(y) / sr) / 1000 - 128) < 5   # kb/s
        assert index.query(prints_of(data)) == [row], (copy, path.name)


def test_distinct_tracks_match_nothing(clips):
    _, others, index = clips
    for path in others:
        y, sr = sf.read(path, dtype="float32")
        assert index.query(prints_of(mp3_128k(y, sr))) == [], path.name
        assert max(index.scores(p).max() for p in prints_of(path.read_bytes())) < 20


def test_a_querys_first_log_mel_is_its_middle_excerpts_own_and_its_fingerprints_those_of_its_log_mels():
    # The service reads an upload's tempo from that first log-mel, as preprocess.py reads a track's from its excerpt's.
    y = np.random.default_rng(3).uniform(-0.5, 0.5, 41 * SAMPLE_RATE).astype(np.float32)
    mels = query_mels(y)
    assert len(mels) > 1 and np.array_equal(mels[0], log_mel(y[slice(*excerpt_span(len(y)))]))
    for made, mel in zip(query_prints(y), mels, strict=True):
        assert np.array_equal(made.hashes, fingerprint(mel).hashes) and np.array_equal(made.times, fingerprint(mel).times)


def test_generated_audio_gets_hashes_and_silence_none():
    assert len(fingerprint(log_mel(tone(10.0, 16000))).hashes) > 10   # four steady notes: few peaks
    assert len(fingerprint(log_mel(np.zeros(16000 * 5, np.float32))).hashes) == 0
    with pytest.raises(ValueError):
        fingerprint(np.zeros((100, 12)))


@pytest.mark.parametrize("shape", [(1876, 96), (187, 96), (5, 96), (1, 96), (30, 13)])
def test_peaks_are_those_of_scipys_maximum_filter(shape):
    from scipy.ndimage import maximum_filter

    mel = np.random.default_rng(len(shape) + shape[0]).standard_normal(shape).astype(np.float32)
    mel[:, :3] = mel[:, :1]   # ties: a plateau is a maximum at each of its points, as in scipy
    # Exact on any CPU: a maximum picks one of its inputs and rounds nothing (no BLAS, no FFT), and
    # the peaks are the points equal to it, so equality is what must hold.
    np.testing.assert_array_equal(
        _running_max(_running_max(mel, 2 * PEAK_FRAMES + 1, 0), 2 * PEAK_BANDS + 1, 1),
        maximum_filter(mel, size=(2 * PEAK_FRAMES + 1, 2 * PEAK_BANDS + 1), mode="nearest"))


def test_the_index_holds_4_bytes_a_hash_and_scores_as_counting_every_offset_does(monkeypatch):
    import model.index.fingerprint as fp
    from model.index.fingerprint import HASH_SPACE, Fingerprint

    monkeypatch.setattr(fp, "FIT_BATCH", 7)   # several batches, as a large library is fitted
    rng = np.random.default_rng(0)
    # Few distinct hashes, so that every hash has entries of many rows and many frames.
    library = [Fingerprint(rng.integers(0, 40, n).astype(np.uint32) * (HASH_SPACE // 40),
                           np.sort(rng.integers(0, 2000, n)).astype(np.int32)) for n in rng.integers(0, 300, 30)]
    index = FingerprintIndex().fit(library)
    assert index.entries_.dtype == np.uint32 and index.entries_.nbytes == 4 * sum(len(f.hashes) for f in library)
    query = Fingerprint(library[3].hashes[20:120], library[3].times[20:120] - 5)
    expected = []
    for f in library:   # per row: the most query hashes that agree on one offset, counted pair by pair
        offsets = [t - qt for h, t in zip(f.hashes, f.times) for qh, qt in zip(query.hashes, query.times) if h == qh]
        expected.append(max(np.unique(offsets, return_counts=True)[1], default=0))
    assert index.scores(query).tolist() == expected and int(np.argmax(expected)) == 3
    with pytest.raises(ValueError, match="below"):
        FingerprintIndex().fit([Fingerprint(np.array([HASH_SPACE], np.uint32), np.zeros(1, np.int32))])
