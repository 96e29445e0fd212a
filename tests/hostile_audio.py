"""A deterministic corpus of hostile and odd uploads (issue 6): absurd header rates and channel
counts, lying lengths, codecs libsndfile reads only partly, float files far from audio levels,
truncations of every format, flipped header bytes, empty and non-audio files.

    for case in hostile_cases():      # about 750 (name, bytes, expected statuses), ~40 MB, ~2 s
        ...

Expected statuses are what the API may answer: 200 (analysed), 400 (empty), 415 (not audio),
422 (audio that cannot be used). Where the outcome depends on where a cut or a flipped byte falls,
several are allowed: what no case may get is a 5xx.
"""
from __future__ import annotations

import io
import struct
from typing import Callable, NamedTuple

import numpy as np
import soundfile as sf

from conftest import tone

OK, EMPTY, NOT_AUDIO, UNUSABLE = 200, 400, 415, 422
REFUSED = frozenset({NOT_AUDIO, UNUSABLE})
ANY = frozenset({OK, NOT_AUDIO, UNUSABLE})


class Case(NamedTuple):
    name: str                 # the upload's file name (its extension is only a name: content decides)
    data: bytes
    expected: frozenset[int]  # statuses the API may answer
    truncated: bool | None = None   # what an analysis must say of it; None: either


class Base(NamedTuple):
    name: str
    ext: str
    format: str
    subtype: str | None
    rate: int                 # Hz
    channels: int
    seconds: float


# Valid files of every format and of the codecs libsndfile reads only partly (not seekable).
BASES = (
    Base("wav16", "wav", "WAV", "PCM_16", 22050, 1, 2.5),
    Base("wav24-stereo", "wav", "WAV", "PCM_24", 32000, 2, 1.5),
    Base("wav-float", "wav", "WAV", "FLOAT", 22050, 1, 2.0),
    Base("wav-double", "wav", "WAV", "DOUBLE", 16000, 1, 2.0),
    Base("wav-ulaw", "wav", "WAV", "ULAW", 8000, 1, 2.5),
    Base("wav-ima-adpcm", "wav", "WAV", "IMA_ADPCM", 22050, 2, 2.5),
    Base("wav-ms-adpcm", "wav", "WAV", "MS_ADPCM", 22050, 1, 2.5),
    Base("wav-gsm610", "wav", "WAV", "GSM610", 8000, 1, 3.0),
    Base("wav-g721", "wav", "WAV", "G721_32", 8000, 1, 3.0),
    Base("au16", "au", "AU", "PCM_16", 16000, 1, 2.5),
    Base("au-g721", "au", "AU", "G721_32", 8000, 1, 3.0),
    Base("au-float", "au", "AU", "FLOAT", 11025, 1, 2.0),
    Base("aiff16", "aiff", "AIFF", "PCM_16", 22050, 2, 2.0),
    Base("flac16", "flac", "FLAC", "PCM_16", 22050, 1, 3.0),
    Base("ogg-vorbis", "ogg", "OGG", "VORBIS", 22050, 2, 3.0),
    Base("opus", "opus", "OGG", "OPUS", 48000, 1, 3.0),
    Base("mp3", "mp3", "MP3", None, 44100, 2, 3.0),
    Base("w64", "w64", "W64", "PCM_16", 22050, 1, 2.5),
    Base("caf", "caf", "CAF", "PCM_16", 22050, 1, 2.5),
    Base("xi-dpcm16", "xi", "XI", "DPCM_16", 44100, 1, 1.5),
    Base("xi-dpcm8", "xi", "XI", "DPCM_8", 44100, 1, 1.5),
    Base("wav-4khz", "wav", "WAV", "PCM_16", 4000, 1, 2.0),        # the lowest rate read
    Base("wav-384khz", "wav", "WAV", "PCM_16", 384000, 1, 1.05),   # the highest
)
TRUNCATED_FORMATS = ("wav16", "aiff16", "au16", "flac16", "ogg-vorbis", "opus", "mp3", "w64", "caf",
                     "wav-gsm610", "au-g721", "xi-dpcm16", "wav-float")
