"""Memory helpers."""

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0  # threads inside paused_gc()
_resume = False  # whether the collector was on when the first of them came in


@contextmanager
def paused_gc():
    """Pause the cyclic garbage collector for a bulk step that allocates many objects but makes no
    reference cycles: otherwise every few thousand new tuples trigger a collection that walks every
    object alive (a poll worker holds a million), which cost a poll of 100,000 jobs a third of its
    time (bench/poll_ingest.py). Reference counting still frees everything at once. Threads may
    overlap: the collector resumes when the last one leaves, if it was on before the first came."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()
