"""Synthetic drums of a known tempo, for the tests of tempo estimates and tempo reasons (test_tempo,
test_browser)."""
import numpy as np

from model.params import SAMPLE_RATE


def drums(bpm: float, seconds: float = 30.0, seed: int = 0, pattern: str = "rock") -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, hi-hats on every eighth (`rock`), or a noise click per beat."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int((seconds + 1) * SAMPLE_RATE))
    t = np.arange(int(0.15 * SAMPLE_RATE)) / SAMPLE_RATE
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t / 0.02)) * t) * np.exp(-t / 0.08) \
        + 0.3 * rng.normal(size=len(t)) * np.exp(-t / 0.003)
    snare = 0.6 * rng.normal(size=len(t)) * np.exp(-t / 0.05) + 0.4 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05)
    short = np.arange(int(0.04 * SAMPLE_RATE)) / SAMPLE_RATE
    hat = np.diff(rng.normal(size=len(short) + 1)) * np.exp(-short / 0.01) * 0.15
    click = rng.normal(size=len(short)) * np.exp(-short / 0.01) * 0.5

    def hit(at: float, sound: np.ndarray) -> None:
        start = int(at * SAMPLE_RATE)
        y[start:start + len(sound)] += sound

    period = 60.0 / bpm
    for i, at in enumerate(np.arange(0.1, seconds - 0.2, period)):
        if pattern == "click":
            hit(at, click)
            continue
        hit(at, 0.5 * (kick if i % 2 == 0 else snare))
        hit(at, hat)
        hit(at + period / 2, 0.6 * hat)
    return y[:int(seconds * SAMPLE_RATE)].astype(np.float32)