CUT_FRACTIONS = (0.02, 0.05, 0.08, 0.12, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
CUT_BYTES = (1, 4, 8, 12, 16, 24, 28, 36, 44, 60, 100, 200, 500, 1000, 4096)
ABSURD_RATES = (0, 1, 2, 7, 3999, 384001, 1_000_000_000)   # Hz


def encode(y: np.ndarray, rate: int, format: str, subtype: str | None = None) -> bytes:
    """Audio as bytes of a container, written one second at a time (one long sf.write of OGG can
    crash libsndfile), the same bytes every time."""
    buffer = io.BytesIO()
    channels = 1 if y.ndim == 1 else y.shape[1]
    with sf.SoundFile(buffer, "w", rate, channels, format=format, subtype=subtype) as f:
        for start in range(0, len(y), rate):
            f.write(y[start:start + rate])
    data = buffer.getvalue()
    # libsndfile stamps float WAV/AIFF files' PEAK chunk with the time, and gives Ogg streams a random serial.
    peak = data.find(b"PEAK", 0, 200)
    if peak >= 0:
        data = _put(data, peak + 12, bytes(4))
    return _ogg_serial(data) if format == "OGG" else data


def base_file(base: Base) -> bytes:
    return encode(tone(base.seconds, base.rate, seed=len(base.name), channels=base.channels),
                  base.rate, base.format, base.subtype)


# --- header surgery ---------------------------------------------------------------------------

def _put(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw):]


def _chunk(data: bytes, tag: bytes) -> int:
    offset = data.find(tag)
    assert offset >= 0, tag
    return offset


def wav_header(data: bytes, rate: int | None = None, channels: int | None = None,
               data_size: int | None = None) -> bytes:
    fmt = _chunk(data, b"fmt ")
    if rate is not None:
        data = _put(data, fmt + 12, struct.pack("<I", rate % 2 ** 32))
    if channels is not None:
        data = _put(data, fmt + 10, struct.pack("<H", channels))
    if data_size is not None:
        data = _put(data, _chunk(data, b"data") + 4, struct.pack("<I", data_size))
    return data


def w64_header(data: bytes, rate: int | None = None, channels: int | None = None) -> bytes:
    fmt = _chunk(data, b"fmt ")        # a 16-byte GUID and an 8-byte size precede WAVEFORMATEX
    if rate is not None:
        data = _put(data, fmt + 28, struct.pack("<I", rate % 2 ** 32))
    if channels is not None:
        data = _put(data, fmt + 26, struct.pack("<H", channels))
    return data


def au_header(data: bytes, rate: int | None = None, channels: int | None = None,
              data_size: int | None = None) -> bytes:
    if rate is not None:
        data = _put(data, 16, struct.pack(">I", rate % 2 ** 32))
    if channels is not None:
        data = _put(data, 20, struct.pack(">I", channels))
    if data_size is not None:
        data = _put(data, 8, struct.pack(">I", data_size))
    return data


def _extended(value: int) -> bytes:
    """An 80-bit IEEE extended float, AIFF's sample rate."""
    if value == 0:
        return bytes(10)
    exponent = value.bit_length() - 1
    return struct.pack(">HQ", 16383 + exponent, value << (63 - exponent))


def aiff_header(data: bytes, rate: int | None = None, channels: int | None = None,
                frames: int | None = None) -> bytes:
    comm = _chunk(data, b"COMM")
    if channels is not None:
        data = _put(data, comm + 8, struct.pack(">H", channels))
    if frames is not None:
        data = _put(data, comm + 10, struct.pack(">I", frames))
    if rate is not None:
        data = _put(data, comm + 16, _extended(rate))
    return data


def caf_header(data: bytes, rate: float | None = None, channels: int | None = None) -> bytes:
    desc = _chunk(data, b"desc")       # then an 8-byte size, the rate (float64), ..., channels per frame
    if rate is not None:
        data = _put(data, desc + 12, struct.pack(">d", rate))
    if channels is not None:
        data = _put(data, desc + 36, struct.pack(">I", channels))
    return data


