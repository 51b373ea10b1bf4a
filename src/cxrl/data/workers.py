"""Worker processes that never re-run the caller's script.

A spawned worker imports ``__main__`` again, so a plain script without an ``if __name__ == "__main__":`` guard
would start over in every worker (through a pool, forever). On Linux workers are forked instead (no re-import);
elsewhere they are spawned only when ``__main__`` is not a user script, else the work runs in this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
import sys
from multiprocessing.context import BaseContext
from pathlib import Path

import cv2

log = logging.getLogger(__name__)


def worker_context() -> BaseContext | None:
    """The start method for worker processes, or None when only in-process work is safe."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if script is None or Path(script).stem == "cxrl" or (spec is not None and spec.name.startswith("cxrl.")):
        return multiprocessing.get_context("spawn")
    log.info("working in this process: spawned workers would re-run %s", script)
    return None


def cv2_pool(workers: int) -> multiprocessing.pool.Pool | None:
    """A pool of ``workers`` processes with single-threaded OpenCV, or None (see :func:`worker_context`).

    A forked worker inherits the thread count (resetting an inherited OpenCV pool in the child deadlocks), so
    it is set to 1 here while the workers fork; a spawned worker sets it itself.
    """
    context = worker_context()
    if context is None:
        return None
    if context.get_start_method() != "fork":
        return context.Pool(workers, initializer=cv2.setNumThreads, initargs=(1,))
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return context.Pool(workers)
    finally:
        cv2.setNumThreads(threads)
