"""mlp_compile benchmark: first-call (compile) time of the PINN kernel against MLP depth and width.

For tanh MLPs 3 -> W x L -> 1 (L hidden layers of width W, weights shared by
every point, ``in_axes=None``), symjac compiles the same fused per-point
kernel as ``benchmarks.pinn``: u, ``symjac.gradient(u)`` and the forward
Laplacian ``symjac.laplacian(u)``, backend "numba-parallel".  Per
configuration, in a fresh Python process with its own empty
``SYMJAC_CACHE_DIR`` (`common.setup_env`), after importing numba and symjac:

- trace + lower: ``Kernel.specialize`` (trace, differentiate, CSE, lower to
  the program);
- compile: print the source and Numba-compile it; timed as the first call on
  64 points, so the evaluation in it is negligible;
- first eval: the first evaluation on the whole batch (B = 10^5 points by
  default; the outputs are allocated and touched here);
- first call = the three together (what a user waits for on a full batch);
- eval: median of warm evaluations on the same batch with ``out=``
  preallocated (at least 5 runs), to show that each kernel runs, and how much
  of the first call the evaluation itself is;
- ``Kernel.stats`` statements, flops per point, and the generated source's
  line count (``Kernel.source``).

The (64, 5) row is the issue's target, "compiles in under 15 s": checked on
the compile time (trace + lower + compile), the first call on the full batch
is reported next to it.  Compile time
should grow with the number of layers L (each layer is a few tensor
statements), not with W^2 (the weight-matrix size, which an unrolled kernel's
statement count would follow).

Run:  python -m benchmarks.mlp_compile [--quick] [-B N] [--configs 32x3,64x5] [--wait-idle S] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common

common.setup_env()  # fresh SYMJAC_CACHE_DIR before symjac is imported anywhere

NAME = "mlp_compile"
TITLE = "mlp_compile: first call of the u + grad u + forward Laplacian kernel, tanh MLP 3 -> W x L -> 1"
N_IN = 3
SEED = 7
DEFAULT_B = 100_000
QUICK_B = 4_000
CONFIGS = [(32, 3), (64, 3), (64, 5), (128, 5), (64, 10)]  # (width W, hidden layers L)
QUICK_CONFIGS = [(32, 3), (64, 5)]
TARGET = ((64, 5), 15.0)  # first call under 15 s
BACKEND = "numba-parallel"
SMALL_B = 64  # the compile is timed as a first call on this many points


def make_weights(width, layers, seed=SEED):
    """[W1, b1, ..., WL, bL, w_out]: Glorot-scaled normal weights, small biases."""
    rng = np.random.default_rng(seed)
    ws, fan = [], N_IN
    for _ in range(layers):
        ws.append(rng.normal(size=(width, fan)) / np.sqrt(fan))
        ws.append(rng.normal(size=width) * 0.1)
        fan = width
    ws.append(rng.normal(size=width) / np.sqrt(width))
    return ws


def u_np(x, *w):
    """The per-point network: plain NumPy, as in benchmarks.pinn."""
    h = x
    for k in range(0, len(w) - 1, 2):
        h = np.tanh(w[k] @ h + w[k + 1])
    return w[-1] @ h


def per_point(x, *w):
    """What symjac compiles: (u, grad u, Laplacian of u), as benchmarks.pinn's forward variant."""
    import symjac

    return u_np(x, *w), symjac.gradient(u_np)(x, *w), symjac.laplacian(u_np)(x, *w)


