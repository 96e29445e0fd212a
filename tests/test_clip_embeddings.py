"""The training clips' cached network outputs: computed once per clip and selection, computed again
where a clip's audio changed, kept where only its file's date did (a corpus copied elsewhere)."""
import os
import shutil

import numpy as np

from conftest import tone, write_audio
from model.corpus import Clip
from model.network.clip_embeddings import AUGMENTED, SELECTIONS, clip_embeddings


def make_clips(root):
    clips = []
    for i, seconds in enumerate([2.5, 7.0]):
        path = root / "blues" / f"blues.{i:05d}.flac"
        write_audio(path, tone(seconds, seed=i), 22050)
        clips.append(Clip(path, (0,), f"artist {i}", seconds, "gtzan"))
    return clips


class Counting:
    """An embedder: (n, frames, mels) -> (n, 2), counting the patches it is asked for."""
    def __init__(self):
        self.patches = 0

    def __call__(self, batch):
        self.patches += len(batch)
        return np.stack([batch.mean(axis=(1, 2)), batch.std(axis=(1, 2))], axis=1)


def test_outputs_are_computed_once_and_again_only_for_changed_audio(tmp_path):
    clips = make_clips(tmp_path / "corpus")
    embed = Counting()
    first = clip_embeddings(clips, {"msd": ("digest", embed)}, tmp_path / "cache", progress=False)
    assert set(first) == {("msd", s) for s in SELECTIONS} and embed.patches > 0
    assert [len(x) for x in first[("msd", "served")]] == [1, 2]   # a 2.5 s clip is one (looped) patch, 7 s two
    # A new selection computes that selection only; the others are read back.
    embed.patches = 0
    both = clip_embeddings(clips, {"msd": ("digest", embed)}, tmp_path / "cache", progress=False,
                           selections=SELECTIONS + AUGMENTED)
    assert embed.patches == sum(len(x) for x in both[("msd", "eq")])
    for s in SELECTIONS:
        for a, b in zip(first[("msd", s)], both[("msd", s)]):
            np.testing.assert_array_equal(a, b)
    # The served patches as through another chain differ from them, and are the same on every run.
    assert not np.array_equal(both[("msd", "eq")][1], both[("msd", "served")][1])
    # A copy of the corpus (other dates, same audio) is decoded, not embedded again.
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "corpus", copy)
    for clip in clips:
        os.utime(copy / "blues" / clip.path.name, ns=(10**18, 10**18))
    moved = [Clip(copy / "blues" / c.path.name, c.candidates, c.artist, c.duration_s, c.source) for c in clips]
    embed.patches = 0
    again = clip_embeddings(moved, {"msd": ("digest", embed)}, tmp_path / "cache", progress=False,
                            selections=SELECTIONS + AUGMENTED)
    assert embed.patches == 0
    np.testing.assert_array_equal(again[("msd", "eq")][1], both[("msd", "eq")][1])
    # Changed audio is embedded again, that clip only.
    write_audio(moved[1].path, tone(7.0, seed=9), 22050)
    embed.patches = 0
    changed = clip_embeddings(moved, {"msd": ("digest", embed)}, tmp_path / "cache", progress=False)
    assert embed.patches == sum(len(changed[("msd", s)][1]) for s in SELECTIONS)
    assert not np.array_equal(changed[("msd", "served")][1], both[("msd", "served")][1])
