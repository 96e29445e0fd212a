"""The labelled collections and the artist-grouped folds: no artist is ever on both sides of a split."""
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from model.corpus import COARSE, Clip, artist_folds, artist_groups, gtzan_dev, more_genres
from model.params import GENRES

SHARED = REPO.parent / "shared"


def clip(artist: str, genre: str = "rock", source: str = "gtzan") -> Clip:
    return Clip(Path(f"{genre}/x.flac"), (GENRES.index(genre),), artist, 30.0, source)


def test_artists_are_one_group_across_collections_and_unknown_artists_are_groups_of_their_own():
    clips = [clip("Morphine"), clip("morphine ", source="more-genres"), clip(""), clip(""), clip("Bob  Marley"),
             clip("Bob Marley", "reggae")]
    groups = artist_groups(clips)
    assert groups[0] == groups[1] and groups[4] == groups[5]
    assert len({groups[2], groups[3], groups[0], groups[4]}) == 4


def test_folds_never_split_an_artist_and_balance_the_genres():
    rng = np.random.default_rng(0)
    artists = rng.integers(0, 40, 400)            # 40 artists, many clips each, as GTZAN has
    genres = artists % 5                           # an artist plays one genre
    folds = artist_folds(artists, genres, 5)
    for a in np.unique(artists):
        assert len(set(folds[artists == a])) == 1
    for g in range(5):
        assert len(set(folds[genres == g])) >= 3   # each genre is held out in several folds
    assert np.array_equal(folds, artist_folds(artists, genres, 5))   # deterministic


def test_the_shared_collections_folds_keep_every_artist_on_one_side():
    if not (SHARED / "gtzan-dev" / "MANIFEST.csv").exists() or not (SHARED / "more-genres" / "MANIFEST.csv").exists():
        pytest.skip("../shared/gtzan-dev or ../shared/more-genres is absent")
    clips = gtzan_dev(SHARED / "gtzan-dev") + more_genres(SHARED / "more-genres")
    groups = artist_groups(clips)
    folds = artist_folds(groups, np.array([f"{c.source}:{c.candidates}" for c in clips]), 5)
    by_artist: dict[str, set[int]] = {}
    for c, f in zip(clips, folds):
        if c.artist:
            by_artist.setdefault(c.artist.casefold(), set()).add(int(f))
    assert all(len(f) == 1 for f in by_artist.values())
    assert len(by_artist["morphine"]) == 1 and len(by_artist["bob marley"]) == 1
    # AllMusic's "Pop/Rock" is a set of three candidates; GTZAN clips have one genre each.
    coarse = {GENRES.index(g) for g in COARSE["pop/rock/metal"]}
    assert sum(set(c.candidates) == coarse for c in clips) >= 200
    assert all(len(c.candidates) == 1 for c in clips if c.source == "gtzan")