def _child(width, layers, B, repeats):
    """One configuration, in this (fresh) process; prints one JSON line."""
    import numba  # noqa: F401  (library imports are not part of the first call)

    import symjac

    W = make_weights(width, layers)
    X = np.random.default_rng(1234).uniform(-1.0, 1.0, (B, N_IN))
    in_axes = (0,) + (None,) * len(W)
    out = {"W": width, "L": layers, "B": B}
    mon = common.LoadMonitor()
    t0 = time.perf_counter()
    k = symjac.compile(per_point, in_axes=in_axes, backend=BACKEND)
    k.specialize([(N_IN,)] + [w.shape for w in W], in_axes)
    t1 = time.perf_counter()
    k(X[:SMALL_B], *W)  # generate + Numba compile, evaluation on a few points only
    t2 = time.perf_counter()
    res = k(X, *W)  # the first evaluation of the whole batch (first touch of the outputs)
    t3 = time.perf_counter()
    out.update(trace_lower=t1 - t0, compile=t2 - t1, first_eval=t3 - t2, first_call=t3 - t0,
               first_bg_load=mon.cores())
    st = k.stats
    out.update(statements=st["statements"], dag_ops=st["dag_ops"], flops=st["flops_per_sample"],
               source_lines=len(k.source.splitlines()))
    # correctness spot check against central differences of u (gradient) on a few points
    u, g = res[0], res[1]
    lap = res[2]
    ok = bool(np.all(np.isfinite(u)) and np.all(np.isfinite(g)) and np.all(np.isfinite(lap)))
    xs, h = X[:4], 1e-4
    g_fd = np.array([[(u_np(x + h * e, *W) - u_np(x - h * e, *W)) / (2 * h) for e in np.eye(N_IN)] for x in xs])
    lap_fd = np.array([sum((u_np(x + h * e, *W) - 2 * u_np(x, *W) + u_np(x - h * e, *W)) / h ** 2
                           for e in np.eye(N_IN)) for x in xs])
    out["grad_fd_err"] = float(np.max(np.abs(np.asarray(g)[:4].reshape(4, N_IN) - g_fd)))
    out["lap_fd_err"] = float(np.max(np.abs(np.asarray(lap)[:4].reshape(4) - lap_fd)))
    out["finite"] = ok
    mon = common.LoadMonitor()
    med, mn, _ = common.time_median(lambda: k(X, *W, out=res), repeats, warmup=0)
    out.update(eval_median=med, eval_min=mn, eval_bg_load=mon.cores())
    print("MLPCOMPILE_JSON:" + json.dumps(out), flush=True)


