"""Memory helpers."""

import gc
from contextlib import contextmanager


@contextmanager
def paused_gc():
    """Pause the cyclic garbage collector for a bulk step that allocates many objects but makes no
    reference cycles: otherwise every few thousand new tuples trigger a collection that walks every
    object alive (a poll worker holds a million), which cost a poll of 100,000 jobs a third of its
    time (bench/poll_ingest.py). Reference counting still frees everything at once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
