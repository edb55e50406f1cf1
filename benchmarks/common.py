"""Shared machinery for the symjac reference benchmarks.

What is measured, per method (symjac variants and optional peers):

- first call: constructing the method (trace, differentiate, generate code,
  compile: whatever the method needs) plus its first evaluation on the full
  batch.  symjac's first calls run each in a fresh Python process so that no
  in-process cache (Numba's, symjac's) helps; the peers' first calls are
  measured in the benchmark process (nothing for the model was compiled
  before, and it saves minutes of re-running slow peers).  Libraries are
  imported before the clock starts.  For symjac, ``SYMJAC_CACHE_DIR`` points
  to a new empty temporary directory (set before symjac is imported), so the
  disk cache does not hide the compile.
- median: median of at least 5 timed evaluations (``time.perf_counter``)
  after the untimed in-process first call, which is the warm-up (fast
  methods: more runs, until 0.5 s has been timed; methods slower than 1 s
  per call: exactly 5).  Where a method accepts a preallocated
  output buffer (symjac ``out=``, SymEngine ``out=``, the SymPy assembly
  buffer) it is used, so allocation is not timed.
- ratios: ``method_time / symjac_time``; > 1 means symjac is faster.
- write floor: the time to write an output array of the same size once on
  a preallocated (already touched) buffer: ``buf[...] = 1.0`` (NumPy, one
  thread), a Numba ``prange`` fill (all threads) and ``np.copyto`` (read +
  write).  The fastest fill is "the" floor.
- correctness: every method's Jacobian is compared with symjac's dense one on
  a set of sample indices (max abs error, max rel error over entries that are
  not tiny), so a fast wrong answer is visible.

Peers are optional: a method whose library fails to import is skipped with a
printed note.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["setup_env", "time_median", "time_small", "write_floors", "LoadMonitor", "wait_idle", "Method", "Runner",
           "Skip", "compare", "nz_to_dense", "symjac_runner", "main"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENV_DONE = False


# -- environment --------------------------------------------------------------

def setup_env():
    """Point symjac at a fresh, empty disk cache and configure peers.

    Must run before symjac (and JAX) are imported; it is idempotent.
    """
    global _ENV_DONE
    if _ENV_DONE:
        return os.environ["SYMJAC_CACHE_DIR"]
    if "symjac" in sys.modules:
        print("warning: symjac was imported before setup_env(); its cache dir may not be fresh",
              file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="symjac-bench-cache-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    os.environ["SYMJAC_CACHE_DIR"] = tmp
    # per-call figures are Numba's: first calls compile in-process (first_call.py measures both tiers)
    os.environ.setdefault("SYMJAC_BACKGROUND_COMPILE", "0")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _ENV_DONE = True
    return tmp


# -- timing -------------------------------------------------------------------

MIN_REPEATS = 5  # medians are taken over at least this many timed runs
SLOW_CALL = 1.0  # seconds: methods slower than this per call get MIN_REPEATS runs only


def time_median(fn, repeats=7, warmup=1, min_total=0.5, max_repeats=200):
    """(median, min, all times) of at least ``repeats`` timed calls of ``fn`` after
    ``warmup`` calls; fast functions get more calls, until ``min_total`` seconds
    have been timed (at most ``max_repeats``), so medians and load figures are
    not made of a few milliseconds; functions slower than ``SLOW_CALL`` seconds
    get ``MIN_REPEATS`` calls (if ``repeats`` is not smaller)."""
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < repeats or (sum(times) < min_total and len(times) < max_repeats):
        if len(times) >= MIN_REPEATS and times[0] > SLOW_CALL:
            break  # a slow method: the minimum number of runs keeps the suite's wall time reasonable
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times)), times


def time_small(fn, min_time=0.2, max_calls=100000):
    """Median per-call time of a fast ``fn`` (call overheads), from ~``min_time`` seconds of calls."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > min_time / 10 or n >= max_calls:
            break
        n *= 4
    samples = []
    for _ in range(9):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return float(np.median(samples))


