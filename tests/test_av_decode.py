"""model.audio.av_decode: what libsndfile cannot open (m4a/AAC, WMA, the audio of mp4/webm/mkv), read with
PyAV from files the tests encode themselves."""
import io

import numpy as np
import pytest
import soundfile as sf

from av_media import KINDS, encoded
from conftest import tone
import model.audio.av_decode
import model.audio.checks
from model.audio.av_decode import AvError, AvFile, probe
from model.audio.decoding import UNKNOWN_FRAMES, AudioError, decode
from model.service.uploads import audio_extension

EXTENSIONS = {"m4a": ".m4a", "aac": ".aac", "wma": ".wma", "webm": ".webm", "mp4": ".mp4",
              "webm-video": ".webm", "mkv": ".mkv"}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_decodes_to_its_samples_at_its_own_rate(kind):
    data, y, rate = encoded(kind)
    assert probe(data) == EXTENSIONS[kind]
    with AvFile(data) as f:
        assert (f.samplerate, f.channels) == (rate, 2)
        if kind == "aac":   # no index: FFmpeg's length is an estimate from the bit rate
            assert f.frames == UNKNOWN_FRAMES
        else:
            assert abs(f.frames - len(y)) < 0.02 * len(y)    # the declared length
        decoded = np.concatenate(list(f.blocks(5000)))
    assert decoded.dtype == np.float32 and decoded.shape[1] == 2
    assert abs(len(decoded) - len(y)) < 0.03 * len(y)   # codecs add a frame or two of priming
    # Lossy, and shifted by the codec's delay: compare loudness per channel, not samples.
    rms = np.sqrt(np.mean(decoded ** 2, axis=0)) / np.sqrt(np.mean(y ** 2, axis=0))
    assert np.all(np.abs(rms - 1) < 0.2), rms


def test_blocks_are_bounded_and_the_caller_chooses_their_size():
    data, y, _ = encoded("webm")
    with AvFile(data) as f:
        sizes = [len(block) for block in f.blocks(1000)]
    assert max(sizes) == 1000 and all(s == 1000 for s in sizes[:-1]) and sum(sizes) >= len(y)


def test_a_file_object_already_read_by_libsndfile_is_read_from_its_start():
    data, _, _ = encoded("m4a", channels=1)
    source = io.BytesIO(data)
    source.seek(len(data) // 2)
    with AvFile(source) as f:
        assert f.channels == 1 and sum(len(b) for b in f.blocks()) > 2 * f.samplerate


@pytest.mark.parametrize("data", [b"", b"just some text, not a song\n" * 300, np.random.default_rng(1).bytes(30000)],
                         ids=["empty", "text", "random"])
def test_what_is_not_audio_is_refused(data):
    assert probe(data) is None
    with pytest.raises(AvError):
        AvFile(data)


def test_formats_libsndfile_reads_are_left_to_it():
    wav = io.BytesIO()
    sf.write(wav, tone(2.0), 22050, format="WAV")
    assert probe(wav.getvalue()) is None


@pytest.mark.parametrize("module, limit, value, words", [
    (model.audio.checks, "MAX_SOURCE_RATE", 22050, "44100 Hz"), (model.audio.checks, "MAX_CHANNELS", 1, "declares 2 channels"),
    (model.audio.av_decode, "MAX_DURATION_S", 2, "declares 3.0 s")])
def test_absurd_parameters_are_refused_before_decoding(monkeypatch, module, limit, value, words):
    data, _, _ = encoded("m4a")   # 44.1 kHz stereo, 3 s
    monkeypatch.setattr(module, limit, value)   # the check libsndfile's files get (model.audio.checks), and its messages
    with pytest.raises(AudioError, match=words) as refused:
        AvFile(data)
    assert not isinstance(refused.value, AvError)
    assert probe(data) == ".m4a"   # still audio: refused with its reason when decoded, not as "not audio"


@pytest.mark.parametrize("kind", ["webm", "mkv", "wma", "aac"])
def test_a_file_that_breaks_off_gives_what_decodes(kind):
    """Matroska stops at its last whole block, short of its declared length; WMA and ADTS AAC say
    where their data breaks. Either way what decoded is given (model.audio.decoding flags it truncated)."""
    data, y, _ = encoded(kind, seconds=4.0)
    with AvFile(data[:len(data) // 2]) as f:
        buffer = np.empty((4096, 2), np.float32)
        frames, error = 0, ""
        while not error:
            n, error = f.read_into(buffer)
            frames += n
            if n < len(buffer):
                break
        assert 0.3 * len(y) < frames < 0.9 * len(y)
    assert error == ("" if kind in ("webm", "mkv") else "Invalid data found when processing input")


def test_an_m4a_cut_before_its_index_is_not_audio():
    data, _, _ = encoded("m4a")   # the muxer writes the index (moov) last
    assert probe(data[:len(data) // 2]) is None


# model.audio.decoding.decode and the 415 decision with the PyAV fallback (plugged in model.audio.decoding and model.service.uploads).

@pytest.mark.parametrize("kind", KINDS)
def test_decode_reads_every_kind_through_the_same_pipeline(kind):
    data, y, rate = encoded(kind)
    audio = decode(data)
    assert audio.sample_rate == 16000 and audio.source_rate == rate and not audio.truncated
    assert abs(audio.duration_s - len(y) / rate) < 0.1
    assert audio_extension(data) == EXTENSIONS[kind]
    # The same samples as a float WAV (libsndfile's path) hash and resample alike: one pipeline.
    with AvFile(data) as f:
        samples = np.concatenate(list(f.blocks()))
    wav = io.BytesIO()
    sf.write(wav, samples, rate, format="WAV", subtype="FLOAT")
    again = decode(wav.getvalue())
    assert again.content_hash == audio.content_hash and np.array_equal(again.samples, audio.samples)


def test_decode_applies_the_same_limits_and_flags_truncation():
    data, _, _ = encoded("m4a")
    with pytest.raises(AudioError, match="declares 3.0 s of audio"):
        decode(data, max_duration_s=2)
    webm, _, _ = encoded("webm", seconds=4.0)
    cut = decode(webm[:len(webm) // 2])
    assert cut.truncated and 1.0 < cut.duration_s < 3.0
    with pytest.raises(AudioError, match="not a decodable audio file"):
        decode(b"just some text, not a song\n" * 300)
