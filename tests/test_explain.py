"""Why a pick was chosen: its genre, and each feature space in which it is among the nearest."""
import numpy as np

from model.index.explain import reasons

SPACES = [("chroma", slice(0, 2)), ("embedding", slice(2, 4))]


def test_reasons_name_the_genre_and_the_spaces_where_a_pick_is_close():
    rng = np.random.default_rng(0)
    library = rng.normal(size=(40, 4)) * 3
    query = np.zeros(4)
    library[0] = [0.1, 0.0, 9.0, 9.0]    # close in harmony only
    library[1] = [9.0, 9.0, 0.0, 0.1]    # close in timbre only
    library[2] = [0.0, 0.1, 0.1, 0.0]    # close in both
    library[3] = [0.0, 0.0, 0.0, 0.0]    # the upload's own copy: not compared against
    why = reasons(query, library, SPACES, [0, 1, 2], ["rock", "pop", "jazz"], ["rock", "pop"], exclude=[3])
    assert why[0] == ["same genre (rock)", "close harmony/key profile"]
    assert why[1] == ["pop, the next most likely genre", "close timbre"]
    assert why[2] == ["close harmony/key profile", "close timbre"]


def test_a_far_pick_gets_no_closeness_reason():
    library = np.vstack([np.zeros((9, 2)), [[5.0, 5.0]]])
    why = reasons(np.zeros(2), library, SPACES[:1], [9], ["rock"], ["rock"])
    assert why == [["same genre (rock)"]]
