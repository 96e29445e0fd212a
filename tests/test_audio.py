import numpy as np
import pytest
import soundfile as sf

from conftest import mp3_bytes, tone, write_audio
from model.audio import AudioError, decode, resample
from model.params import SAMPLE_RATE


@pytest.mark.parametrize("name,sr,channels,kwargs", [
    ("a.wav", 44100, 2, {}),
    ("a.flac", 22050, 1, {}),
    ("a.ogg", 48000, 2, {}),
    ("a.mp3", 44100, 2, {"format": "MP3"}),
    ("a.au", 8000, 1, {"format": "AU", "subtype": "PCM_16"}),
])
def test_decodes_every_format_rate_and_channel_count(tmp_path, name, sr, channels, kwargs):
    path = write_audio(tmp_path / name, tone(3.0, sr, channels=channels), sr, **kwargs)
    audio = decode(path)
    assert audio.sample_rate == sr and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration_s - 3.0) < 0.1
    y = resample(audio.samples, audio.sample_rate)
    assert y.dtype == np.float32 and abs(len(y) / SAMPLE_RATE - audio.duration_s) < 0.01


def test_bytes_and_paths_decode_alike_and_lossless_copies_share_a_content_hash(tmp_path):
    pcm = (tone(2.0, 22050) * 32767).astype(np.int16)  # the same 16-bit samples in both files
    wav = write_audio(tmp_path / "a.wav", pcm, 22050)
    flac = write_audio(tmp_path / "a.flac", pcm, 22050)
    assert decode(wav).content_hash == decode(flac).content_hash == decode(wav.read_bytes()).content_hash
    other = write_audio(tmp_path / "b.wav", tone(2.0, 22050, seed=1), 22050, subtype="PCM_16")
    assert decode(other).content_hash != decode(wav).content_hash


def test_stereo_is_mixed_to_mono(tmp_path):
    left = tone(2.0, 16000)
    path = write_audio(tmp_path / "s.wav", np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="silent"):  # the channels cancel out
        decode(path)


MP3 = mp3_bytes(4.0)


@pytest.mark.parametrize("make,message", [
    (lambda tmp: b"", "decodable"),
    (lambda tmp: np.random.default_rng(0).bytes(50_000), "decodable"),
    (lambda tmp: b"This is a text file, renamed to .wav.\n" * 100, "decodable"),
    (lambda tmp: MP3[: len(MP3) // 2], "truncated"),
    (lambda tmp: MP3[:600], "decodable|truncated|long"),
])
def test_bad_bytes_are_reported_not_crashed_on(tmp_path, make, message):
    with pytest.raises(AudioError, match=message):
        decode(make(tmp_path))


def test_empty_silent_and_short_audio_are_rejected(tmp_path):
    with pytest.raises(AudioError, match="empty|decodable"):
        decode(write_audio(tmp_path / "empty.wav", np.zeros(0, np.float32), 22050))
    with pytest.raises(AudioError, match="silent"):
        decode(write_audio(tmp_path / "silent.wav", np.zeros(22050 * 2, np.float32), 22050))
    with pytest.raises(AudioError, match="at least"):
        decode(write_audio(tmp_path / "short.wav", tone(0.5), 22050))


def test_text_file_with_audio_name_is_rejected(tmp_path):
    path = tmp_path / "song.mp3"
    path.write_text("not audio at all\n" * 50)
    with pytest.raises(AudioError):
        decode(path)
    assert sf.available_formats()  # libsndfile itself is loaded


def test_channels_are_averaged(tmp_path):
    stereo = tone(2.0, 16000, channels=3)
    audio = decode(write_audio(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT"))
    np.testing.assert_allclose(audio.samples, stereo.mean(axis=1), atol=1e-6)
