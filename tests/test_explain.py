"""Why a pick was chosen, and how close it is: shares of the library, per aspect, and the key."""
import numpy as np
import pytest

from model.index.explain import aspects, closeness, key_reason, reasons, sample_rows
from model.index.key import Key

SPACES = [("chroma", slice(0, 36)), ("embedding", slice(36, 40))]


def test_a_chroma_summary_has_two_aspects_and_the_embedding_one():
    assert aspects(SPACES) == [("notes", slice(0, 12)), ("movement", slice(12, 36)), ("sound", slice(36, 40))]


def test_closeness_is_the_share_of_the_compared_library_farther_than_the_pick():
    # Rows at distances 0..9 from the query along one axis; the picks are rows 2 and 5.
    library = np.arange(10, dtype=float)[:, None] * np.eye(40)[0]
    overall, parts = closeness(np.zeros(40), library, [2, 5], np.arange(10), aspects(SPACES))
    # Compared: the 8 rows that are not picks. Row 2: 6 of them (3, 4, 6, 7, 8, 9) are farther.
    assert overall == [pytest.approx(100 * 6 / 8), pytest.approx(100 * 4 / 8)]
    assert parts[0]["notes"] == overall[0]
    assert parts[0]["movement"] == 0.0 and parts[0]["sound"] == 0.0   # all at distance 0 there: none farther


def test_rows_not_compared_do_not_count():
    library = np.arange(10, dtype=float)[:, None] * np.eye(40)[0]
    eligible = np.ones(10, bool)
    eligible[[6, 7, 8, 9]] = False   # e.g. too short to be picks, or copies of the upload
    overall, _ = closeness(np.zeros(40), library, [2], sample_rows(10, eligible), aspects(SPACES))
    assert overall == [pytest.approx(100 * 3 / 5)]


def test_reasons_say_the_genre_the_close_aspects_the_main_one_first_and_the_key():
    a_minor, c_major, d_major = Key(9, "minor", 0.9), Key(0, "major", 0.9), Key(2, "major", 0.9)
    why = reasons("rock", ["rock", "pop"], {"notes": 80.0, "movement": 95.0, "sound": 10.0}, a_minor, a_minor)
    assert [r.text for r in why] == ["same genre (rock)", "harmony that moves at a similar pace",
                                     "similar notes and chords", "same key (A minor)"]
    assert [r.main for r in why] == [False, True, False, False]
    assert why[1].as_dict() == {"kind": "movement", "text": why[1].text, "main": True, "percentile": 95.0}
    other = reasons("pop", ["rock", "pop"], {"notes": 10.0}, d_major, a_minor)
    assert [r.text for r in other] == ["pop, the next most likely genre", "key D major, yours A minor"]
    assert not any(r.main for r in other)   # close in no aspect: nothing claimed
    assert key_reason(c_major, a_minor).text == "relative key: C major, yours A minor (the same notes)"
    assert key_reason(None, a_minor) is None and key_reason(a_minor, None) is None
