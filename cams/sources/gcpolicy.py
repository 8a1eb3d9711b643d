"""Fewer garbage collections while a window's lines become rows.

Why: reading a day allocates a tuple per line, and the collector's bookkeeping more. At CPython's
default threshold (700 allocations) that is ~4,000 young and ~360 middle collections for a 1M + 1M
day: 1.4-1.9 s of a `cams run` on two cores (timed with `gc.callbacks`; 0.6-0.8 s with this), all of it
holding the GIL that the rest of the run waits on. (The ~9 full collections come from imports.)
The rows are freed by reference counting when their chunk is written, never by the collector, so a
higher threshold only spaces out collections that find little; the few cycles made meanwhile go at the
next one, and the default comes back when the reading ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

READING_THRESHOLD = (50_000, 20, 20)

_lock = threading.Lock()
_readers = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's thresholds for the block. Reentrant across threads (two sources read at once
    under the threads executor): the first reader raises them, the last one restores what it found."""
    global _readers, _saved
    with _lock:
        if _readers == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*READING_THRESHOLD)
        _readers += 1
    try:
        yield
    finally:
        with _lock:
            _readers -= 1
            if _readers == 0:
                gc.set_threshold(*_saved)
