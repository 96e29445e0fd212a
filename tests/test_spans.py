"""Decoding only the spans an analysis reads (a compact store's preprocessing, model.predict): a long song is
sought into, never read whole, and its samples there are the whole decode's; files that cannot be trusted that
way are read whole. (The service reads all of an upload: all of it is searched for library tracks.)"""
import io

import numpy as np
import pytest
import soundfile as sf

import model.audio.decoding
from conftest import tone, write_audio
from model.audio.decoding import decode
from model.audio.features import analysis_spans, log_mel_patches, patch_spans
from model.params import EXCERPT_S, HOP_LENGTH, MAX_PATCHES, PATCH_FRAMES, SAMPLE_RATE

# What an analysis may decode of any song: its middle excerpt, its patches, a margin around each read.
PATCH_S = PATCH_FRAMES * HOP_LENGTH / SAMPLE_RATE
BOUND_S = EXCERPT_S + MAX_PATCHES * PATCH_S + 2 * (MAX_PATCHES + 1) * model.audio.decoding.SPAN_MARGIN_S + 1.0


@pytest.fixture()
def frames_read(monkeypatch):
    """The source frames decoded from files, counted."""
    count = [0]
    read = model.audio.decoding._read_block

    def counting(f, buffer):
        frames, error = read(f, buffer)
        count[0] += frames
        return frames, error

    monkeypatch.setattr(model.audio.decoding, "_read_block", counting)
    return count


def covered(spans) -> int:
    return sum(stop - start for start, stop in spans)


def test_a_ten_minute_file_is_decoded_only_where_the_analysis_reads(tmp_path, frames_read):
    rate = 22050
    path = write_audio(tmp_path / "long.flac", tone(600.0, rate, seed=1), rate, subtype="PCM_16")
    audio = decode(path, spans=analysis_spans)
    assert frames_read[0] <= BOUND_S * rate, f"{frames_read[0] / rate:.1f} s of 600 s decoded"
    assert audio.duration_s == pytest.approx(600.0, abs=0.01) and not audio.truncated
    assert audio.content_hash == "" and covered(audio.spans) <= BOUND_S * SAMPLE_RATE
    wanted = analysis_spans(len(audio.samples))
    assert all(any(a <= start and stop <= b for a, b in audio.spans) for start, stop in wanted)
    whole = decode(path)
    assert frames_read[0] > 600 * rate and not whole.spans and whole.content_hash
    for start, stop in audio.spans:
        np.testing.assert_allclose(audio.samples[start:stop], whole.samples[start:stop], rtol=0, atol=1e-5)


def test_a_clips_prediction_decodes_only_its_patches_and_its_analysis_all_of_it(tmp_path, frames_read):
    rate = 22050
    path = write_audio(tmp_path / "clip.flac", tone(30.0, rate, seed=4), rate, subtype="PCM_16")
    predicted = decode(path, spans=patch_spans)   # model.predict: five patches, 57 % with their margins
    assert predicted.spans and frames_read[0] < 0.6 * 30 * rate
    served = decode(path, spans=analysis_spans)   # preprocessing: also the middle 32 s, so all of it
    assert not served.spans and served.content_hash
    np.testing.assert_allclose(log_mel_patches(predicted.samples), log_mel_patches(served.samples), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name,rate,channels,kwargs", [
    ("a.mp3", 44100, 2, {"format": "MP3"}),
    ("a.ogg", 48000, 1, {}),
    ("a.wav", 44100, 2, {"subtype": "PCM_16"}),
])
def test_spans_of_other_formats_are_the_whole_decodes_samples(tmp_path, name, rate, channels, kwargs):
    path = write_audio(tmp_path / name, tone(150.0, rate, seed=2, channels=channels), rate, **kwargs)
    audio, whole = decode(path, spans=analysis_spans), decode(path)
    assert audio.spans and len(audio.samples) == len(whole.samples)
    for start, stop in audio.spans:
        # MP3 is sought into: libsndfile garbles the first ~40 ms after a seek, inside the dropped margin.
        np.testing.assert_allclose(audio.samples[start:stop], whole.samples[start:stop], rtol=0, atol=1e-4)


def test_what_cannot_be_trusted_from_spans_is_read_whole(tmp_path, frames_read):
    rate = 16000
    y = tone(200.0, rate, seed=3)
    # Float samples may be far louder elsewhere: the level check needs all of them.
    loud = write_audio(tmp_path / "float.wav", y, rate, subtype="FLOAT")
    assert decode(loud, spans=analysis_spans).spans == ()
    # A file cut short of its declared length: its last patch does not decode, so all of it is read.
    flac = io.BytesIO()
    sf.write(flac, y, rate, format="FLAC", subtype="PCM_16")
    cut = decode(flac.getvalue()[:len(flac.getvalue()) * 2 // 3], spans=analysis_spans)
    assert cut.truncated and cut.spans == () and 120 < cut.duration_s < 140
    # Short files are read whole: the spans would cover most of them.
    short = write_audio(tmp_path / "short.flac", y[:40 * rate], rate, subtype="PCM_16")
    assert decode(short, spans=analysis_spans).spans == ()
