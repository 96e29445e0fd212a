"""Tempo (librosa's estimate over the log-mel's onset envelope), on synthetic drums of known tempo; tempo
reasons; and a store built before tempos were, which serves without them until it is preprocessed again."""
import json

import numpy as np
import pytest

from conftest import write_audio
from drum_audio import drums
from model.audio.features import log_mel, tempo
from model.index.explain import tempo_reason
from model.network.classifier import GenreClassifier
from model.params import SAMPLE_RATE
from model.service.library import Library
from model.service.settings import from_env
from model.stores.feature_store import MANIFEST, Store
from model.stores.ingest import ingest

WEIGHTS = from_env().weights_dir


@pytest.mark.parametrize("pattern", ["rock", "click"])
@pytest.mark.parametrize("bpm", [90, 120, 140])
def test_the_tempo_of_drums_is_found_within_two_percent(bpm, pattern):
    found = tempo(log_mel(drums(bpm, pattern=pattern)))
    assert found == pytest.approx(bpm, rel=0.02)


def test_no_tempo_is_claimed_of_noise_silence_or_a_few_seconds():
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 30 * SAMPLE_RATE).astype(np.float32)
    assert tempo(log_mel(noise)) is None
    assert tempo(log_mel(np.zeros(30 * SAMPLE_RATE, np.float32))) is None
    assert tempo(log_mel(drums(120, seconds=5.0))) is None


def test_tempo_reasons_say_both_tempos_and_an_octave_apart():
    assert tempo_reason(96.2, 98.4).text == "tempo 96 BPM, yours 98"
    assert tempo_reason(96.2, 98.4).as_dict() == {"kind": "tempo", "text": "tempo 96 BPM, yours 98", "main": False,
                                                  "bpm": 96, "your_bpm": 98}
    assert tempo_reason(120.2, 119.8).text == "same tempo (120 BPM)"
    assert tempo_reason(60.5, 121.0).text == "tempo 60 BPM, yours 121 (half time)"
    assert tempo_reason(170.5, 85.2).text == "tempo 170 BPM, yours 85 (double time)"
    assert tempo_reason(None, 120.0) is None and tempo_reason(100.0, None) is None


def test_a_store_keeps_each_tracks_tempo_and_one_built_before_them_serves_without(tmp_path):
    for genre, bpms in (("rock", (90, 140)), ("pop", (120, 100))):
        for i, bpm in enumerate(bpms):
            write_audio(tmp_path / "audio" / genre / f"{genre}.{i:05d}.wav", drums(bpm, seconds=12.0, seed=i), SAMPLE_RATE)
    ingest(tmp_path / "audio", tmp_path / "data", workers=1, progress=False)
    store = Store(tmp_path / "data")
    assert store.tempos_known
    assert {t.id: t.tempo_bpm for t in store.tracks()} == {
        "pop.00000": pytest.approx(120, rel=0.02), "pop.00001": pytest.approx(100, rel=0.02),
        "rock.00000": pytest.approx(90, rel=0.02), "rock.00001": pytest.approx(140, rel=0.02)}
    classifier = GenreClassifier.load(WEIGHTS)
    upload = drums(120, seconds=12.0, seed=7)

    def tempo_reasons(library: Library) -> list[dict]:
        from model.audio.decoding import Audio
        analysis = library.analyse(Audio(upload, SAMPLE_RATE, content_hash="upload"))
        assert analysis.tempo_bpm == pytest.approx(120, rel=0.02)
        return [r.as_dict() for p in analysis.recommendations for r in p.reasons if r.kind == "tempo"]

    reasons = tempo_reasons(Library(store, classifier, WEIGHTS, scope="library"))
    assert len(reasons) == 3 and all(r["your_bpm"] in (119, 120, 121) for r in reasons)
    assert {r["bpm"] for r in reasons} <= {round(t.tempo_bpm) for t in store.tracks()}

    # A store built before tempos were: its manifest records none; it serves, without tempo reasons.
    manifest = json.loads((tmp_path / "data" / MANIFEST).read_text())
    del manifest["tempo"]
    (tmp_path / "data" / MANIFEST).write_text(json.dumps(manifest))
    old = Store(tmp_path / "data")
    assert not old.tempos_known
    library = Library(old, classifier, WEIGHTS, scope="library")
    assert not library.tempos_known and tempo_reasons(library) == []
    # Preprocessing its collection again estimates every tempo and records the recipe.
    summary = ingest(tmp_path / "audio", tmp_path / "data", workers=1, progress=False)
    assert summary.updated == 4 and summary.why_updated == {"for their tempo": 4}
    assert Store(tmp_path / "data").tempos_known
    again = ingest(tmp_path / "audio", tmp_path / "data", workers=1, progress=False)
    assert again.updated == 0 and again.already == 4