def _run_config(width, layers, B, repeats, timeout=900):
    cmd = [sys.executable, "-m", f"benchmarks.{NAME}", "--child", f"{width}x{layers}", "-B", str(B),
           "--repeats", str(repeats)]
    env = dict(os.environ)
    env.pop("SYMJAC_CACHE_DIR", None)  # the child makes its own fresh one
    try:
        proc = subprocess.run(cmd, cwd=common.REPO_ROOT, env=env, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"W": width, "L": layers, "error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("MLPCOMPILE_JSON:"):
            return json.loads(line[len("MLPCOMPILE_JSON:"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"W": width, "L": layers, "error": "child failed: " + " | ".join(tail)}


def _parse_configs(text):
    out = []
    for item in text.split(","):
        w, l_ = item.strip().lower().split("x")
        out.append((int(w), int(l_)))
    return out


def _ready(r):
    """Seconds from nothing to a compiled kernel: trace + lower + compile."""
    return r["trace_lower"] + r["compile"]


def _fmt(t):
    return common._fmt_time(t)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-B", "--batch", dest="B", type=int, default=None,
                   help=f"batch size of the first call and the timed evaluations (default {DEFAULT_B}; "
                        f"--quick: {QUICK_B})")
    p.add_argument("--configs", default=None, help="comma-separated WxL list (default: "
                   + ",".join(f"{w}x{l_}" for w, l_ in CONFIGS) + ")")
    p.add_argument("--repeats", type=int, default=None, help="timed evaluations per config (default 7)")
    p.add_argument("--quick", action="store_true", help="two configs, small batch: a smoke test")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each configuration, wait up to SECONDS for other processes to use < 0.3 cores")
    p.add_argument("--json", default=None, help="write the results as JSON to this file")
    p.add_argument("--no-isolate", action="store_true", help=argparse.SUPPRESS)  # accepted for run_all
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    B = args.B if args.B is not None else (QUICK_B if args.quick else DEFAULT_B)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    if args.child:
        (w, l_), = _parse_configs(args.child)
        _child(w, l_, B, repeats)
        return 0
    configs = _parse_configs(args.configs) if args.configs else (QUICK_CONFIGS if args.quick else CONFIGS)

    print(f"\n## {TITLE}\n")
    if args.quick:
        print("QUICK MODE: two configurations, small batch; a smoke test, not a measurement.\n")
    print(f"- kernel: u, symjac.gradient(u), symjac.laplacian(u) per point, weights shared (in_axes=None), "
          f"backend {BACKEND}; B = {B} points uniform in [-1, 1]^3")
    print("- each configuration in a fresh Python process with an empty SYMJAC_CACHE_DIR; numba and symjac "
          "imported before the clock starts")
    print(f"- machine: {common.machine_line()}; load average at start {os.getloadavg()[0]:.2f}")
    print(f"- command: python -m benchmarks.{NAME} " + " ".join(argv if argv is not None else sys.argv[1:]))
    rows = []
    for w, l_ in configs:
        if args.wait_idle > 0:
            common.wait_idle(args.wait_idle)
        print(f"  running W={w}, L={l_} ...", flush=True)
        rows.append(_run_config(w, l_, B, repeats))

    print()
    head = ["W x L", "weights", "trace + lower + compile", "trace + lower", "compile", "first call (full B)",
            "statements",
            "source lines", "flops/point", f"eval B={B} (median)", "grad / Lap. err vs FD", "bg load (first / eval)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n_w = sum(a.size for a in make_weights(r["W"], r["L"]))
        if "error" in r:
            lines.append("| " + " | ".join([f"{r['W']} x {r['L']}", str(n_w)] + ["-"] * (len(head) - 3)
                                           + [r["error"]]) + " |")
            continue
        lines.append("| " + " | ".join([
            f"{r['W']} x {r['L']}", str(n_w), f"{_ready(r):.2f} s", f"{r['trace_lower']:.2f} s",
            f"{r['compile']:.2f} s", f"{r['first_call']:.2f} s", str(r["statements"]), str(r["source_lines"]),
            str(r["flops"]),
            _fmt(r["eval_median"]), f"{r['grad_fd_err']:.0e} / {r['lap_fd_err']:.0e}",
            f"{common._fmt_load(r['first_bg_load'])} / {common._fmt_load(r['eval_bg_load'])}"]) + " |")
    print("\n".join(lines))
    print(f"\n(fresh process per row, empty cache; compile = generate + Numba compile, timed as a first call on "
          f"{SMALL_B} points; first call (full B) = trace + lower + compile + first evaluation of all B points "
          "(allocates and touches the outputs); eval: warm, out= preallocated; err: max abs difference from "
          "central finite differences of u on 4 points, h = 1e-4, so ~1e-8 for the gradient and ~1e-6 for the "
          "Laplacian is agreement)")

    ok = {(r["W"], r["L"]): r for r in rows if "error" not in r}
    (tw, tl), secs = TARGET
    print("\nScaling (trace + lower + compile):")
    for (w1, l1), (w2, l2), what in [((64, 3), (64, 5), "L 3 -> 5 at W = 64"),
                                     ((64, 5), (64, 10), "L 5 -> 10 at W = 64"),
                                     ((64, 3), (64, 10), "L 3 -> 10 at W = 64"),
                                     ((32, 3), (64, 3), "W 32 -> 64 at L = 3 (W^2 x4)"),
                                     ((64, 5), (128, 5), "W 64 -> 128 at L = 5 (W^2 x4)")]:
        if (w1, l1) in ok and (w2, l2) in ok:
            a, b = ok[(w1, l1)], ok[(w2, l2)]
            print(f"- {what}: {_ready(a):.2f} s -> {_ready(b):.2f} s (x{_ready(b) / _ready(a):.2f}); "
                  f"statements {a['statements']} -> {b['statements']} (x{b['statements'] / a['statements']:.2f})")
    print("\nTargets:")
    if (tw, tl) in ok:
        r = ok[(tw, tl)]
        print(f"- {tw} x {tl} MLP Laplacian kernel compiles (trace + lower + compile) in under {secs} s: "
              f"{_ready(r):.2f} s -> {'MET' if _ready(r) <= secs else 'MISSED'} (first call on the full batch, "
              f"B = {B}: {r['first_call']:.2f} s)")
    else:
        print(f"- {tw} x {tl} MLP Laplacian kernel compiles in under {secs} s: not measured")
    print()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"problem": NAME, "title": TITLE, "B": B, "machine": common.machine_line(),
                       "versions": common.versions_line(), "rows": rows}, fh, indent=1, default=str)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
