"""Compile printed programs into callables, cache them on disk, export them.

The source of every kernel is written to a real file in the cache directory
(``$SYMJAC_CACHE_DIR``, else ``~/.cache/symjac``; user-only) named by a hash
of its text, and that verified text is executed (no bytecode file is ever
read): tracebacks show the generated line, and Numba's own ``cache=True``
keeps the machine code beside it, so a second process neither prints nor
compiles again.  A damaged entry is rebuilt; an unusable directory falls back
to a private temporary one (Numba) or to memory (NumPy) with one warning.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import linecache
import os
import shutil
import stat
import sys
import tempfile
import threading
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import codegen.background as background
import codegen.blas as blas
import codegen.cache as kernel_cache
from codegen.printers import PRINTERS
from codegen.tiled import TiledNumbaPrinter
from codegen.program import Program

__all__ = ["CompiledKernel", "compile_program", "print_program", "cache_dir", "check_cache_dir",
           "CacheDirectoryError", "numba_available", "BACKENDS", "ParallelRunner", "Workspaces", "num_threads",
           "kernels_loaded"]

BACKENDS = tuple(PRINTERS) + ("cuda",)
_LOADED: dict = {}
_MODULES: dict = {}


def kernels_loaded():
    """How many distinct kernel modules this process has loaded (each a Numba
    compile at its first run, unless Numba's disk cache had it): tests count
    compiles with it."""
    return len(_MODULES)


def numba_available():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class CompiledKernel:
    """A printed and loaded kernel: ``func(start, stop, *inputs, *outputs)``;
    ``path`` is its file (None when it runs from memory: no usable cache);
    ``tile`` the samples per tile of a tiled kernel (1 otherwise)."""

    func: object
    source: str
    path: Path
    backend: str
    dtype: str
    tile: int = 1
    ran: bool = False  # set by the caller after the first run (Numba compiles then)


def print_program(program: Program, backend: str, dtype: str, tile=None) -> str:
    """The kernel module's source; ``tile`` fixes the samples per tile of a
    tiled (tensor) Numba kernel and is ignored by the other printers."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "cuda":
        from codegen.cuda import CudaPrinter, CudaTiledPrinter

        return (CudaTiledPrinter if program.has_tensors() else CudaPrinter)(dtype).doprint(program)
    if backend.startswith("numba") and program.has_tensors():
        return TiledNumbaPrinter(dtype, tile).doprint(program)
    return PRINTERS[backend](dtype).doprint(program)


def _versions():
    parts = [sys.version.split()[0]]
    for mod in ("numpy", "numba"):
        m = sys.modules.get(mod)
        parts.append(getattr(m, "__version__", "-"))
    return "/".join(parts)


def num_threads():
    """Worker threads for ``numba-parallel``: $SYMJAC_NUM_THREADS, else the CPUs this process may use."""
    env = os.environ.get("SYMJAC_NUM_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SYMJAC_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return background.cpus()


class ParallelRunner:
    """Run a ``nogil`` kernel over contiguous slices of ``[start, stop)`` on threads.

    Samples are independent and each writes only its own output rows, so the
    slices need no synchronisation; the calling thread takes the first slice
    and a fresh thread each of the others (tens of microseconds a thread,
    against milliseconds of work at ``min_chunk`` samples).  A ``prange``
    kernel runs no faster and costs twice the compile time (figures in
    benchmarks/RESULTS.md).
    """

    min_chunk = 2048  # below this many samples per thread, threading costs more than it saves

    def __init__(self, func, reduce_args=(), min_chunk=None, guard=None):
        self.func = func
        self.reduce_args = tuple(reduce_args)  # positions (in *arrays) of batch-sum accumulators
        if min_chunk is not None:
            self.min_chunk = min_chunk
        self.guard = guard  # the kernel's _CacheGuard: while its first calls run NumPy, one thread runs them

    def __call__(self, start, stop, *arrays):
        n = stop - start
        if self.guard is not None and not self.guard.checked:
            if self.guard.numpy_tier_likely(n):
                # first calls on the NumPy tier: on this thread, the other cores left to the background compile
                return self.func(start, stop, *arrays)
            self.guard.settle()  # Numba for this call (its slices would each be small enough for NumPy)
        threads = min(num_threads(), max(1, n // self.min_chunk))
        if threads <= 1:
            return self.func(start, stop, *arrays)
        bounds = [start + (n * i) // threads for i in range(threads + 1)]
        errors = []
        # each extra thread sums into accumulators of its own, added at the end
        private = [list(arrays) for _ in range(threads)]
        for t in range(1, threads):
            for k in self.reduce_args:
                private[t][k] = np.zeros_like(arrays[k])

        def work(t, lo, hi):
            try:
                self.func(lo, hi, *private[t])
            except BaseException as e:  # re-raised in the caller
                errors.append(e)

        workers = [threading.Thread(target=work, args=(i, bounds[i], bounds[i + 1]), daemon=True)
                   for i in range(1, threads)]
        for w in workers:
            w.start()
        try:
            self.func(bounds[0], bounds[1], *arrays)
        finally:
            for w in workers:
                w.join()
        if errors:
            raise errors[0]
        for t in range(1, threads):
            for k in self.reduce_args:
                np.add(arrays[k], private[t][k], out=arrays[k])
        return None


class Workspaces:
    """Call a tiled kernel with tile buffers that outlive the call.

    The kernel takes two trailing 1-D workspaces (floats of its dtype and
    booleans; sizes in its module's ``WORKSPACE``) and carves its tile
    buffers out of them.  Each call takes a free pair from a pool and gives
    it back after, so calls on several threads (``ParallelRunner``'s, or
    the user's) never share one; the pool holds at most one pair per thread
    that ever ran the kernel at once.
    """

    def __init__(self, func, sizes, dtype):
        self.func, self.sizes, self.dtype = func, tuple(int(n) for n in sizes), np.dtype(dtype)
        self._free = []

    def _new(self):
        nf, nb = self.sizes
        return np.empty(nf, self.dtype), np.empty(nb, np.bool_)

    def __call__(self, start, stop, *arrays):
        try:
            ws = self._free.pop()  # atomic under the GIL
        except IndexError:
            ws = self._new()
        try:
            return self.func(start, stop, *arrays, *ws)
        finally:
            self._free.append(ws)


def compile_program(program: Program, backend: str, dtype: str = "float64", tile=None) -> CompiledKernel:
    """Print ``program`` for ``backend`` (``tile``: see `print_program`), write
    it to the cache and load it (Numba compiles at the first call)."""
    if backend.startswith("numba") or backend == "cuda":
        if not numba_available():
            raise ImportError(f"backend {backend!r} needs numba; install it or use backend='numpy'")
        import numba  # noqa: F401  (so its version enters the key)
    if backend == "cuda":
        from codegen.cuda import cuda_ready

        cuda_ready()  # no GPU: a clear error before any work
    source = print_program(program, backend, dtype, tile)
    digest = hashlib.sha256(source.encode())
    digest.update(_versions().encode())  # the hash of source + versions, without a copy of the source
    key = digest.hexdigest()[:20]
    with _LOCK:
        compiled = _LOADED.get((key, backend))
        if compiled is not None:
            return compiled
        module = _MODULES.get(key)
        if module is None:
            module = _MODULES[key] = _load(source, key, backend)
        if backend == "cuda":
            from codegen.cuda import Launcher

            compiled = _LOADED[key, backend] = CompiledKernel(
                Launcher(module.kernel, module._sum_parts, module.REDUCE, len(program.inputs)), source,
                Path(module.__file__) if not module.__file__.startswith("<") else None, backend, dtype)
            return compiled
        if backend.startswith("numba"):
            _check_numba_cache(module)
        guard = None
        if backend.startswith("numba"):
            kernel = guard = _CacheGuard(module, source, key, backend, lambda: _numpy_tier(program, dtype),
                                         2 if getattr(module, "WORKSPACE", None) is not None else 0)
        else:
            kernel = module.kernel
        if getattr(module, "WORKSPACE", None) is not None:
            kernel = Workspaces(kernel, module.WORKSPACE, dtype)
        reduce_args = [len(program.inputs) + k for k, p in enumerate(program.outputs) if p.reduce]
        func = (ParallelRunner(kernel, reduce_args, getattr(module, "MIN_CHUNK", None), guard)
                if backend == "numba-parallel" else kernel)
        path = Path(module.__file__) if not module.__file__.startswith("<") else None
        compiled = CompiledKernel(func, source, path, backend, dtype, getattr(module, "TILE", 1))
        _LOADED[key, backend] = compiled
        return compiled


# -- the kernel cache ----------------------------------------------------------
# Kernel files are executed from their verified text (never from a bytecode file
# found beside them), and Numba's ``cache=True`` keeps machine code and a pickled
# index in the directory's ``__pycache__``: whoever can write the directory can
# run code in every process that uses it.  So the directory is made user-only,
# and one that other users can write (or that another user owns) is refused.

class CacheDirectoryError(PermissionError):
    """The kernel cache directory is writable by other users, or owned by one."""


_LOCK = threading.RLock()
_FALLBACK: dict = {}  # configured root -> private directory used instead (None: in memory)


def _configured_root():
    return Path(os.environ.get("SYMJAC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "symjac"))


def _private_group(gid):
    """True for the user's own group with no other member (a user-private group,
    as Debian and Ubuntu give every user; their umask 002 makes directories
    group-writable)."""
    try:
        import grp
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
        return gid == os.getegid() and set(grp.getgrgid(gid).gr_mem) <= {user}
    except (ImportError, KeyError, OSError):
        return False


def _untrusted(st, leaf):
    """Why other users could write into a directory with status ``st``, or None.
    A sticky parent (/tmp) is fine: nobody else can rename what is ours in it."""
    if hasattr(os, "geteuid") and st.st_uid not in (os.geteuid(), 0):
        return f"owned by another user (uid {st.st_uid})"
    sticky = not leaf and st.st_mode & stat.S_ISVTX
    if st.st_mode & stat.S_IWOTH and not sticky:
        return "writable by other users"
    if st.st_mode & stat.S_IWGRP and not sticky and not _private_group(st.st_gid):
        return "writable by its group"
    return None


def check_cache_dir(path):
    """Refuse ``path`` when other users could plant code in it (as ssh does for
    keys): the directory, and every directory above it, must be writable by
    no one but its owner (the user or root); a parent may be sticky (/tmp)."""
    real = Path(os.path.realpath(path))
    st = os.stat(real)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"symjac kernel cache {str(path)!r} is not a directory")
    for d in (real, *real.parents):
        st = os.stat(d)
        why = _untrusted(st, d == real)
        if why is not None:
            where = "it" if d == real else f"its parent {str(d)!r}"
            raise CacheDirectoryError(
                f"symjac refuses the kernel cache directory {str(path)!r}: {where} is {why} (mode "
                f"{stat.filemode(st.st_mode)}), and symjac runs the kernels and loads Numba's pickled "
                "cache found there. Make it yours and user-only (chmod 700; delete its contents if you "
                "did not write them), or point SYMJAC_CACHE_DIR (and NUMBA_CACHE_DIR, if set) at a "
                "private directory.")
    return path


def cache_dir():
    """The kernel cache directory, created user-only (``$SYMJAC_CACHE_DIR``, else
    ``~/.cache/symjac``); raises `CacheDirectoryError` for one others can write
    and ``OSError`` for one that cannot be made."""
    path = _configured_root()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return check_cache_dir(path)


def _fallback(root, backend, error):
    """Where kernels go when the cache directory is unusable: a private temporary
    directory (Numba needs a file), or memory (NumPy); one warning per directory."""
    if root not in _FALLBACK:
        _FALLBACK[root] = {}
        warnings.warn(f"symjac cannot use the kernel cache directory {str(root)!r} ({error}); kernels are "
                      "kept in a private temporary directory (Numba) or in memory (NumPy) for this process "
                      "and compiled again in the next one. Set SYMJAC_CACHE_DIR to a writable directory "
                      "to keep them.", RuntimeWarning, stacklevel=_caller_level())
    if not backend.startswith("numba"):
        return None
    tmp = _FALLBACK[root].get("dir")
    if tmp is None:
        tmp = _FALLBACK[root]["dir"] = Path(tempfile.mkdtemp(prefix="symjac-"))  # mode 0700
        atexit.register(shutil.rmtree, tmp, True)
    return tmp


def _caller_level():
    """``stacklevel`` for a warning that points at the first frame outside symjac."""
    ours = (os.path.dirname(os.path.abspath(__file__)),
            os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "symjac"))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(ours):
        frame, level = frame.f_back, level + 1
    return level


def _write(directory, name, source):
    """The path of ``name`` in ``directory`` holding exactly ``source`` (a damaged
    or different file is replaced atomically).  A file already there counts as
    used now; a new one may evict old entries (`codegen.cache`)."""
    path = directory / name
    data = source.encode("utf-8")
    try:
        same = path.read_bytes() == data
    except OSError:
        same = False
    if same:
        kernel_cache.touch(path)
        return path
    write_atomically(path, data)
    kernel_cache.evict(directory)
    return path


def write_atomically(path, data):
    """``data`` (bytes) into ``path`` through a temporary file beside it, so that no
    reader ever sees a partial file; the temporary file is removed on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load(source, key, backend):
    """A module made by executing ``source``: from a file in the cache (tracebacks
    show its lines; Numba caches machine code beside it), else from memory."""
    root = _configured_root()
    path = None
    if root not in _FALLBACK:
        try:
            path = _write(cache_dir(), f"k_{key}.py", source)
        except CacheDirectoryError:
            raise
        except OSError as e:
            path = None
            directory = _fallback(root, backend, f"{type(e).__name__}: {e}")
            if directory is not None:
                path = _write(directory, f"k_{key}.py", source)
    else:
        directory = _fallback(root, backend, None)
        if directory is not None:
            path = _write(directory, f"k_{key}.py", source)
    return _execute(source, key, path, register=backend.startswith("numba"))


def _execute(source, key, path, register=True):
    """The module of ``source``; in ``sys.modules`` only when ``register`` (Numba's
    cache finds a kernel's globals by module name; `release` drops it after)."""
    name = f"symjac_kernel_{key}"
    filename = str(path) if path is not None else f"<symjac kernel k_{key}>"
    if path is None:  # tracebacks still show the generated line
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = filename
    if register:
        sys.modules[name] = module
    for code in _compiled_pieces(source, filename):
        exec(code, module.__dict__)
    return module


PIECE_LINES = 20_000  # a longer module is compiled a top-level definition at a time


def _compiled_pieces(source, filename):
    """``source`` compiled whole, or, when long, in pieces that each begin with a
    top-level ``def`` or decorator after a blank line (each with its own line
    numbers): CPython holds a module's whole syntax tree while it compiles it,
    about 2.7 kB a statement (270 MB for a 10^5-statement kernel), against
    one piece's at a time.  The boundaries are found in the text itself (a
    list of the module's lines would be 250 MB at 3 x 10^6 statements)."""
    if source.count("\n", 0, len(source)) <= PIECE_LINES:
        return [compile(source, filename, "exec", dont_inherit=True)]
    pieces, lo, line, since, at = [], 0, 0, 0, 0  # since: lines from lo to at
    nxt = {p: source.find(p) for p in ("\n\ndef ", "\n\n@")}  # next occurrence of each (-1: none left)
    while True:  # cut before a "\n\ndef " or "\n\n@" at least PIECE_LINES / 4 lines after the last cut
        found = [i for i in nxt.values() if i >= 0]
        if not found:
            break
        cut = min(found) + 2  # the piece ends with the blank line; the next begins at the definition
        for p, i in nxt.items():
            if 0 <= i < cut:
                nxt[p] = source.find(p, cut)
        since += source.count("\n", at, cut)
        at = cut
        if since >= PIECE_LINES // 4:
            pieces.append((lo, cut, line))
            line, lo, since = line + since, cut, 0
    pieces.append((lo, len(source), line))
    # each piece compiled alone, then moved to its lines (a prefix of newlines would cost quadratic time;
    # line tables count from co_firstlineno)
    return [_shift_lines(compile(source[a:b], filename, "exec", dont_inherit=True), n) for a, b, n in pieces]


def _shift_lines(code, by):
    """``code`` (and the code objects inside it) ``by`` lines further down its file."""
    if not by:
        return code
    consts = tuple(_shift_lines(c, by) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + by, co_consts=consts)


_HEAP_WARM = []


def _warm_heap():
    """Once per process: allocate and free a 16 MB block.  glibc's malloc then
    serves blocks under 16 MB from its heap and keeps 32 MB of freed memory,
    instead of mapping every block over 128 kB afresh and returning it on
    free, so the NumPy tier's temporaries stop page-faulting: pinn's kernel at
    10^5 points in slices of 745, 1.0 s -> 0.2 s (`benchmarks/RESULTS.md`).
    Elsewhere it is one allocation."""
    if not _HEAP_WARM:
        _HEAP_WARM.append(True)
        block = np.empty(1 << 21)
        del block


def _numpy_tier(program, dtype):
    """The NumPy kernel of ``program`` and the samples per slice it runs on: its
    arrays (one per statement, over a slice's samples) stay near 16 MB, and
    between slices the caller can hand the rest to Numba once it is ready."""
    _warm_heap()
    func = compile_program(program, "numpy", dtype).func
    entries = sum(max(1, int(np.prod(s.shape))) for s in program.body if s.batched) or 1
    return func, min(1 << 14, max(64, (1 << 24) // (entries * np.dtype(dtype).itemsize)))


class _CacheGuard:
    """A Numba kernel whose first call may read machine code from the cache,
    and whose first calls run NumPy while a child process compiles it.

    If that call fails inside Numba's cache loader (a truncated or damaged
    index or data file), the kernel's cache files are removed, the module is
    executed again and the call retried: a damaged entry is rebuilt, never a
    crash on every later run.

    When Numba's cache does not hold the kernel yet and background compiles
    are on (`codegen.background`), the first call starts a child process
    that compiles it into the cache and runs ``numpy_tier()`` (the same
    program printed for NumPy) instead, as do the calls made before the
    child is done; the next call after that loads the machine code.
    """

    def __init__(self, module, source, key, backend, numpy_tier=None, extra_args=0):
        self.func = module.kernel
        self.module, self.source, self.key, self.backend = module, source, key, backend
        self.checked = False
        self.lock = threading.Lock()  # other threads' first calls wait for this one
        self.numpy_tier = numpy_tier  # () -> the NumPy kernel; None once Numba runs
        self.extra_args = extra_args  # trailing arguments the NumPy kernel does not take (workspaces)
        self.job = None  # the background compile (codegen.background.Job)
        self._tier = None
        self._cached = None  # whether Numba's cache held the kernel when first asked

    def __call__(self, *args):
        if self.checked:
            return self.func(*args)
        if self.numpy_tier is not None:
            tier = self._first_tier(args)
            if tier is not None:
                func, chunk = tier
                start, stop, arrays = args[0], args[1], args[2:]
                plain = arrays[:len(arrays) - self.extra_args]
                rest = None
                # BLAS threads only on the cores the compiles leave free (`codegen.blas`)
                with blas.limited(background.free_cores()):
                    for lo in range(start, stop, chunk):
                        if lo > start and self.job.done():  # Numba is ready: it takes the rest of the slice
                            rest = lo
                            break
                        func(lo, min(stop, lo + chunk), *plain)
                return None if rest is None else self(rest, stop, *arrays)
        with self.lock:
            if not self.checked:
                try:
                    result = self.func(*args)
                except Exception as e:
                    if not _from_numba_cache(e) or not self._purge():
                        raise
                    warnings.warn(f"symjac: the cached machine code of kernel k_{self.key} was damaged "
                                  f"({type(e).__name__}); it was removed and compiled again", RuntimeWarning,
                                  stacklevel=2)
                    self.module = _execute(self.source, self.key, Path(self.module.__file__))
                    self.func = self.module.kernel
                    result = self.func(*args)
                self.checked = True
                if sys.modules.get(self.module.__name__) is self.module:
                    del sys.modules[self.module.__name__]  # loaded or compiled: Numba's cache is done with it
                return result
        return self.func(*args)

    def _first_tier(self, args):
        """The NumPy kernel while the background compile runs, else None (then
        this call runs Numba: loaded from the cache, or compiled now)."""
        with self.lock:
            if self.checked or self.numpy_tier is None:
                return None
            samples = args[1] - args[0]
            job = self.job
            if job is None:
                if not self._may_start(samples):
                    self.numpy_tier = None
                    return None
                import numba

                signature = tuple(numba.typeof(a) for a in args)
                try:
                    job = background.submit(self.module.__file__, self.module.__name__, signature)
                except OSError:  # the kernel file cannot be read back: compile in-process
                    self.numpy_tier = None
                    return None
                self.job = job
                try:
                    self._tier = self.numpy_tier()
                except Exception as e:  # noqa: BLE001  (a NumPy printer gap must not cost the Numba result)
                    warnings.warn(f"symjac: kernel k_{self.key} has no NumPy tier ({type(e).__name__}: {e}); "
                                  "its first call waits for Numba", RuntimeWarning, stacklevel=_caller_level())
                    self.numpy_tier = None
                    job.wait()
                    return None
            if not job.done() and samples <= background.WAIT_SAMPLES:
                return self._tier
            self._to_numba()
            return None

    def _to_numba(self):
        """From now on Numba (called holding the lock): after the background
        compile, from the cache the child wrote; without one, compiled here."""
        job = self.job
        if job is not None:
            job.wait()
            if job.returncode != 0:
                warnings.warn(f"symjac: the background Numba compile of kernel k_{self.key} failed (exit code "
                              f"{job.returncode}); compiling it in this process.\n{job.error()}", RuntimeWarning,
                              stacklevel=_caller_level())
        self.numpy_tier = self._tier = None

    def settle(self):
        """No NumPy tier from now on: wait for a background compile already
        running (its machine code then loads from the cache), else compile here."""
        with self.lock:
            if not self.checked and self.numpy_tier is not None:
                self._to_numba()

    def numpy_tier_likely(self, samples):
        """Whether a call on ``samples`` samples now would run the NumPy tier
        (a hint for `ParallelRunner`: such calls run on one thread)."""
        if self.checked or self.numpy_tier is None or samples > background.WAIT_SAMPLES:
            return False
        return self.job is not None or self._may_start(samples)

    def _may_start(self, samples):
        """Whether a first call on ``samples`` samples starts a background compile."""
        return (background.background_enabled() and not self.module.__file__.startswith("<")
                and samples <= background.WAIT_SAMPLES and not self._in_numba_cache())

    def _in_numba_cache(self):
        if self._cached is None:
            stem = Path(self.module.__file__).stem
            self._cached = any(_numba_cache_path(self.module).glob(f"{stem}.kernel-*.nbi"))
        return self._cached

    def _purge(self):
        path = Path(self.module.__file__)
        files = list(_numba_cache_path(self.module).glob(f"{path.stem}.*"))
        for f in files:
            with contextlib.suppress(OSError):
                f.unlink()
        return bool(files)


def _numba_cache_path(module):
    """Where Numba keeps ``module``'s machine code: beside the file, or under
    ``NUMBA_CACHE_DIR``, or its user-wide directory when that is not writable."""
    cache = getattr(module.kernel, "_cache", None)
    path = getattr(cache, "cache_path", None)
    return Path(path) if path else Path(module.__file__).parent / "__pycache__"


def _check_numba_cache(module):
    """Numba loads pickles from its cache directory: hold it to the same rule as ours."""
    path = _numba_cache_path(module)
    while not path.exists() and path != path.parent:
        path = path.parent  # not made yet: the directory that will hold it
    check_cache_dir(path)


def _from_numba_cache(error):
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
        if filename.endswith("numba/core/caching.py"):
            return True
        tb = tb.tb_next
    return False