def flac_streaminfo(data: bytes, rate: int | None = None, total_samples: int | None = None) -> bytes:
    # STREAMINFO's bytes 18-25: rate (20 bits), channels - 1 (3), bits - 1 (5), total samples (36)
    bits = int.from_bytes(data[18:26], "big")
    if rate is not None:
        bits = (bits & ~(((1 << 20) - 1) << 44)) | (min(rate, (1 << 20) - 1) << 44)
    if total_samples is not None:
        bits = (bits & ~((1 << 36) - 1)) | total_samples
    return _put(data, 18, bits.to_bytes(8, "big"))


def _ogg_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC = _ogg_crc_table()


def ogg_first_packet(data: bytes, magic: bytes, changes: dict[int, bytes]) -> bytes:
    """Patch the identification header (first page) of an Ogg Vorbis or Opus file at offsets from
    `magic`, and give the page its right checksum again (libogg drops pages whose checksum fails)."""
    start = _chunk(data, magic)
    for offset, raw in changes.items():
        data = _put(data, start + offset, raw)
    segments = data[27:27 + data[26]]
    end = 27 + len(segments) + sum(segments)
    return _ogg_checksum(data[:end]) + data[end:]


def _ogg_checksum(page: bytes) -> bytes:
    """An Ogg page with its CRC field computed again."""
    page = _put(page, 22, bytes(4))
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ byte]
    return _put(page, 22, struct.pack("<I", crc))


def _ogg_serial(data: bytes, serial: int = 6) -> bytes:
    """Every page of an Ogg file given one fixed stream serial number (and its checksum again)."""
    pages, start = [], 0
    while start + 27 <= len(data) and data[start:start + 4] == b"OggS":
        segments = data[start + 27:start + 27 + data[start + 26]]
        end = start + 27 + len(segments) + sum(segments)
        pages.append(_ogg_checksum(_put(data[start:end], 14, struct.pack("<I", serial))))
        start = end
    return b"".join(pages) + data[start:]


def vorbis_header(data: bytes, rate: int | None = None, channels: int | None = None) -> bytes:
    changes = {}       # "\x01vorbis", version (4), channels (1), rate (4, little-endian)
    if channels is not None:
        changes[11] = bytes([channels])
    if rate is not None:
        changes[12] = struct.pack("<I", rate % 2 ** 32)
    return ogg_first_packet(data, b"\x01vorbis", changes)


def opus_header(data: bytes, rate: int | None = None, channels: int | None = None) -> bytes:
    changes = {}       # "OpusHead", version (1), channels (1), pre-skip (2), input rate (4, little-endian)
    if channels is not None:
        changes[9] = bytes([channels])
    if rate is not None:
        changes[12] = struct.pack("<I", rate % 2 ** 32)
    return ogg_first_packet(data, b"OpusHead", changes)


def mp3_xing_frames(data: bytes, frames: int) -> bytes:
    """Set the frame count of the Xing/Info header (the first frame) that libsndfile's encoder writes."""
    tag = max(data.find(b"Xing", 0, 400), data.find(b"Info", 0, 400))
    assert tag >= 0, "no Xing/Info header"
    flags = struct.unpack(">I", data[tag + 4:tag + 8])[0]
    assert flags & 1, "the Xing header holds no frame count"
    return _put(data, tag + 8, struct.pack(">I", frames))


# --- the corpus -------------------------------------------------------------------------------

