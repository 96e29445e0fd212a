import hashlib
import io

import numpy as np
import pytest
import soundfile as sf

import model.audio.decoding
from conftest import mp3_bytes, shared_clips, tone, write_audio
from hostile_audio import au_header, encode, flac_streaminfo, wav_header
from model.audio.decoding import AudioError, decode, resample
from model.params import MAX_CHANNELS, SAMPLE_RATE


def one_shot(data: np.ndarray, rate: int) -> tuple[np.ndarray, str]:
    """What decode computed before it streamed: the whole file's mono mix (summed column by
    column), its hash, and one soxr call to 16 kHz."""
    mono = data[:, 0].copy()
    for channel in range(1, data.shape[1]):
        mono += data[:, channel]
    mono /= np.float32(data.shape[1])
    digest = hashlib.sha256(mono.tobytes())
    digest.update(str(rate).encode())
    return resample(mono, rate), digest.hexdigest()


@pytest.mark.parametrize("name,sr,channels,kwargs", [
    ("a.wav", 44100, 2, {}),
    ("a.flac", 22050, 1, {}),
    ("a.ogg", 48000, 2, {}),
    ("a.mp3", 44100, 2, {"format": "MP3"}),
    ("a.au", 8000, 1, {"format": "AU", "subtype": "PCM_16"}),
    ("a.wav", 16000, 3, {}),
])
def test_decodes_every_format_rate_and_channel_count_to_16k_mono(tmp_path, name, sr, channels, kwargs):
    path = write_audio(tmp_path / name, tone(3.0, sr, channels=channels), sr, **kwargs)
    audio = decode(path)
    assert audio.sample_rate == SAMPLE_RATE and audio.source_rate == sr and not audio.truncated
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration_s - 3.0) < 0.1
    assert resample(audio.samples, audio.sample_rate) is audio.samples   # what other modules still call


@pytest.mark.parametrize("name,sr,channels,seconds,kwargs", [
    ("long.wav", 44100, 2, 8.0, {"subtype": "PCM_16"}),     # several read blocks
    ("a.flac", 22050, 1, 3.0, {}),
    ("a.ogg", 48000, 2, 3.0, {}),
    ("a.mp3", 44100, 2, 5.0, {"format": "MP3"}),
    ("a.wav", 16000, 1, 2.0, {"subtype": "FLOAT"}),        # no resampling at all
    ("a.aiff", 96000, 6, 1.5, {"subtype": "PCM_24"}),
])
def test_streamed_samples_and_hash_equal_the_one_shot_computation(tmp_path, name, sr, channels, seconds, kwargs):
    path = write_audio(tmp_path / name, tone(seconds, sr, channels=channels), sr, **kwargs)
    samples, content_hash = one_shot(*sf.read(path, dtype="float32", always_2d=True))
    audio = decode(path)
    assert audio.content_hash == content_hash
    assert len(audio.samples) == len(samples)
    np.testing.assert_allclose(audio.samples, samples, rtol=0, atol=1e-5)


def test_an_mp3_read_in_blocks_is_not_garbled_at_their_edges():
    # SoundFile.read seeks after every block, which resets libsndfile's MP3 decoder: with it, the
    # samples after each block edge of this clip (noise bursts use the bit reservoir) were off by 0.35.
    rng = np.random.default_rng(1)
    t = np.arange(44100 * 8) / 44100
    y = (0.3 * rng.standard_normal(len(t)) * np.exp(-30 * (t % 0.5))).astype(np.float32)
    data = encode(np.stack([y, 0.8 * y], axis=1), 44100, "MP3")
    samples, content_hash = one_shot(*sf.read(io.BytesIO(data), dtype="float32", always_2d=True))
    audio = decode(data)
    assert audio.content_hash == content_hash
    np.testing.assert_allclose(audio.samples, samples, rtol=0, atol=1e-5)


def test_shared_clips_stream_to_the_one_shot_samples_and_hash(shared_gtzan):
    for path, _ in shared_clips("full_30s")[::40] + shared_clips("excerpt_2-3s")[::60]:
        samples, content_hash = one_shot(*sf.read(path, dtype="float32", always_2d=True))
        audio = decode(path)
        assert audio.content_hash == content_hash, path
        np.testing.assert_allclose(audio.samples, samples, rtol=0, atol=1e-5, err_msg=str(path))


