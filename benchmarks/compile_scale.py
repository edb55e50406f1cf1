"""How the first call grows with the model: per-stage time and peak memory of scalar chains.

Model: a chain of N steps ``y = sin(y) * 0.5 + x[i % 4] * c_i`` on 4 inputs (3 operations a step), and its
Jacobian.  Each size runs in a FRESH process with an empty ``SYMJAC_CACHE_DIR``; the stages are the ones
`symjac.progress` reports (read from its log records, threshold 0): trace + differentiate, lower, print,
compile + first run; peak RSS of the process.

- graph core: ``symjac.jacobian(chain, backend="numpy")``, N = 10^3, 10^4, 10^5 and 333,334 (10^6
  operations; ``--quick``: 10^3, 10^4);
- Numba compile: ``symjac.compile(chain, backend="numba")`` (the value only), N = 200, 1000, 2000
  (about 1,000, 5,000 and 10,000 statements; ``--quick``: 200, 1000); seconds a statement of the compile;
- kinetics size: the kinetics benchmark's mass-action network (``benchmarks.kinetics.make_network``) at N
  species and 8N/3 reactions, ``symjac.jacobian(rhs, 0, sparse=True, backend="numba")`` at B = 256,
  N = 30, 100, 300 (``--quick``: 30, 100);
- MLP depth and width: ``benchmarks/mlp_compile.py`` (the PINN kernel of a 3 -> W x L -> 1 MLP).

- first calls on the reference problems (``--problems``; also in the full run): each problem's symjac
  method and JAX in fresh processes (``python -m benchmarks.<problem> --first-call KEY``): symjac with
  Numba compiled in the background (the default: the first call runs the NumPy tier; "Numba ready" is
  when the compile is done and the Numba kernel has run once) and in-process
  (``SYMJAC_BACKGROUND_COMPILE=0``), JAX ``jit`` (compile + first run). symjac's benchmark setups make
  their first call themselves: its end is symjac's first call (the harness's run after it would be a
  second call, which in the background variant runs the NumPy tier again).

Run:  python -m benchmarks.compile_scale [--quick] [--problems] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks import common

REPO_ROOT = common.REPO_ROOT


def _child(kind, n):
    import logging
    import resource

    import numpy as np

    import symjac
    from symjac import progress

    stages = []

    class Grab(logging.Handler):
        def emit(self, record):
            if record.msg.startswith("  ") and isinstance(record.args, tuple) and len(record.args) == 3 \
                    and isinstance(record.args[1], float):
                stages.append((record.args[0].strip(), record.args[1]))

    logger = logging.getLogger("symjac")
    logger.addHandler(Grab())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    progress.THRESHOLD = 0.0
    symjac.set_progress(True)

    def chain(x):
        y = x[0]
        for i in range(n):
            y = np.sin(y) * 0.5 + x[i % 4] * (0.1 + i * 1e-4)
        return y

    X = np.random.default_rng(0).random((8, 4))
    if kind == "kinetics":  # the kinetics benchmark's network at n species, 8n/3 reactions: sparse Jacobian
        from benchmarks.kinetics import make_network

        net = make_network(seed=15, ns=n, nr=(8 * n) // 3)
        S, ia, ib = net.S, net.ia, net.ib

        def rhs(x, k):
            xp = np.concatenate([x, np.ones(1)])
            return S @ (k * xp[ia] * xp[ib])

        rng = np.random.default_rng(1)
        J = symjac.jacobian(rhs, 0, sparse=True, backend="numba")
        args = (rng.uniform(0.1, 2.0, (256, n)), rng.uniform(0.1, 10.0, (256, net.nr)))
        J(*args)
        statements = J.kernel_for(*args).stats["statements"]
    elif kind == "core":
        k = symjac.jacobian(chain, backend="numpy")
        k(X)
        statements = k.kernel_for(X).stats["statements"]
    else:
        k = symjac.compile(chain, backend="numba")
        k(X)
        statements = k.stats["statements"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("SCALE_JSON:" + json.dumps({"kind": kind, "n": n, "statements": statements, "stages": stages,
                                      "peak_rss_mb": rss}), flush=True)


def run(kind, n, timeout=1800):
    env = dict(os.environ, SYMJAC_CACHE_DIR=tempfile.mkdtemp(prefix="symjac-scale-"))
    cmd = [sys.executable, "-m", "benchmarks.compile_scale", "--child", kind, str(n)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "n": n, "error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("SCALE_JSON:"):
            return json.loads(line[len("SCALE_JSON:"):])
    return {"kind": kind, "n": n, "error": " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])}


# (problem module, symjac method, JAX method, batch)
PROBLEMS = [("kinetics", "symjac-dense", "jax", 100_000), ("arm", "symjac-dense", "jax", 100_000),
            ("pinn", "symjac", "jax-hessian", 100_000), ("seedcnn", "symjac", "jax-jacrev", 128)]


def reference_first_calls():
    rows = []
    for mod, sj, jx, B in PROBLEMS:
        r = {"problem": mod, "B": B}
        for label, key, env in (("background", sj, {"SYMJAC_BACKGROUND_COMPILE": "1"}),
                                ("in-process", sj, {"SYMJAC_BACKGROUND_COMPILE": "0"}), ("jax", jx, {})):
            print(f"  {mod} {label} ...", flush=True)
            r[label] = common._first_call_subprocess(f"benchmarks.{mod}", key, B, 900, env, full=True)
        rows.append(r)
    print()
    print("| problem | B | symjac first call (Numba in the background) | Numba ready | symjac first call "
          "(in-process compile) | JAX jit first call |")
    print("|---|---|---|---|---|---|")

    def cell(d, key="seconds"):
        return f"{d[key]:.2f} s" if d.get(key) is not None else f"({d.get('error', '-')})"

    for r in rows:  # symjac: the setup's own first call (the harness's second call would be a second one)
        print(f"| {r['problem']} | {r['B']} | {cell(r['background'], 'setup')} | {cell(r['background'], 'ready')} | "
              f"{cell(r['in-process'], 'setup')} | {cell(r['jax'])} |")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--problems", action="store_true", help="only the first calls on the reference problems")
    p.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return 0
    common.setup_env()
    if args.problems:
        print("# first calls on the reference problems, fresh process each")
        print(f"- machine: {common.machine_line()}")
        common.write_json(args.json, reference_first_calls())
        return 0
    core = [1000, 10_000] + ([] if args.quick else [100_000, 333_334])  # the last: 10^6 operations
    numba_sizes = [200, 1000] + ([] if args.quick else [2000])
    species = [30, 100] + ([] if args.quick else [300])
    print("# compile scale: scalar chains y = sin(y) * 0.5 + x[i % 4] * c_i, fresh process each")
    print(f"- machine: {common.machine_line()}")
    rows = [run("core", n) for n in core] + [run("numba", n) for n in numba_sizes] + [run("kinetics", n) for n in species]
    names = ["trace, differentiate", "lower", "print", "compile, first run"]
    print()
    print("| what | N | statements | " + " | ".join(names) + " | total | per statement | peak RSS |")
    print("|---|---|---|" + "---|" * (len(names) + 3))
    for r in rows:
        if "error" in r:
            print(f"| {r['kind']} | {r['n']} | error: {r['error']} |")
            continue
        st = dict(r["stages"])
        total = sum(st.get(k, 0.0) for k in names)
        per = total / r["statements"] if r["statements"] else float("nan")
        cells = " | ".join(f"{st[k]:.2f} s" if k in st else "-" for k in names)
        what = {"core": "jacobian, numpy", "numba": "compile, numba", "kinetics": "kinetics species, sparse, numba"}
        print(f"| {what[r['kind']]} | {r['n']} | {r['statements']} | "
              f"{cells} | {total:.2f} s | {per * 1e6:.0f} us | {r['peak_rss_mb']:.0f} MB |")
    if not args.quick:
        print()
        rows = {"chains": rows, "problems": reference_first_calls()}
    common.write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