def _header_cases(files: dict[str, bytes]) -> list[Case]:
    cases = []
    patchers: dict[str, Callable[..., bytes]] = {
        "wav16": wav_header, "au16": au_header, "aiff16": aiff_header, "w64": w64_header,
        "flac16": flac_streaminfo, "ogg-vorbis": vorbis_header, "opus": opus_header, "caf": caf_header}
    for name, patch in patchers.items():
        ext = next(b.ext for b in BASES if b.name == name)
        for rate in ABSURD_RATES:
            # Opus decodes at 48 kHz whatever its header's input rate says: any outcome but a 5xx.
            expected = ANY if name == "opus" else REFUSED
            cases.append(Case(f"rate-{name}-{rate}Hz.{ext}", patch(files[name], rate=rate), expected))
    for rate in (float("nan"), float("inf"), -44100.0, 1e20, 0.5):
        cases.append(Case(f"rate-caf-{rate}Hz.caf", caf_header(files["caf"], rate=rate), REFUSED))
    channel_patchers = {"wav16": (wav_header, (0, 65, 1000, 65535)), "au16": (au_header, (0, 65, 1000, 2 ** 31 - 1)),
                        "aiff16": (aiff_header, (0, 65, 1000, 65535)), "w64": (w64_header, (0, 65, 65535)),
                        "caf": (caf_header, (0, 65, 2 ** 31 - 1)), "ogg-vorbis": (vorbis_header, (0, 65, 255)),
                        "opus": (opus_header, (0, 3, 65, 255))}
    for name, (patch, counts) in channel_patchers.items():
        ext = next(b.ext for b in BASES if b.name == name)
        for channels in counts:
            cases.append(Case(f"channels-{name}-{channels}.{ext}", patch(files[name], channels=channels), REFUSED))
    # A plausible channel count that does not match the data: read as noise-like audio, or refused.
    cases.append(Case("channels-wav16-3.wav", wav_header(files["wav16"], channels=3), ANY))
    for total in (0, 1, 1000, 2 ** 32, 2 ** 36 - 1):
        expected = frozenset({UNUSABLE}) if total in (1, 1000, 2 ** 32, 2 ** 36 - 1) else ANY
        cases.append(Case(f"flac-total-samples-{total}.flac", flac_streaminfo(files["flac16"], total_samples=total),
                          expected))
    for frames in (0, 1, 10, 0x7FFFFFFF, 0xFFFFFFFF):
        cases.append(Case(f"mp3-xing-frames-{frames}.mp3", mp3_xing_frames(files["mp3"], frames), ANY))
    id3 = b"ID3\x04\x00\x00\x00\x00\x0f\x68" + bytes(2024)     # an empty ID3v2 tag of 2024 bytes
    cases.append(Case("mp3-id3-xing-frames-absurd.mp3", id3 + mp3_xing_frames(files["mp3"], 0x7FFFFFFF),
                      frozenset({UNUSABLE})))
    cases.append(Case("mp3-id3.mp3", id3 + files["mp3"], frozenset({OK}), False))
    # A VBR MP3 without its Xing frame, starting quietly: libsndfile's estimate of its length is far off.
    quiet_start = encode(np.concatenate([np.zeros(44100, np.float32), tone(3.0, 44100, seed=9)]), 44100, "MP3")
    cases.append(Case("mp3-no-xing-quiet-start.mp3", quiet_start[quiet_start.find(b"\xff\xfb", 40):],
                      frozenset({OK}), False))
    # Lengths that streaming writers leave unknown: the audio is all there.
    cases.append(Case("wav-data-size-unknown.wav", wav_header(files["wav16"], data_size=0xFFFFFFFF),
                      frozenset({OK})))
    cases.append(Case("wav-data-size-0.wav", wav_header(files["wav16"], data_size=0), ANY))
    cases.append(Case("au-data-size-unknown.au", au_header(files["au16"], data_size=0xFFFFFFFF), frozenset({OK})))
    cases.append(Case("aiff-frames-absurd.aiff", aiff_header(files["aiff16"], frames=0xFFFFFFFF), ANY))
    return cases