@pytest.mark.parametrize("seed,sr,channels,subtype,name,digest", [
    # Digests from the decode that preceded streaming: stores hold these.
    (3, 22050, 1, "PCM_16", "a.wav", "95b9d0d010bd822cfd3302a7cfa49fd06f83be23e75f652212147d16202e7f98"),
    (4, 44100, 2, "PCM_16", "b.wav", "3870f19cc001acede2c3faaf8eef3a6f5d12b6b740b822029fb36f79ba1d0470"),
    (5, 48000, 3, "PCM_24", "c.flac", "196e71dca17bca7acd614fbf0d530efb108a33683c463103a3675692b01934cd"),
])
def test_content_hashes_are_those_stores_already_hold(tmp_path, seed, sr, channels, subtype, name, digest):
    path = write_audio(tmp_path / name, tone(2.0, sr, seed=seed, channels=channels), sr, subtype=subtype)
    assert decode(path).content_hash == digest


def test_bytes_and_paths_decode_alike_and_lossless_copies_share_a_content_hash(tmp_path):
    pcm = (tone(2.0, 22050) * 32767).astype(np.int16)  # the same 16-bit samples in both files
    wav = write_audio(tmp_path / "a.wav", pcm, 22050)
    flac = write_audio(tmp_path / "a.flac", pcm, 22050)
    assert decode(wav).content_hash == decode(flac).content_hash == decode(wav.read_bytes()).content_hash
    with wav.open("rb") as file:
        assert decode(file).content_hash == decode(wav).content_hash
    other = write_audio(tmp_path / "b.wav", tone(2.0, 22050, seed=1), 22050, subtype="PCM_16")
    assert decode(other).content_hash != decode(wav).content_hash


