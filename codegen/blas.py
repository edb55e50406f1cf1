"""The BLAS thread count, lowered while the NumPy tier shares the cores with
background compiles.

The NumPy tier (`codegen.backends`) runs contractions through ``np.einsum``,
which calls the BLAS NumPy was built with; OpenBLAS starts one thread per core
and its threads spin while they wait for each other.  While a background
Numba compile holds a core, a BLAS thread on that core makes every small
matrix product wait for the compiler's time slice: the PINN benchmark's
first call at 10^5 points took 0.76-0.84 s with OpenBLAS's two threads on
this 2-core machine and 0.23 s with one (`benchmarks/RESULTS.md`).
`limited(n)` runs a block with at most ``n`` BLAS threads and restores the
count after; overlapping blocks (tiers called from several threads) share
one limit, and the last to leave restores the count.

The library is found among the shared objects the process has loaded
(``/proc/self/maps``, so Linux only): OpenBLAS under its plain or SciPy
(``scipy_``, ``64_``) symbol names, or MKL.  Elsewhere, or with another
BLAS, `limited` changes nothing.

>>> from codegen import blas
>>> with blas.limited(1):
...     pass
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

__all__ = ["limited", "threads"]

# (setter, getter) symbol pairs, most specific first
_SYMBOLS = [("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"),
            ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads")]
_LOCK = threading.Lock()
_API = []  # [(set, get)] once looked up; [None] when there is none
_HELD = {"count": 0, "saved": None}


def _loaded_libraries():
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            fields = (line.split(None, 5) for line in fh)
            paths = {f[5].strip() for f in fields if len(f) == 6}
    except OSError:
        return []
    return sorted(p for p in paths if ("blas" in p.lower() or "mkl_rt" in p) and ".so" in p)


def _api():
    if not _API:
        import numpy  # noqa: F401  (loads NumPy's BLAS)

        found = None
        for path in _loaded_libraries():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for setter, getter in _SYMBOLS:
                set_fn, get_fn = getattr(lib, setter, None), getattr(lib, getter, None)
                if set_fn is not None and get_fn is not None:
                    set_fn.restype, get_fn.restype = None, ctypes.c_int
                    set_fn.argtypes, get_fn.argtypes = [ctypes.c_int], []
                    found = (set_fn, get_fn)
                    break
            if found:
                break
        _API.append(found)
    return _API[0]


def threads():
    """The BLAS's thread count now (None when the library is not known)."""
    api = _api()
    return None if api is None else int(api[1]())


@contextlib.contextmanager
def limited(n):
    """Run the block with at most ``n`` (>= 1) BLAS threads."""
    api = _api()
    if api is None:
        yield
        return
    with _LOCK:
        if _HELD["count"] == 0:
            saved = int(api[1]())
            _HELD["saved"] = saved
            if saved > n:
                api[0](max(1, int(n)))
        _HELD["count"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _HELD["count"] -= 1
            if _HELD["count"] == 0 and int(api[1]()) != _HELD["saved"]:
                api[0](_HELD["saved"])
