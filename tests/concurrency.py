"""Run the same work in several threads released at once, each with its own DB connection."""

import threading

from django.db import connection


def run_at_once(work, n=2):
    """Call `work()` in `n` threads started together; returns their results, raises the first error."""
    barrier, results, errors = threading.Barrier(n), [], []

    def run():
        try:
            barrier.wait()
            results.append(work())
        except Exception as exc:  # re-raised in the test's thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
