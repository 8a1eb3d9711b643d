"""The collector's thresholds while sources are read (cams.sources.gcpolicy): raised for the reading,
restored after it, also when two sources read at once and finish in either order, and after an error."""

from __future__ import annotations

import gc
import threading

import pytest

from cams.sources.gcpolicy import READING_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def _known_threshold():  # type: ignore[no-untyped-def]
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_while_reading_and_restored_after_even_on_error() -> None:
    with fewer_collections():
        assert gc.get_threshold() == READING_THRESHOLD
    assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a source failed mid-read")
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("other_leaves_first", [True, False])
def test_two_readers_at_once_restore_only_when_the_last_one_ends(other_leaves_first: bool) -> None:
    """Another thread reads beside this one; whichever ends first, the thresholds stay raised for the other
    and come back when both have ended."""
    inside, may_leave, left = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def other() -> None:
        with fewer_collections():
            inside.set()
            may_leave.wait(10)
        left.set()

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with fewer_collections():
        if other_leaves_first:
            may_leave.set()
            assert left.wait(10)
        seen.append(gc.get_threshold())  # the other reader may have left: still raised for this one
    seen.append(gc.get_threshold())  # this one has left: raised while the other still reads
    may_leave.set()
    t.join(10)
    assert seen == [READING_THRESHOLD, (700, 10, 10) if other_leaves_first else READING_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)