def _float_cases() -> list[Case]:
    cases = []
    y = tone(2.0, 22050, seed=5)
    for subtype in ("FLOAT", "DOUBLE"):
        values = [("1e20", 1e20), ("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf"))]
        if subtype == "DOUBLE":
            values += [("1e300", 1e300)]
        for label, value in values:
            spike = y.astype(np.float64)
            spike[len(y) // 2] = value
            cases.append(Case(f"float-{subtype}-one-sample-{label}.wav", encode(spike, 22050, "WAV", subtype),
                              frozenset({UNUSABLE})))
        for scale, expected in ((1.5, OK), (50.0, OK), (5e3, UNUSABLE), (1e20, UNUSABLE)):
            cases.append(Case(f"float-{subtype}-scaled-{scale:g}.wav",
                              encode(y.astype(np.float64) * scale, 22050, "WAV", subtype), frozenset({expected})))
        if subtype == "DOUBLE":
            cases.append(Case("float-DOUBLE-scaled-1e300.wav", encode(y.astype(np.float64) * 1e300, 22050, "WAV",
                                                                      subtype), frozenset({UNUSABLE})))
    for container, ext in (("AU", "au"), ("AIFF", "aiff"), ("CAF", "caf"), ("W64", "w64")):
        nan = y.copy()
        nan[100:200] = np.nan
        cases.append(Case(f"float-{container}-nan.{ext}", encode(nan, 22050, container, "FLOAT"),
                          frozenset({UNUSABLE})))
        cases.append(Case(f"float-{container}-1e20.{ext}", encode(y * 1e20, 22050, container, "FLOAT"),
                          frozenset({UNUSABLE})))
    return cases


def _truncations(files: dict[str, bytes]) -> list[Case]:
    cases = []
    for name in TRUNCATED_FORMATS:
        data, ext = files[name], next(b.ext for b in BASES if b.name == name)
        cuts = sorted({int(len(data) * f) for f in CUT_FRACTIONS} | {n for n in CUT_BYTES if n < len(data)})
        for cut in cuts:
            # Undetectable: a cut in an XI file, or the last 2 % of an MP3 (its declared length is an estimate).
            visible = name != "xi-dpcm16" and not (name == "mp3" and cut > 0.98 * len(data))
            cases.append(Case(f"cut-{name}-{cut}-of-{len(data)}.{ext}", data[:cut], ANY, True if visible else None))
    return cases


def _flips(files: dict[str, bytes], rng: np.random.Generator, per_file: int = 8) -> list[Case]:
    """Random bytes of the first 128 (the header) changed, 1 to 3 at a time."""
    cases = []
    for base in BASES:
        if len(files[base.name]) > 300_000:     # the 384 kHz WAV: a WAV header like the others, in 800 kB
            continue
        data = files[base.name]
        for k in range(per_file):
            flipped = bytearray(data)
            for position in rng.integers(0, min(128, len(data)), size=int(rng.integers(1, 4))):
                flipped[position] ^= int(rng.integers(1, 256))
            cases.append(Case(f"flip-{base.name}-{k}.{base.ext}", bytes(flipped), ANY))
    return cases


def _empty_and_not_audio(rng: np.random.Generator) -> list[Case]:
    cases = [Case(f"zero-length.{ext}", b"", frozenset({EMPTY})) for ext in ("wav", "mp3", "flac")]
    silence = np.zeros(0, np.float32)
    for container, subtype, ext, rate in (("WAV", "PCM_16", "wav", 22050), ("AIFF", "PCM_16", "aiff", 22050),
                                          ("AU", "PCM_16", "au", 22050), ("FLAC", "PCM_16", "flac", 22050),
                                          ("W64", "PCM_16", "w64", 22050), ("CAF", "PCM_16", "caf", 22050),
                                          ("OGG", "VORBIS", "ogg", 22050), ("OGG", "OPUS", "opus", 48000)):
        # libsndfile writes a FLAC of no frames as no bytes at all: the API's "empty file" (400).
        cases.append(Case(f"empty-data-{container}-{subtype}.{ext}", encode(silence, rate, container, subtype),
                          REFUSED | {EMPTY}))
    text = b"Soundalike hostile corpus: this is text, not a song.\n" * 300
    for ext in ("wav", "mp3", "flac", "ogg", "opus", "aiff"):
        cases.append(Case(f"text.{ext}", text, frozenset({NOT_AUDIO})))
        cases.append(Case(f"random.{ext}", rng.bytes(int(rng.integers(1000, 60000))), REFUSED))
    # Real magic numbers followed by noise.
    for magic, ext in ((b"RIFF\x24\x00\x01\x00WAVEfmt ", "wav"), (b"fLaC\x00\x00\x00\x22", "flac"),
                       (b"OggS\x00\x02", "ogg"), (b"ID3\x03\x00\x00\x00\x00\x00\x00", "mp3"),
                       (b".snd\x00\x00\x00\x18", "au"), (b"FORM\x00\x01\x00\x00AIFFCOMM", "aiff"),
                       (b"caff\x00\x01\x00\x00", "caf"), (b"\xff\xfb\x90\x00", "mp3")):
        for k in range(3):
            cases.append(Case(f"magic-then-noise-{magic[:4].hex()}-{k}.{ext}", magic + rng.bytes(20000),
                              REFUSED | {OK}))
    return cases


def hostile_cases(seed: int = 6) -> list[Case]:
    """The whole corpus, the same bytes for the same seed."""
    rng = np.random.default_rng(seed)
    files = {base.name: base_file(base) for base in BASES}
    cases = [Case(f"valid-{base.name}.{base.ext}", files[base.name], frozenset({OK}), False) for base in BASES]
    cases += _header_cases(files)
    cases += _float_cases()
    cases += _truncations(files)
    cases += _flips(files, rng)
    cases += _empty_and_not_audio(rng)
    return cases


# --- long, small uploads in formats browsers do not play (issue 20) ---------------------------

# name -> (file extension, libsndfile format and subtype, or PyAV muxer and codec; rate; channels).
# Each holds about 19.5 minutes in an upload of a few MB to ~47 MB, and takes a few seconds to make
# (libsndfile's ALAC encoder and its G72x codecs are slow: mono, and AU as 8-bit mu-law).
LONG_QUIET = {
    "caf-alac": ("caf", ("sf", "CAF", "ALAC_16"), 48000, 1),
    "aiff-ima": ("aiff", ("sf", "AIFF", "IMA_ADPCM"), 32000, 2),
    "au-ulaw": ("au", ("sf", "AU", "ULAW"), 40000, 1),
    "w64-ms-adpcm": ("w64", ("sf", "W64", "MS_ADPCM"), 32000, 2),
    "wma": ("wma", ("av", "asf", "wmav2"), 48000, 2),
    "mkv-flac": ("mkv", ("av", "matroska", "flac"), 48000, 2),
}
LONG_QUIET_S = 19.5 * 60


def _quiet_blocks(rate: int, channels: int, seconds: float, block_s: float = 10.0):
    """A quiet (-40 dBFS) tone that changes pitch every block, block by block as float32 (frames, channels)."""
    block = int(block_s * rate)
    t = np.arange(block) / rate
    for i in range(int(seconds / block_s)):
        y = (0.01 * np.sin(2 * np.pi * (110.0 * 2 ** ((i * 5 % 24) / 12)) * t)).astype(np.float32)
        yield np.repeat(y[:, None], channels, axis=1)


def long_quiet(kind: str, seconds: float = LONG_QUIET_S) -> tuple[str, bytes]:
    """(file name, bytes) of `seconds` of a quiet tone in the container of LONG_QUIET[kind]."""
    ext, (library, container, codec), rate, channels = LONG_QUIET[kind]
    buffer = io.BytesIO()
    if library == "sf":
        with sf.SoundFile(buffer, "w", rate, channels, format=container, subtype=codec) as f:
            for y in _quiet_blocks(rate, channels, seconds):
                f.write(y)
    else:
        import av   # only these cases need PyAV
        layout = "stereo" if channels == 2 else "mono"
        with av.open(buffer, "w", format=container) as out:
            stream = out.add_stream(codec, rate=rate, layout=layout)
            if codec == "wmav2":
                stream.bit_rate = 32000
            pts = 0
            for y in _quiet_blocks(rate, channels, seconds):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y).reshape(1, -1), format="flt", layout=layout)
                frame.sample_rate, frame.pts = rate, pts
                pts += len(y)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return f"long-quiet.{ext}", buffer.getvalue()