def test_stereo_is_mixed_to_mono(tmp_path):
    left = tone(2.0, 16000)
    path = write_audio(tmp_path / "s.wav", np.stack([left, -left], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="silent"):  # the channels cancel out
        decode(path)


def test_channels_are_averaged(tmp_path):
    stereo = tone(2.0, 16000, channels=3)
    audio = decode(write_audio(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT"))
    np.testing.assert_allclose(audio.samples, stereo.mean(axis=1), atol=1e-6)


# --- limits on the header -----------------------------------------------------------------

WAV = encode(tone(3.0, 22050), 22050, "WAV", "PCM_16")


@pytest.mark.parametrize("rate", [1, 2, 7, 3999, 384001, 1_000_000_000])
@pytest.mark.parametrize("container", ["WAV", "AU"])
def test_absurd_sample_rates_are_refused_before_reading(rate, container):
    # Before: a 1 Hz header's 66150 frames went on to be resampled to 16 kHz, 1.06 G samples
    # (over 14 GB in the service). Now refused from the header, whatever the length.
    data = wav_header(WAV, rate=rate) if container == "WAV" else au_header(
        encode(tone(3.0, 22050), 22050, "AU", "PCM_16"), rate=rate)
    with pytest.raises(AudioError, match=f"sample rate is {rate} Hz"):
        decode(data)


@pytest.mark.parametrize("rate", [4000, 384000])
def test_the_limit_rates_themselves_are_read(rate):
    audio = decode(encode(tone(1.5, rate), rate, "WAV", "PCM_16"))
    assert audio.source_rate == rate and abs(audio.duration_s - 1.5) < 0.01


def test_absurd_channel_counts_are_refused_and_many_channels_read():
    with pytest.raises(AudioError, match="1000 channels"):
        decode(wav_header(WAV, channels=1000))
    many = np.repeat(tone(1.2, 8000)[:, None], MAX_CHANNELS, axis=1)
    audio = decode(encode(many, 8000, "WAV", "PCM_16"))
    assert abs(audio.duration_s - 1.2) < 0.01


def test_a_declared_length_over_the_limit_is_refused_without_decoding(monkeypatch):
    flac = encode(tone(3.0, 22050), 22050, "FLAC", "PCM_16")

    def no_reading(*args, **kwargs):
        raise AssertionError("decoded a file whose header is enough to refuse it")

    monkeypatch.setattr(model.audio.decoding, "_read_block", no_reading)
    with pytest.raises(AudioError, match="declares 812 minutes"):      # 2^30 samples at 22.05 kHz
        decode(flac_streaminfo(flac, total_samples=2 ** 30))
    with pytest.raises(AudioError, match=r"declares 3.0 s of audio; Soundalike analyses at most 2.0 s"):
        decode(flac, max_duration_s=2.0)


def _id3(n_bytes: int) -> bytes:
    """An empty ID3v2.4 tag of `n_bytes` of padding, its size in 4 x 7 bits."""
    return b"ID3\x04\x00\x00" + bytes((n_bytes >> shift) & 0x7F for shift in (21, 14, 7, 0)) + bytes(n_bytes)


def test_an_mp3_length_that_libsndfile_only_estimates_is_neither_refused_nor_taken_for_truncation():
    # Without a Xing/Info header libsndfile estimates an MP3's length from its size and first frame:
    # 2 s of silence (a low bitrate) then 6 s of noise is "declared" 16 s long.
    rng = np.random.default_rng(0)
    y = np.concatenate([np.zeros(88200, np.float32), 0.5 * rng.standard_normal(44100 * 6).astype(np.float32)])
    data = encode(y, 44100, "MP3")
    no_header = data[data.find(b"\xff\xfb", data.find(b"Xing")):]   # from the frame after the Xing frame
    assert sf.info(io.BytesIO(no_header)).duration > 15
    audio = decode(no_header, max_duration_s=12.0)
    assert abs(audio.duration_s - 8.0) < 0.1 and not audio.truncated
    with pytest.raises(AudioError, match="longer than 6.0 s"):   # the limit holds while it is read
        decode(no_header, max_duration_s=6.0)
    # With the header the count is exact: a count over the limit is refused at once, after an ID3 tag too.
    with pytest.raises(AudioError, match="declares 8.0 s"):
        decode(data, max_duration_s=6.0)
    with pytest.raises(AudioError, match="declares 8.0 s"):
        decode(_id3(3000) + data, max_duration_s=6.0)


def test_audio_of_unknown_length_is_refused_once_it_passes_the_limit(monkeypatch):
    # A FLAC whose STREAMINFO holds no length (0: unknown, as a streaming encoder leaves it).
    flac = flac_streaminfo(encode(tone(10.0, 22050), 22050, "FLAC", "PCM_16"), total_samples=0)
    whole = decode(flac)
    assert abs(whole.duration_s - 10.0) < 1e-3 and not whole.truncated
    monkeypatch.setattr(model.audio.decoding, "BLOCK_SAMPLES", 4096)
    reads = []
    original = model.audio.decoding._read_block
    monkeypatch.setattr(model.audio.decoding, "_read_block", lambda *a: reads.append(1) or original(*a))
    with pytest.raises(AudioError, match="longer than 3.0 s"):
        decode(flac, max_duration_s=3.0)
    assert len(reads) <= 3.0 * 22050 / 4096 + 2     # it stopped reading at the limit, not at the end


# --- sample values ------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(subtype, value):
    y = tone(2.0, 22050).astype(np.float64)
    y[1000] = value
    with pytest.raises(AudioError, match="non-finite"):
        decode(encode(y, 22050, "WAV", subtype))


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_levels_far_above_full_scale_are_refused(subtype):
    # Before: 1e20 samples were analysed, and their squares overflowed float32 in the features (a 500).
    y = tone(2.0, 22050).astype(np.float64)
    for scale, message in ((1e20, "1e\\+20 times full scale"), (5e3, "not audio levels")):
        with pytest.raises(AudioError, match=message):
            decode(encode(y / np.max(np.abs(y)) * scale, 22050, "WAV", subtype))
    y[500] = 1e20
    with pytest.raises(AudioError, match="not audio levels"):
        decode(encode(y, 22050, "WAV", subtype))
    if subtype == "DOUBLE":   # beyond float32: read as inf
        with pytest.raises(AudioError, match="non-finite"):
            decode(encode(y * 1e280, 22050, "WAV", subtype))


def test_a_moderate_float_overshoot_is_kept_and_a_large_one_scaled_to_full_scale():
    y = tone(2.0, 16000)
    y /= np.max(np.abs(y))
    kept = decode(encode(y * 1.5, 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(kept.samples, y * 1.5, atol=1e-6)
    scaled = decode(encode(y * 50, 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(scaled.samples, y, atol=1e-6)
    assert scaled.content_hash != decode(encode(y, 16000, "WAV", "FLOAT")).content_hash  # the file's own samples


# --- codecs and damaged files -------------------------------------------------------------

@pytest.mark.parametrize("container,subtype,rate", [
    ("WAV", "GSM610", 8000), ("WAV", "G721_32", 8000), ("AU", "G721_32", 8000),
    ("XI", "DPCM_16", 44100), ("XI", "DPCM_8", 44100),
])
def test_codecs_libsndfile_cannot_seek_in_are_decoded(container, subtype, rate):
    # Before: "frames must be specified for non-seekable files" (a 500).
    y = tone(3.0, rate)
    audio = decode(encode(y, rate, container, subtype))
    assert abs(audio.duration_s - 3.0) < 0.05 and not audio.truncated
    reference = resample(y, rate)[:len(audio.samples)]
    assert np.corrcoef(reference, audio.samples[:len(reference)])[0, 1] > 0.95


CLIP = tone(5.0, 22050, seed=2)


@pytest.mark.parametrize("container,subtype,ext,rate", [
    ("WAV", "PCM_16", "wav", 22050), ("AIFF", "PCM_16", "aiff", 22050), ("AU", "PCM_16", "au", 22050),
    ("W64", "PCM_16", "w64", 22050), ("FLAC", "PCM_16", "flac", 22050), ("OGG", "VORBIS", "ogg", 22050),
    ("OGG", "OPUS", "opus", 48000), ("MP3", None, "mp3", 44100), ("WAV", "GSM610", "wav", 8000),
])
def test_a_truncated_file_is_analysed_as_far_as_it_decodes_and_flagged(tmp_path, container, subtype, ext, rate):
    # Before: a cut WAV, AIFF, AU, OGG or Opus file decoded as a shorter clip without a word, and a
    # cut FLAC or MP3 was refused.
    data = encode(tone(5.0, rate, seed=2), rate, container, subtype)
    whole = decode(data)
    assert not whole.truncated and abs(whole.duration_s - 5.0) < 0.1
    cut = decode(data[:int(len(data) * 0.6)])
    assert cut.truncated and 1.0 < cut.duration_s < 4.5
    (tmp_path / f"cut.{ext}").write_bytes(data[:int(len(data) * 0.6)])
    assert decode(tmp_path / f"cut.{ext}").truncated           # from a path, as from bytes
    with pytest.raises(AudioError, match=r"truncated|malformed"):   # 0.6 s, or not even the header
        decode(data[:int(len(data) * 0.12)])


def test_a_wav_whose_writer_did_not_know_the_length_is_not_truncated():
    audio = decode(wav_header(WAV, data_size=0xFFFFFFFF))
    assert not audio.truncated and abs(audio.duration_s - 3.0) < 0.01


MP3 = mp3_bytes(4.0)


@pytest.mark.parametrize("make,message", [
    (lambda tmp: b"", "decodable"),
    (lambda tmp: np.random.default_rng(0).bytes(50_000), "decodable"),
    (lambda tmp: b"This is a text file, renamed to .wav.\n" * 100, "decodable"),
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


def test_a_header_that_makes_libsndfile_seek_before_the_start_is_refused_quietly(capfd):
    # A 24-byte AIFF: libsndfile seeks to -1, which BytesIO answered with an exception in soundfile's
    # callback, printed to stderr as a traceback.
    with pytest.raises(AudioError, match="not a decodable audio file"):
        decode(encode(tone(2.0, 22050), 22050, "AIFF", "PCM_16")[:24])
    assert "Traceback" not in capfd.readouterr().err


def test_text_file_with_audio_name_is_rejected(tmp_path):
    path = tmp_path / "song.mp3"
    path.write_text("not audio at all\n" * 50)
    with pytest.raises(AudioError):
        decode(path)
    assert sf.available_formats()  # libsndfile itself is loaded

