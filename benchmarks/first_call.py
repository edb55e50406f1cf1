"""First call of a PINN training step, and what later calls cost when nothing should compile.

The step is `examples/pinn_poisson.py`'s ``loss_and_gradients``: a 2-16-16-1 tanh MLP on "CB" points,
the Poisson residual through ``symjac.dllaplacian``, the mean squared residual and its gradient with
respect to all five weight arrays by ``symjac.dlgradient``, all in one ``symjac.dlfeval`` (backend
``numba``).  Each symjac variant runs in a FRESH process with an empty ``SYMJAC_CACHE_DIR`` (imports
before the clock):

- first call: B = 256 points, trace + differentiate + lower + print + compile + first evaluation;
- per step: the median of warm calls at B = 256;
- new batch size: the first call at B = 4096 (a re-trace; counted: kernels compiled, must be 0);
- renamed function: the same step defined under another name (re-traced; compiled kernels: 0);
- re-created lambda: ``lambda *a: loss_and_gradients(*a)`` made anew on each of 5 calls (traces: 1 at most,
  compiled kernels: 0).

Variants: Numba compiled in a background process while the first calls run the NumPy tier (the
default; "Numba ready" is when the compile is done and its first call has run, and the per-step figure
is taken after it), and compiled in-process before the first call returns
(``SYMJAC_BACKGROUND_COMPILE=0``).  Peer (optional): JAX ``jit(value_and_grad)`` of the same loss,
the Laplacian as the trace of ``jax.hessian`` per point under ``vmap``, first call = compile + first run.

Run:  python -m benchmarks.first_call [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common

REPO_ROOT = common.REPO_ROOT
B0, B1 = 256, 4096


def _step_module():
    sys.path.insert(0, os.path.join(REPO_ROOT, "examples"))
    import pinn_poisson

    return pinn_poisson


def _child(tiered, repeats):
    import numba  # noqa: F401  (imports are not part of the first call)

    import symjac
    from codegen.backends import kernels_loaded
    from symjac import dl

    pp = _step_module()
    rng = np.random.default_rng(0)
    params = pp.init(rng)
    axes = (-1,) + (None,) * len(params)
    X0, X1 = rng.uniform(0, 1, (2, B0)), rng.uniform(0, 1, (2, B1))
    symjac.set_background_compile(bool(tiered))
    out = {}

    def call(fn, X):
        return symjac.dlfeval(fn, X, *params, batch_axis=axes, backend="numba")

    t = time.perf_counter()
    call(pp.loss_and_gradients, X0)
    out["first"] = time.perf_counter() - t
    symjac.wait_compiled()
    call(pp.loss_and_gradients, X0)
    out["ready"] = time.perf_counter() - t
    out["per_step"], _, _ = common.time_median(lambda: call(pp.loss_and_gradients, X0), repeats, warmup=1)
    k0 = kernels_loaded()
    t = time.perf_counter()
    call(pp.loss_and_gradients, X1)
    out["new_batch"], out["new_batch_compiles"] = time.perf_counter() - t, kernels_loaded() - k0

    ns = {}
    exec(compile("def renamed_step(X, W1, b1, W2, b2, w3):\n"  # the same body under another name
                 "    U = pp.u_model(X, W1, b1, W2, b2, w3)\n"
                 "    f = 2 * np.pi ** 2 * np.sin(np.pi * X[0]) * np.sin(np.pi * X[1])\n"
                 "    residual = symjac.dllaplacian(U, X, 0) + f\n"
                 "    loss = np.mean(residual ** 2)\n"
                 "    return (loss, *symjac.dlgradient(loss, W1, b1, W2, b2, w3))\n", "<renamed>", "exec"),
         {"pp": pp, "np": np, "symjac": symjac}, ns)
    k0 = kernels_loaded()
    t = time.perf_counter()
    call(ns["renamed_step"], X0)
    out["renamed"], out["renamed_compiles"] = time.perf_counter() - t, kernels_loaded() - k0

    k0, n0 = kernels_loaded(), len(dl._CACHE)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        call(lambda *a: pp.loss_and_gradients(*a), X0)  # noqa: E731  (a new lambda each step)
        times.append(time.perf_counter() - t)
    out["lambda_max"], out["lambda_traces"] = max(times), len(dl._CACHE) - n0
    out["lambda_compiles"] = kernels_loaded() - k0
    print("FIRST_CALL_JSON:" + json.dumps(out), flush=True)


def run_symjac(tiered, repeats, timeout=1800):
    env = dict(os.environ, SYMJAC_CACHE_DIR=tempfile.mkdtemp(prefix="symjac-first-"), SYMJAC_PROGRESS="0")
    cmd = [sys.executable, "-m", "benchmarks.first_call", "--child", str(int(tiered)), "--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("FIRST_CALL_JSON:"):
            return json.loads(line[len("FIRST_CALL_JSON:"):])
    return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}


def run_jax(repeats):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        return {"error": f"jax not importable: {e}"}
    pp = _step_module()
    rng = np.random.default_rng(0)
    params = [jnp.asarray(p) for p in pp.init(rng)]
    X0 = jnp.asarray(rng.uniform(0, 1, (2, B0)))

    def u(x, W1, b1, W2, b2, w3):  # one point
        h = jnp.tanh(W1 @ x + b1)
        h = jnp.tanh(W2 @ h + b2)
        return (w3 @ h)[0] * (x[0] * (1 - x[0]) * x[1] * (1 - x[1]))

    def loss(params, X):
        lap = jax.vmap(lambda x: jnp.trace(jax.hessian(u)(x, *params)), in_axes=1)(X)
        f = 2 * jnp.pi ** 2 * jnp.sin(jnp.pi * X[0]) * jnp.sin(jnp.pi * X[1])
        return jnp.mean((lap + f) ** 2)

    step = jax.jit(jax.value_and_grad(loss))
    t = time.perf_counter()
    jax.block_until_ready(step(params, X0))
    first = time.perf_counter() - t
    med, _, _ = common.time_median(lambda: jax.block_until_ready(step(params, X0)), repeats, warmup=1)
    X1 = jnp.asarray(rng.uniform(0, 1, (2, B1)))
    t = time.perf_counter()
    jax.block_until_ready(step(params, X1))
    return {"first": first, "ready": first, "per_step": med, "new_batch": time.perf_counter() - t}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the background-compile variant only, no JAX")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        _child(int(args.child), args.repeats)
        return 0
    common.setup_env()
    print("# first call of a PINN training step (examples/pinn_poisson.py), backend numba, fresh process")
    print(f"- machine: {common.machine_line()}")
    rows = {}
    variants = [("symjac, Numba in the background (default)", True)]
    variants += [] if args.quick else [("symjac, Numba in-process (SYMJAC_BACKGROUND_COMPILE=0)", False)]
    for label, tiered in variants:
        print(f"  running {label} ...", flush=True)
        rows[label] = run_symjac(tiered, args.repeats)
    if not args.quick:
        print("  running jax ...", flush=True)
        rows["jax jit(value_and_grad), trace(hessian)"] = run_jax(args.repeats)
    print()
    print("| method | first call (B=256) | Numba ready | per step | new batch (B=4096) | renamed fn "
          "| re-created lambda (max of 5) |")
    print("|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        if "error" in r:
            print(f"| {label} | error: {r['error']} | | | | | |")
            continue

        def cell(key, compiles=None, traces=None):
            if key not in r:
                return "-"
            extra = []
            if compiles and compiles in r:
                extra.append(f"{r[compiles]} compiled")
            if traces and traces in r:
                extra.append(f"{r[traces]} traced")
            return f"{r[key]:.3f} s" + (f" ({', '.join(extra)})" if extra else "")

        print(f"| {label} | {r['first']:.2f} s | {r['ready']:.2f} s | {r['per_step'] * 1e3:.3f} ms | "
              f"{cell('new_batch', 'new_batch_compiles')} | {cell('renamed', 'renamed_compiles')} | "
              f"{cell('lambda_max', 'lambda_compiles', 'lambda_traces')} |")
    common.write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
