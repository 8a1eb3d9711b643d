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


def test_two_readers_at_once_restore_only_when_the_last_one_ends() -> None:
    first_in, first_may_leave = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with fewer_collections():
            first_in.set()
            first_may_leave.wait(10)
            seen.append(gc.get_threshold())  # the second reader has left: still raised for this one

    t = threading.Thread(target=first)
    t.start()
    assert first_in.wait(10)
    with fewer_collections():
        assert gc.get_threshold() == READING_THRESHOLD
    first_may_leave.set()
    t.join(10)
    assert seen == [READING_THRESHOLD]
    assert gc.get_threshold() == (700, 10, 10)