class LoadMonitor:
    """CPU used by *other* processes while a block runs, in cores (0 = machine to ourselves).

    Reads the machine-wide busy time from /proc/stat and subtracts this
    process's own CPU time (and that of its waited-for children).  On a
    shared 2-core machine a busy neighbour slows memory-bound and
    multi-threaded runs (an OpenMP ``prange`` launch can wait a whole
    scheduler tick, ~8 ms, for a core), so every timing carries this number.
    """

    def __init__(self):
        self.start()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as fh:
                vals = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self):
        self.t0, self.b0, self.o0 = time.perf_counter(), self._busy(), self._own()
        return self

    def cores(self):
        """Average number of cores other processes used since ``start()``."""
        b1 = self._busy()
        if b1 is None or self.b0 is None:
            return None
        wall = time.perf_counter() - self.t0
        if wall <= 0:
            return 0.0
        return max(0.0, ((b1 - self.b0) - (self._own() - self.o0)) / wall)


def wait_idle(max_wait, threshold=0.3, window=2.0):
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` cores
    over a ``window``-second sample.  Returns the last measured load."""
    deadline = time.perf_counter() + max_wait
    waited = False
    while True:
        mon = LoadMonitor()
        time.sleep(window)
        load = mon.cores()
        if load is None or load < threshold or time.perf_counter() >= deadline:
            if waited:
                print(f"  (waited for an idle machine: background load now {load:.2f} cores)", flush=True)
            return load
        if not waited:
            print(f"  (machine busy: other processes use {load:.2f} cores; waiting up to {max_wait:.0f} s)",
                  flush=True)
        waited = True


_PAR_FILL = None


def _parallel_fill():
    global _PAR_FILL
    if _PAR_FILL is None:
        import numba

        @numba.njit(parallel=True, nogil=True)
        def fill(buf, value):
            for b in numba.prange(buf.shape[0]):
                for j in range(buf.shape[1]):
                    buf[b, j] = value

        _PAR_FILL = fill
    return _PAR_FILL


def write_floors(shape, repeats=7, dtype=np.float64):
    """Times to write an array of ``shape`` once on a preallocated buffer.

    Returns {"fill (numpy, 1 thread)": t, "fill (numba prange)": t,
    "copyto (read+write)": t, "memset (libc, all threads)": t,
    "fresh np.empty + fill (page faults)": t}, each a median over
    ``repeats`` runs (the last over at most 5); a missing Numba drops the
    prange entry.  The "fill" entries define the floor of the targets; the
    memset (non-temporal stores) and fresh-allocation rows are context.
    """
    buf = np.empty(shape, dtype)
    buf[...] = 0.0  # touch every page first
    res = {}

    def fill():
        buf[...] = 1.0

    res["fill (numpy, 1 thread)"] = time_median(fill, repeats)[0]
    try:
        pf = _parallel_fill()
        flat = buf.reshape(shape[0], -1)
        res["fill (numba prange)"] = time_median(lambda: pf(flat, 2.0), repeats)[0]
    except ImportError:
        pass
    src = np.full(shape, 3.0, dtype)
    res["copyto (read+write)"] = time_median(lambda: np.copyto(buf, src), repeats)[0]
    del src
    ms = _memset_threads(buf)
    if ms is not None:
        res["memset (libc, all threads)"] = time_median(ms, repeats)[0]
    del buf

    def fresh():
        b = np.empty(shape, dtype)
        b.fill(1.0)

    res["fresh np.empty + fill (page faults)"] = time_median(fresh, min(repeats, 5), min_total=0)[0]
    return res


def _memset_threads(buf):
    """``buf`` zeroed by libc memset, one slice per core (glibc uses non-temporal
    stores for large sizes: no read-for-ownership, the strictest write floor)."""
    try:
        import ctypes
        from concurrent.futures import ThreadPoolExecutor

        libc = ctypes.CDLL(None)
        memset = libc.memset
        memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    n = os.cpu_count() or 1
    ptr, nbytes = buf.ctypes.data, buf.nbytes
    bounds = [(nbytes * i // n) & ~63 for i in range(n)] + [nbytes]
    parts = [(ptr + a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    pool = ThreadPoolExecutor(n)

    def run():
        list(pool.map(lambda pb: memset(pb[0], 0, pb[1]), parts))

    return run


# -- methods --------------------------------------------------------------------

class Skip(Exception):
    """Raised by a method's setup when it cannot run here (library missing, ...)."""


@dataclass
class Runner:
    """A set-up method: ``run()`` evaluates the whole batch once (the timed unit);
    ``dense(idx)`` returns the Jacobians of samples ``idx`` from the last run as
    a dense float64 array ``(len(idx), m, n)``."""

    run: Callable[[], object]
    dense: Callable[[np.ndarray], np.ndarray]
    info: dict = field(default_factory=dict)
    small_call: Callable[[], object] | None = None  # one call on a 1-sample batch (overhead)


@dataclass
class Method:
    name: str
    setup: Callable  # setup(problem) -> Runner (may raise Skip / ImportError)
    preload: Callable = lambda: None  # library imports, done before the first-call clock starts
    note: str = ""
    key: str = ""  # short id used on the command line
    default: bool = True  # False: run only when named in --methods
    fresh_first_call: bool = True  # measure the first call in a fresh process (False: in this process)

    def __post_init__(self):
        if not self.key:
            self.key = "".join(c if c.isalnum() else "-" for c in self.name.lower()).strip("-")
            while "--" in self.key:
                self.key = self.key.replace("--", "-")


def compare(peer, ref):
    """(max abs error, max rel error) of ``peer`` against ``ref``.

    The relative error is taken over entries with ``|ref| > 1e-8 * max|ref|``
    (so values that are structurally or numerically ~0 do not divide by ~0);
    those entries are covered by the absolute error.
    """
    peer = np.asarray(peer, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if peer.shape != ref.shape:
        return float("nan"), float("nan")
    if not np.all(np.isfinite(peer)):
        return float("inf"), float("inf")
    diff = np.abs(peer - ref)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    mask = np.abs(ref) > 1e-8 * scale
    rel = float(np.max(diff[mask] / np.abs(ref[mask]))) if mask.any() else 0.0
    return float(diff.max()) if diff.size else 0.0, rel


def nz_to_dense(values, rows, cols, shape):
    """Dense ``(n, *shape)`` from per-sample nonzero values ``(n, nnz)`` at ``(rows, cols)``."""
    d = np.zeros((values.shape[0],) + tuple(shape))
    d[:, rows, cols] = values
    return d


def symjac_runner(f, args, jac_shape, *, backend, sparse, use_out=True, in_axes=0, argnums=0,
                  non_ieee=False):
    """A `Runner` for ``symjac.jacobian(f, argnums, backend=..., sparse=...)`` on ``args``.

    ``jac_shape`` is the per-sample Jacobian as a matrix ``(m, n)`` (flattened
    output by flattened input), used by ``dense()``.
    With ``use_out`` the first call's result buffer is passed back as ``out=``
    in every later call (dense: the ``(B, ...)`` array; sparse: the
    ``(B, nnz)`` values).  ``info`` gets the kernel's stats.  With
    ``non_ieee`` the model is traced inside ``symjac.non_ieee_rewrites()``
    (``x*0 -> 0`` etc., as SymPy/SymEngine/CasADi do by default).
    """
    import symjac

    J = symjac.jacobian(f, argnums, in_axes=in_axes, backend=backend, sparse=sparse)
    state = {}

    def run():
        if use_out and "out" in state:
            state["res"] = J(*args, out=state["out"])
        else:
            state["res"] = J(*args)
            if use_out:
                state["out"] = state["res"].values if sparse else state["res"]

    def dense(idx):
        res = state["res"]
        if sparse:
            return nz_to_dense(res.values[idx], res.rows, res.cols, res.shape)
        return np.asarray(res[idx]).reshape((len(idx),) + tuple(jac_shape))

    small_args = [a[:1].copy() if ax is not None else a
                  for a, ax in zip(args, in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args))]
    small = {}

    def small_call():
        if "o" not in small:
            r = J(*small_args)
            small["o"] = r.values if sparse else r
        J(*small_args, out=small["o"])

    if non_ieee:
        with symjac.non_ieee_rewrites():
            run()  # the first call traces
    else:
        run()
    st = J.kernel_for(*args).stats
    res = state["res"]
    info = {"nnz": res.nnz if sparse else st["output_entries"] - st["structural_zeros"],
            "dag_ops": st["dag_ops"], "tree_ops": st["tree_ops"], "flops/sample": st["flops_per_sample"]}
    return Runner(run, dense, info=info, small_call=small_call)


# -- driver ---------------------------------------------------------------------

def machine_line():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, {platform.system()}"


def versions_line():
    parts = []
    for mod in ("numpy", "numba", "jax", "torch", "sympy", "symengine", "casadi"):
        m = sys.modules.get(mod)
        if m is not None:
            parts.append(f"{mod} {getattr(m, '__version__', '?')}")
    return ", ".join(parts)


def _fmt_time(t):
    if t is None or not np.isfinite(t):
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.1f} µs"


def _fmt_ratio(r):
    if r is None or not np.isfinite(r):
        return "-"
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


def _fmt_load(x):
    return "-" if x is None else f"{x:.2f}"


def _fmt_err(e):
    if e is None:
        return "-"
    if not np.isfinite(e):
        return str(e)
    return f"{e:.1e}" if e else "0"


def _first_call_subprocess(module_name, method_key, B, timeout, env_extra=None, full=False):
    """The first call of one method in a fresh process: seconds and error (``full``: the child's
    whole record, with ``ready``, when symjac's Numba tier ran after a background compile)."""
    cmd = [sys.executable, "-m", module_name, "--first-call", method_key, "-B", str(B)]
    env = dict(os.environ, **(env_extra or {}))
    env.pop("SYMJAC_CACHE_DIR", None)  # the child makes its own fresh one
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"first call timed out after {timeout} s"
    for line in proc.stdout.splitlines():
        if line.startswith("FIRSTCALL_JSON:"):
            data = json.loads(line[len("FIRSTCALL_JSON:"):])
            return data if full else (data.get("seconds"), data.get("error"))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    error = "child failed: " + " | ".join(tail)
    return {"error": error} if full else (None, error)


def _child_first_call(problem_mod, method_key, B):
    methods = {m.key: m for m in problem_mod.METHODS}
    m = methods[method_key]
    out = {"method": m.name}
    try:
        m.preload()
        problem = problem_mod.make_problem(B)
        t0 = time.perf_counter()
        runner = m.setup(problem)
        out["setup"] = time.perf_counter() - t0  # symjac's setups run their first call (to read its stats)
        runner.run()
        out["seconds"] = time.perf_counter() - t0
        symjac = sys.modules.get("symjac")
        if m.key.startswith("symjac") and symjac is not None and symjac.wait_compiled(timeout=600):
            runner.run()  # the Numba tier, once a background compile is done
            out["ready"] = time.perf_counter() - t0
    except (Skip, ImportError) as e:
        out["error"] = f"skipped: {e}"
    except Exception as e:  # noqa: BLE001  (report, do not crash the parent)
        out["error"] = f"{type(e).__name__}: {e}"
    print("FIRSTCALL_JSON:" + json.dumps(out), flush=True)


def parse_args(argv, default_B, quick_B, description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("-B", "--batch", dest="B", type=int, default=None,
                   help=f"batch size (default {default_B}; --quick: {quick_B})")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 7, --quick 3)")
    p.add_argument("--quick", action="store_true", help="small batch, few repeats: a smoke test")
    p.add_argument("--methods", default=None,
                   help="comma-separated method keys to run (the symjac reference always runs)")
    p.add_argument("--no-isolate", action="store_true",
                   help="measure first calls in this process instead of a fresh one per method")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each method's timed runs, wait up to SECONDS for other processes to "
                        "use < 0.3 cores (shared machines)")
    p.add_argument("--first-call", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.B is None:
        args.B = quick_B if args.quick else default_B
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if not args.quick and args.repeats < 5:
        print(f"note: --repeats {args.repeats} raised to 5 (medians use at least 5 runs; "
              "use --quick for a smoke test)")
        args.repeats = 5
    return args


def main(problem_mod, argv=None):
    """Run one problem module's benchmark; returns the results dict."""
    setup_env()
    args = parse_args(argv, problem_mod.DEFAULT_B, problem_mod.QUICK_B, problem_mod.__doc__.splitlines()[0])
    if args.first_call:
        _child_first_call(problem_mod, args.first_call, args.B)
        return None

    B, repeats = args.B, args.repeats
    title = problem_mod.TITLE
    print(f"\n## {title}\n")
    if args.quick:
        print("QUICK MODE: small batch and few repeats; a smoke test, not a measurement.\n")
    problem = problem_mod.make_problem(B)
    for line in problem_mod.describe(problem):
        print(line)
    print(f"- batch B = {B}, {repeats} timed runs per method (median), first calls "
          f"{'in this process' if args.no_isolate else 'each in a fresh process'}")
    print(f"- machine: {machine_line()}; load average at start {os.getloadavg()[0]:.2f}")

    # write floors
    floors = {}
    if args.wait_idle > 0:
        wait_idle(args.wait_idle)
    mon = LoadMonitor()
    for label, shape in problem_mod.floor_shapes(problem):
        for how, t in write_floors(shape, repeats=max(repeats, 5)).items():
            floors[f"{label}: {how}"] = (t, shape)
    floor_load = mon.cores()
    run_mon = LoadMonitor()

    selected = None
    if args.methods:
        selected = {s.strip() for s in args.methods.split(",") if s.strip()}
    methods = [m for i, m in enumerate(problem_mod.METHODS)
               if (selected is None and m.default) or i == 0
               or (selected is not None and (m.key in selected or m.name in selected))]
    optional = [m.key for m in problem_mod.METHODS if not m.default and m not in methods]
    if optional:
        print(f"- not run by default (add with --methods): {', '.join(optional)}")

    idx = problem_mod.check_indices(B)
    results, ref_dense = [], None
    for m in methods:
        row = {"name": m.name, "key": m.key, "note": m.note, "first_call": None, "median": None,
               "min": None, "abs_err": None, "rel_err": None, "status": "ok", "info": {}}
        results.append(row)
        try:
            m.preload()
        except (ImportError, Skip) as e:
            row["status"] = f"skipped ({type(e).__name__}: {e})"
            print(f"  [skip] {m.name}: {e}")
            continue
        print(f"  running {m.name} ...", flush=True)
        isolate = not args.no_isolate and m.fresh_first_call
        if isolate:
            if args.wait_idle > 0:
                wait_idle(args.wait_idle)
            fmon = LoadMonitor()
            fc, err = _first_call_subprocess(f"benchmarks.{problem_mod.NAME}", m.key, B, timeout=600)
            row["first_call"], row["first_call_bg_load"] = fc, fmon.cores()
            if err:
                row["first_call_error"] = err
                if err.startswith("skipped"):
                    row["status"] = err
                    print(f"  [skip] {m.name}: {err}")
                    continue
        try:
            if not isolate and args.wait_idle > 0:
                wait_idle(args.wait_idle)
            fmon = LoadMonitor()
            t0 = time.perf_counter()
            runner = m.setup(problem)
            runner.run()
            t_first_inproc = time.perf_counter() - t0
            inproc_load = fmon.cores()
            if not isolate:
                row["first_call"] = t_first_inproc
                row["first_call_inproc_only"] = True
                row["first_call_bg_load"] = inproc_load
            row["first_call_inproc"] = t_first_inproc
            if args.wait_idle > 0:
                wait_idle(args.wait_idle)
            mon = LoadMonitor()
            med, mn, times = time_median(runner.run, repeats, warmup=0)  # the first call warmed up
            row.update(median=med, min=mn, times=times, bg_load=mon.cores())
            dense = runner.dense(idx)
            if ref_dense is None:
                ref_dense = dense
                row["abs_err"], row["rel_err"] = 0.0, 0.0
            else:
                row["abs_err"], row["rel_err"] = compare(dense, ref_dense)
            if runner.small_call is not None:
                row["info"]["call_overhead_B1"] = time_small(runner.small_call)
            row["info"].update(runner.info)
            del runner, dense
        except (Skip, ImportError) as e:
            row["status"] = f"skipped ({e})"
            print(f"  [skip] {m.name}: {e}")
        except Exception as e:  # noqa: BLE001
            row["status"] = f"failed: {type(e).__name__}: {e}"
            print(f"  [fail] {m.name}: {type(e).__name__}: {e}")
            traceback.print_exc()

    res = {"problem": problem_mod.NAME, "title": title, "B": B, "repeats": repeats, "quick": args.quick,
           "machine": machine_line(), "versions": versions_line(), "methods": results,
           "floors": {k: v[0] for k, v in floors.items()}, "floor_bg_load": floor_load,
           "bg_load": run_mon.cores(),
           "floor_shapes": {k: list(v[1]) for k, v in floors.items()},
           "description": list(problem_mod.describe(problem))}
    print()
    print_table(res, problem_mod.REFS)
    print_targets(res, problem_mod.TARGETS)
    write_json(args.json, res)
    return res


def write_json(path, data):
    """``data`` as indented JSON at ``path`` (nothing when ``path`` is None)."""
    if path:
        with open(path, "w") as fh:
            json.dump(data, fh, indent=1, default=str)


def _by_name(res, name):
    for r in res["methods"]:
        if r["name"] == name and r["median"] is not None:
            return r
    return None


def print_table(res, refs):
    """Markdown table: ratios vs each symjac reference first, then times and errors."""
    ref_rows = [(label, _by_name(res, name)) for label, name in refs]
    head = ["method"] + [f"time / {label}" for label, _ in ref_rows] + \
        ["median", "first call", "max abs err", "max rel err", "bg load (timed / first)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in res["methods"]:
        if r["median"] is None:
            cells = [r["name"]] + ["-"] * len(ref_rows) + ["-", _fmt_time(r["first_call"]), "-", "-", "-",
                                                              r["status"]]
        else:
            ratios = [_fmt_ratio(r["median"] / ref["median"]) if ref else "-" for _, ref in ref_rows]
            note = r["note"]
            if r.get("first_call_error"):
                note += f" (first call: {r['first_call_error']})"
            fc = _fmt_time(r["first_call"]) + (" *" if r.get("first_call_inproc_only") else "")
            cells = [r["name"], *ratios, _fmt_time(r["median"]), fc,
                     _fmt_err(r["abs_err"]), _fmt_err(r["rel_err"]),
                     f'{_fmt_load(r.get("bg_load"))} / {_fmt_load(r.get("first_call_bg_load"))}', note]
        lines.append("| " + " | ".join(cells) + " |")
    for label, t in res["floors"].items():
        shape = res["floor_shapes"][label]
        mb = np.prod(shape) * 8 / 1e6
        ratios = [_fmt_ratio(t / ref["median"]) if ref else "-" for _, ref in ref_rows]
        lines.append("| " + " | ".join([f"write floor {label}", *ratios, _fmt_time(t), "-", "-", "-",
                                        _fmt_load(res.get("floor_bg_load")),
                                        f"{tuple(shape)} float64, {mb:.0f} MB, {mb / 1e3 / t:.1f} GB/s"]) + " |")
    print("\n".join(lines))
    print("\n(ratios: method time / symjac time, > 1 means symjac is faster; first call: construct + first "
          "evaluation in a fresh process, or, marked *, in the benchmark process after the library import "
          "(nothing for this model compiled before); bg load: average number of cores used by other "
          "processes during the timed runs / during the first call; 0 = quiet machine)")
    overheads = [(r["name"], r["info"]["call_overhead_B1"]) for r in res["methods"]
                 if r["info"].get("call_overhead_B1") is not None]
    if overheads:
        print("\nPer-call overhead (B = 1, preallocated out=): " +
              "; ".join(f"{n}: {_fmt_time(t)}" for n, t in overheads))
    extra = [(r["name"], r["info"]) for r in res["methods"] if r["info"]]
    for name, info in extra:
        items = {k: v for k, v in info.items() if k != "call_overhead_B1"}
        if items:
            print(f"- {name}: " + ", ".join(f"{k}={v}" for k, v in items.items()))
    print()


def print_targets(res, targets):
    """Check the owner's targets. Each target is a tuple:
    ("faster", symjac_method, peer_method, factor): peer_time / symjac_time >= factor;
    ("floor", symjac_method, floor_label, factor): symjac_time / floor_time <= factor;
    ("first", symjac_method, seconds): first call <= seconds;
    ("max", symjac_method, info_key, limit): the method's ``info[info_key]`` <= limit
    (e.g. the generated kernel's "source lines")."""
    if not targets:
        return
    print("Targets:")
    for t in targets:
        kind = t[0]
        if kind == "faster":
            _, mine, peer, factor = t
            a, b = _by_name(res, mine), _by_name(res, peer)
            if a is None or b is None:
                print(f"- {mine} >= {factor}x faster than {peer}: not measured")
                continue
            r = b["median"] / a["median"]
            print(f"- {mine} >= {factor}x faster than {peer}: {r:.2f}x -> {'MET' if r >= factor else 'MISSED'}")
        elif kind == "floor":
            _, mine, floor_label, factor = t
            a = _by_name(res, mine)
            cands = {k: v for k, v in res["floors"].items() if k.startswith(floor_label + ": fill")}
            if a is None or not cands:
                print(f"- {mine} within {factor}x of the {floor_label} write floor: not measured")
                continue
            label, ft = min(cands.items(), key=lambda kv: kv[1])
            r = a["median"] / ft
            print(f"- {mine} within {factor}x of the write floor ({label}, {_fmt_time(ft)}): "
                  f"{r:.2f}x -> {'MET' if r <= factor else 'MISSED'}")
            for k, v in res["floors"].items():
                if k.startswith(floor_label + ":") and k != label:
                    print(f"    (vs {k}, {_fmt_time(v)}: {a['median'] / v:.2f}x)")
        elif kind == "first":
            _, mine, secs = t
            a = next((r for r in res["methods"] if r["name"] == mine), None)
            if a is None or a["first_call"] is None:
                print(f"- {mine} first call under {secs} s: not measured")
                continue
            fc = a["first_call"]
            print(f"- {mine} first call under {secs} s: {fc:.2f} s -> {'MET' if fc <= secs else 'MISSED'}")
        elif kind == "max":
            _, mine, key, limit = t
            a = next((r for r in res["methods"] if r["name"] == mine), None)
            v = None if a is None else a["info"].get(key)
            if v is None:
                print(f"- {mine} {key} at most {limit}: not measured")
                continue
            print(f"- {mine} {key} at most {limit}: {v} -> {'MET' if v <= limit else 'MISSED'}")
    print()


def symjac_methods(run, preload, dense_shape):
    """The symjac rows every benchmark has: dense and sparse, threaded and one
    thread, and dense without ``out=``.  ``run(p, backend, sparse, use_out)``."""
    return [
        Method("symjac dense (numba-parallel)", lambda p: run(p, "numba-parallel", False, True), preload,
               "reference; out= preallocated", key="symjac-dense"),
        Method("symjac sparse (numba-parallel)", lambda p: run(p, "numba-parallel", True, True), preload,
               "(B, nnz) values, out= preallocated", key="symjac-sparse"),
        Method("symjac dense (numba, 1 thread)", lambda p: run(p, "numba", False, True), preload,
               "out= preallocated", key="symjac-dense-1t"),
        Method("symjac sparse (numba, 1 thread)", lambda p: run(p, "numba", True, True), preload,
               "(B, nnz) values, out= preallocated", key="symjac-sparse-1t"),
        Method("symjac dense, no out= (numba-parallel)", lambda p: run(p, "numba-parallel", False, False),
               preload, f"allocates the {dense_shape} result each call", key="symjac-dense-alloc"),
    ]


def peer_methods(mod, dense_shape, sympy_note, symengine_note):
    """The peer rows every Jacobian benchmark has, from the module's ``_jax``,
    ``_torch``, ``_sympy``, ``_symengine``, ``_casadi`` and their ``_preload_*``."""
    fn = lambda name: getattr(mod, name)  # noqa: E731
    return [
        Method("JAX jit(vmap(jacfwd))", fn("_jax"), fn("_preload_jax"),
               f"float64, dense {dense_shape}, allocates", key="jax", fresh_first_call=False),
        Method("torch.func vmap(jacfwd)", fn("_torch"), fn("_preload_torch"), "float64, dense, allocates",
               key="torch", fresh_first_call=False),
        Method("SymPy lambdify(cse=True)", fn("_sympy"), fn("_preload_sympy"), sympy_note,
               key="sympy", fresh_first_call=False),
        Method("SymEngine Lambdify LLVM (1 thread)", fn("_symengine"), fn("_preload_symengine"), symengine_note,
               key="symengine", fresh_first_call=False),
        Method("CasADi SX map thread(2)", lambda p: fn("_casadi")(p, "thread"), fn("_preload_casadi"),
               "nnz as dense (nnz, B) DM, + .full(); map 'thread' (2) was faster than 'serial' "
               "in our runs (--methods casadi-serial to compare)", key="casadi-thread", fresh_first_call=False),
        Method("CasADi SX map serial", lambda p: fn("_casadi")(p, "serial"), fn("_preload_casadi"),
               "nnz as dense (nnz, B) DM, + .full()", key="casadi-serial", fresh_first_call=False, default=False),
    ]
