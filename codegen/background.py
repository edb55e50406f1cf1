"""Numba compiles in a background process while the first calls run NumPy.

A Numba kernel that is not in the disk cache yet costs seconds to compile
(about a millisecond a statement), and the first call used to wait for it.
Instead, the first call starts a child process that compiles the kernel
file into Numba's disk cache (``dispatcher.compile(signature)``), and the
calls made meanwhile run the same program printed for NumPy (built in
milliseconds).  Once the child is done, the next call loads the machine
code from the cache (a tenth of a second) and every later call runs it: the
tiered start of a JIT, with the second tier compiled on another core, so
neither the GIL nor Numba's compiler lock slows the caller down.

The two tiers compute the same program; they differ only by rounding
(NumPy evaluates each operation separately; Numba may contract ``a*b + c``
into one fused multiply-add).  A call on more samples than the NumPy tier
is worth using (`WAIT_SAMPLES`) waits for the compile instead.

A child still running when the process exits is left to finish, so the
next process finds the kernel in the cache; a compile that was never
started is dropped.  Switch it with `set_background_compile` or
``SYMJAC_BACKGROUND_COMPILE=0``; `wait_compiled` blocks until every
started compile is done (benchmarks, and scripts that want the fast tier
before they time anything).

>>> from codegen import background
>>> background.set_background_compile(False)   # first calls wait for Numba
>>> background.set_background_compile(None)    # back to SYMJAC_BACKGROUND_COMPILE
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

__all__ = ["set_background_compile", "background_enabled", "wait_compiled", "Job", "submit", "WAIT_SAMPLES",
           "free_cores", "cpus"]

logger = logging.getLogger("symjac")
WAIT_SAMPLES = 1 << 17  # a call on more samples than this waits for Numba instead of running NumPy
_SETTING = None
_LOCK = threading.Lock()
_RUNNING: list = []
_PENDING: deque = deque()

# The child: execute the kernel file exactly as the parent does (same module
# name, same file name: Numba's cache is keyed by them) after checking that
# it still holds the text the parent verified, then compile the signature
# the parent's call needs; Numba's cache=True writes the machine code.
_CHILD = """\
import hashlib, pickle, sys, types
path, name, digest = sys.argv[1], sys.argv[2], sys.argv[3]
signature = pickle.loads(sys.stdin.buffer.read())
with open(path, "rb") as fh:
    data = fh.read()
if hashlib.sha256(data).hexdigest() != digest:
    sys.exit("symjac background compile: " + path + " changed since it was written; not compiled")
module = types.ModuleType(name)
module.__file__ = path
sys.modules[name] = module
exec(compile(data.decode("utf-8"), path, "exec", dont_inherit=True), module.__dict__)
module.kernel.compile(signature)
"""


def set_background_compile(enabled):
    """Compile Numba kernels in a background process while the first calls run
    NumPy (True), make first calls wait for the compile (False), or do as
    ``SYMJAC_BACKGROUND_COMPILE`` says (None; on unless it is ``0``)."""
    global _SETTING
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_background_compile: enabled must be True, False or None, got {enabled!r}")
    _SETTING = enabled


def background_enabled():
    """Whether first calls of Numba kernels compile in the background now.
    Never in a frozen application (PyInstaller and the like: its executable
    is the application, not a Python to run the compile in) or without an
    executable."""
    if getattr(sys, "frozen", False) or not sys.executable:
        return False
    if _SETTING is not None:
        return _SETTING
    return os.environ.get("SYMJAC_BACKGROUND_COMPILE", "1").strip().lower() not in ("0", "false", "no", "off")


class Job:
    """One kernel compiled by a child process (`submit` starts or queues it)."""

    def __init__(self, path, module_name, signature):
        self.path, self.module_name = str(path), module_name
        self.signature = pickle.dumps(signature)
        with open(self.path, "rb") as fh:
            self.digest = hashlib.sha256(fh.read()).hexdigest()
        self.proc = None
        self.returncode = None
        self.started = self.finished = None
        self._err = None
        self._failure = ""

    def _start(self):
        self.started = time.perf_counter()
        try:
            self._err = tempfile.TemporaryFile()
            # -P: no directory on sys.path ahead of the installed packages (python -c would put the cwd there)
            self.proc = subprocess.Popen([sys.executable, "-P", "-c", _CHILD, self.path, self.module_name, self.digest],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err,
                                         cwd=os.path.dirname(self.path))
        except OSError as e:  # no process could be started: the caller compiles in-process
            if self._err is not None:
                self._err.close()
                self._err = None
            self.proc = None
            self.returncode, self.finished = -1, time.perf_counter()
            self._failure = f"could not start the compile process: {type(e).__name__}: {e}"
            return
        try:
            self.proc.stdin.write(self.signature)
            self.proc.stdin.close()
        except OSError:  # the child exited at once (BrokenPipeError): its exit code and stderr say why
            pass

    def _poll(self):
        if self.returncode is None and self.proc is not None and self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self.finished = time.perf_counter()
            self._err.seek(0)
            lines = self._err.read().decode("utf-8", "replace").strip().splitlines()
            self._failure = "\n".join(lines[-12:])
            self._err.close()
        return self.returncode is not None

    def done(self):
        """True once the child has exited (successfully or not)."""
        _pump()
        return self.returncode is not None

    def wait(self, timeout=None):
        """Block until the child exits (starting it now if it was queued)."""
        with _LOCK:
            if self.proc is None and self.returncode is None:
                _PENDING.remove(self)
                self._start()
                _RUNNING.append(self)
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        _pump()
        return True

    @property
    def seconds(self):
        return None if self.finished is None else self.finished - self.started

    def error(self):
        """The child's stderr (its last lines) once it exited, for a compile that failed."""
        return self._failure


def cpus():
    """The CPUs this process may use (respects taskset and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _max_running():
    return max(1, cpus() - 1)  # one core stays with the caller, which runs the NumPy tier meanwhile


def free_cores():
    """Cores not taken by running background compiles (at least one: the caller's)."""
    with _LOCK:
        running = len(_RUNNING)
    return max(1, cpus() - running)


def _pump():
    """Collect finished children and start queued jobs while cores are free."""
    with _LOCK:
        for job in list(_RUNNING):
            if job.proc is None or job._poll():
                _RUNNING.remove(job)
                logger.info("Numba compiled %s in the background in %.1f s%s", os.path.basename(job.path),
                            job.seconds, "" if job.returncode == 0 else f" (failed, exit code {job.returncode})")
        while _PENDING and len(_RUNNING) < _max_running():
            job = _PENDING.popleft()
            job._start()
            _RUNNING.append(job)


def submit(path, module_name, signature):
    """A `Job` compiling ``module_name``'s ``kernel`` (the file at ``path``) for
    ``signature`` (Numba types), started now if a core is free, else queued."""
    job = Job(path, module_name, signature)
    with _LOCK:
        _PENDING.append(job)
    _pump()
    return job


def wait_compiled(timeout=None):
    """Block until every background compile started or queued is done; True if
    all are (False when ``timeout`` seconds passed first).

    >>> from codegen.background import wait_compiled
    >>> wait_compiled()
    True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        _pump()
        with _LOCK:
            jobs = list(_RUNNING) + list(_PENDING)
        if not jobs:
            return True
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if not jobs[0].wait(left):
            return False
