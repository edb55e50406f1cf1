"""What a long first call is doing: its stages and their times, on stderr.

A first call traces and differentiates the model, lowers it to a program,
prints the kernel and compiles it (Numba compiles at the kernel's first
run).  When that takes longer than `THRESHOLD` seconds, each stage is
reported through the ``logging`` module (logger ``"symjac"``, level INFO):
the stages done so far when the threshold passes, the one running, and
every later one when it ends.  Short first calls print nothing.

Switch it with `set_progress` or the environment variable
``SYMJAC_PROGRESS`` (``0`` turns it off; `set_progress` wins).  When no
logging is configured, symjac gives its logger a handler that writes to
stderr; with logging configured (a handler on the root logger), the
records go there as any other INFO record.

>>> import symjac
>>> symjac.set_progress(False)      # quiet, whatever SYMJAC_PROGRESS says
>>> symjac.set_progress(None)       # back to the environment's choice
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
import time

__all__ = ["set_progress", "progress_enabled", "first_call", "stage", "THRESHOLD", "logger"]

logger = logging.getLogger("symjac")
THRESHOLD = 2.0  # seconds of a first call before its stages are reported
_SETTING = None  # None: SYMJAC_PROGRESS decides
_CURRENT = contextvars.ContextVar("symjac_first_call", default=None)
_HANDLER_LOCK = threading.Lock()


def set_progress(enabled):
    """Report the stages of first calls that take longer than `THRESHOLD`
    seconds (True), never (False), or as ``SYMJAC_PROGRESS`` says (None)."""
    global _SETTING
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_progress: enabled must be True, False or None, got {enabled!r}")
    _SETTING = enabled


def progress_enabled():
    """Whether long first calls report their stages now."""
    if _SETTING is not None:
        return _SETTING
    return os.environ.get("SYMJAC_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def _ensure_handler():
    with _HANDLER_LOCK:
        if not logger.hasHandlers():  # nothing configured: write to stderr ourselves
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("symjac: %(message)s"))
            logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


class _FirstCall:
    def __init__(self, what):
        self.what = what
        self.t0 = time.perf_counter()
        self.done = []  # (stage, seconds, detail)
        self.current = None
        self.loud = False
        self.lock = threading.Lock()

    def wake(self):
        with self.lock:
            self.loud = True
            _ensure_handler()
            logger.info("first call of %s is taking a while; stages so far:", self.what)
            for name, dt, detail in self.done:
                logger.info("  %-28s %7.2f s%s", name, dt, f"  ({detail})" if detail else "")
            if self.current is not None:
                name, start, detail = self.current
                logger.info("  %-28s running%s", name, f"  ({detail})" if detail else "")

    @contextlib.contextmanager
    def stage(self, name, detail=""):
        start = time.perf_counter()
        with self.lock:
            if self.current is not None:  # a stage inside a stage is part of it
                nested = True
            else:
                nested = False
                self.current = (name, start, detail)
        if nested:
            yield
            return
        try:
            yield
        finally:
            dt = time.perf_counter() - start
            with self.lock:
                self.current = None
                self.done.append((name, dt, detail))
                if self.loud:
                    logger.info("  %-28s %7.2f s%s", name, dt, f"  ({detail})" if detail else "")


@contextlib.contextmanager
def first_call(what):
    """Time the stages of one first call of ``what`` (nested ones join the outer)."""
    if _CURRENT.get() is not None or not progress_enabled():
        yield
        return
    fc = _FirstCall(what)
    token = _CURRENT.set(fc)
    timer = threading.Timer(THRESHOLD, fc.wake)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _CURRENT.reset(token)
        with fc.lock:
            if fc.loud:
                logger.info("first call of %s done in %.2f s", fc.what, time.perf_counter() - fc.t0)


def stage(name, detail=""):
    """A stage of the running first call (nothing outside one)."""
    fc = _CURRENT.get()
    return fc.stage(name, detail) if fc is not None else contextlib.nullcontext()
