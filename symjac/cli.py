"""The command line: ``python -m symjac demo``.

``demo`` compiles the Jacobian of a built-in mass-action kinetics model,
checks it against the complex step, times it against NumPy finite
differences, and prints the first lines of the generated kernel.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import symjac

__all__ = ["main", "demo_model"]

N_SPECIES, N_REACTIONS = 12, 20


def _network(seed=7):
    rng = np.random.default_rng(seed)
    reactants = [rng.choice(N_SPECIES, size=rng.integers(1, 3), replace=False) for _ in range(N_REACTIONS)]
    S = np.zeros((N_SPECIES, N_REACTIONS))
    for r, react in enumerate(reactants):
        S[react, r] -= 1.0
        S[rng.choice(N_SPECIES, size=rng.integers(1, 3), replace=False), r] += 1.0
    A = np.zeros((N_REACTIONS, 2), dtype=int)
    for r, react in enumerate(reactants):
        A[r, : len(react)] = react
        A[r, len(react):] = -1  # -1: no second reactant
    return S, A


S_MATRIX, REACTANTS = _network()


def demo_model(x, k):
    """Mass-action rates with temperature-dependent constants; works per
    sample (x: (12,), k: (20,)) and vectorized over leading batch axes."""
    temperature = x[..., -1:]
    first = x[..., REACTANTS[:, 0]]
    second = np.where(REACTANTS[:, 1] >= 0, x[..., np.maximum(REACTANTS[:, 1], 0)], 1.0)
    rates = k * np.exp(-1.5 / (0.5 + temperature * temperature)) * first * second
    return rates @ S_MATRIX.T


def _median_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def demo(batch=200_000, backend="auto"):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, size=(batch, N_SPECIES))
    k = rng.uniform(0.5, 2.0, size=N_REACTIONS)
    print(f"symjac {symjac.__version__} demo: Jacobian of a mass-action kinetics model "
          f"({N_SPECIES} species, {N_REACTIONS} reactions), batch of {batch:,} samples\n")

    t0 = time.perf_counter()
    jac = symjac.jacobian(demo_model, in_axes=(0, None), backend=backend)
    J = jac(x, k)
    first = time.perf_counter() - t0
    kernel = jac.kernel_for(x, k)
    s = kernel.stats
    print(f"backend                        {kernel.backend}")
    print(f"first call (trace+diff+codegen+first run)  {first:.2f} s")
    print(f"operations as expression trees {s['tree_ops']:>8,}   (no sharing)")
    print(f"operations after CSE/simplify  {s['dag_ops']:>8,}")
    print(f"estimated flops per sample     {s['flops_per_sample']:>8,}")
    print(f"Jacobian entries               {s['output_entries']:>8,}   ({s['structural_zeros']} structural zeros)")

    symjac.wait_compiled()  # a first call runs NumPy while Numba compiles in a child process
    jac(x, k, out=np.empty_like(J))  # the first call on Numba's machine code (loaded from the cache)
    print(f"Numba kernel running after       {time.perf_counter() - t0:.2f} s")

    err = 0.0
    for b in range(8):
        for j in range(N_SPECIES):
            xc = x[b].astype(complex)
            xc[j] += 1e-30j
            ref = demo_model(xc, k).imag / 1e-30
            err = max(err, float(np.max(np.abs(J[b, :, j] - ref) / np.maximum(1.0, np.abs(ref)))))
    print(f"max error vs complex step      {err:.1e}   (8 samples, all columns)")

    out = np.empty_like(J)
    t_sym = _median_time(lambda: jac(x, k, out=out))

    def finite_differences():
        h = 1e-6
        cols = []
        for j in range(N_SPECIES):
            e = np.zeros(N_SPECIES)
            e[j] = h
            cols.append((demo_model(x + e, k) - demo_model(x - e, k)) / (2 * h))
        return np.stack(cols, axis=-1)

    t_fd = _median_time(finite_differences, repeats=3)
    fd = finite_differences()
    print(f"symjac Jacobian                {1e3 * t_sym:8.1f} ms  ({batch / t_sym / 1e6:.1f} M samples/s)")
    print(f"NumPy central differences      {1e3 * t_fd:8.1f} ms  (max deviation {np.max(np.abs(fd - J)):.1e})")
    print(f"speed-up                       {t_fd / t_sym:8.1f}x\n")
    print("generated kernel (first lines):")
    lines = kernel.source.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("def ") or ln.startswith("@"))
    for ln in lines[start: start + 14]:
        print("   ", ln)
    print(f"    ... ({len(lines)} lines, {kernel.path})")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="symjac", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compile and time the built-in kinetics model's Jacobian")
    d.add_argument("--batch", type=int, default=200_000)
    d.add_argument("--backend", default="auto", choices=["auto", "numba", "numba-parallel", "numpy"])
    args = parser.parse_args(argv)
    if args.batch < 8:
        parser.error("--batch must be at least 8")
    return demo(args.batch, args.backend)


if __name__ == "__main__":
    sys.exit(main())
