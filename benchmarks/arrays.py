"""Array-program benchmark: Jacobians of NumPy array models (batch of ONE sample; kinetics300: B).

Problems (the input is ``x`` of shape ``(1, n)``, float64 throughout; kinetics300: ``(B, n)``, ``(B, nr)``):

- ``bruss1d``: 1-D Brusselator (Hairer & Wanner), N grid points, 2N states
  ``y = [u, v]``, Dirichlet boundaries u = 1, v = 3; A = 1, B = 3,
  alpha = 1/50**2 (fixed, independent of N).  Sizes N = 500 and N = 100000
  (``--quick``: N = 500 only).  Sparse Jacobian (8N - 4 structural nonzeros).
- ``bruss2d``: 2-D Brusselator on a 128 x 128 periodic grid, u, v each
  (128, 128), ``y = [u.ravel(), v.ravel()]`` (32768 states), 5-point
  Laplacian with ``np.roll`` along both axes; A = 1, B = 3.4, alpha = 0.1.
  Sparse Jacobian (12 * 128**2 structural nonzeros).
- ``gauss``: least-squares residual of a sum of three Gaussians on 200 fixed
  points ``t = linspace(0, 10, 200)`` with fixed (seeded) data ``d``;
  parameters ``p`` (9,) = (a_k, mu_k, s_k); dense 200 x 9 Jacobian.
- ``kinetics300``: the mass-action model of ``benchmarks.kinetics`` (same
  ``make_network`` generator, default seed) scaled to 300 species / 1000
  reactions, ``rhs(x, k)``, batch B = 256 (``--quick``: 32) with x (B, 300)
  ~ U(0.1, 2), k (B, 1000) ~ U(0.1, 10), both batched; sparse d rhs / d x
  (300 x 300).  The symjac pattern is checked against ``net.pattern``.  Peers:
  numpy-hand (gather-multiply + sparse scatter matrix) and symengine-llvm
  (the nonzeros differentiated symbolically, Lambdify on the stacked (B, 1300)
  input); all B samples are cross-checked against symengine (the error column
  is sample 0 vs the complex step).  No JAX peer.

Methods:

- ``symjac``: ``symjac.jacobian(f, sparse=True)`` (bruss) or ``symjac.jacobian(f)``
  (gauss).  Run in a FRESH subprocess with an empty ``SYMJAC_CACHE_DIR``:
  first call = construction + first evaluation (imports done before the
  clock starts); the per-call median is measured in the same child right
  after (``out=`` preallocated), and its values are handed back (npz) for the
  error check and for the other methods' sparsity pattern.  The subprocess
  has a timeout (``--timeout``), so a slow/failing symjac does not stop the run.
- ``numpy-hand``: hand-written vectorised NumPy formulas for the nonzeros,
  written into a preallocated ``(1, nnz)`` buffer in symjac's CSR order
  (index plans precomputed once, not timed per call; of two plans, strided
  slice writes per block or one natural-order buffer + ``np.take``, the faster
  is used); dense ``(1, 200, 9)`` for gauss.
- ``jax-compressed`` (bruss): greedy distance-1 column colouring of the
  known pattern (computed once, untimed), seed matrix ``S`` (n x C),
  ``jit(vmap(jvp))`` over the C seeds, gather ``Jc[color[cols], rows]``
  inside the jit.  First call = jit compile + first evaluation (in-process).
- ``jax-jit-jacfwd`` (gauss): ``jax.jit(jax.vmap(jax.jacfwd(f)))`` on (1, 9).
- ``symengine`` (gauss, kinetics300, optional): ``Lambdify`` of the 200 x 9 Jacobian (or the kinetics nonzeros),
  ``backend='llvm'``, ``cse=True``, ``out=`` preallocated.

Reference for the error column: complex step (h = 1e-30), dense over all
columns for bruss1d N = 500 and gauss; for larger bruss problems a
compressed complex step with the colouring of the analytic pattern (exact to
rounding as long as the analytic pattern is a superset of the true one).
Errors are computed on the union of the patterns (an entry a method misses
counts with its full value).

ratio = method median / symjac median (> 1: symjac faster).  First calls of
methods other than symjac are in-process (marked ``*``).

Run:  python -m benchmarks.arrays [--quick] [--repeats N] [--only bruss1d,bruss2d,gauss,kinetics300] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common
from benchmarks.common import LoadMonitor, time_median

common.setup_env()  # fresh SYMJAC_CACHE_DIR, JAX x64/cpu, before symjac or jax is imported

REPO_ROOT = common.REPO_ROOT
H_CS = 1e-30  # complex-step size


# -- problems -------------------------------------------------------------------

def make_bruss1d(N):
    A, B, alpha = 1.0, 3.0, 1.0 / 50**2

    def bruss(y):
        u, v = y[:N], y[N:]
        lap_u = np.concatenate([[1.0 - 2 * u[0] + u[1]], u[:-2] - 2 * u[1:-1] + u[2:], [u[-2] - 2 * u[-1] + 1.0]])
        lap_v = np.concatenate([[3.0 - 2 * v[0] + v[1]], v[:-2] - 2 * v[1:-1] + v[2:], [v[-2] - 2 * v[-1] + 3.0]])
        du = A + u * u * v - (B + 1) * u + alpha * lap_u
        dv = B * u - u * u * v + alpha * lap_v
        return np.concatenate([du, dv])

    def make_jax():
        import jax.numpy as jnp

        def bruss_jax(y):
            u, v = y[:N], y[N:]
            lap_u = jnp.concatenate([jnp.array([1.0]) - 2 * u[:1] + u[1:2], u[:-2] - 2 * u[1:-1] + u[2:],
                                     u[-2:-1] - 2 * u[-1:] + 1.0])
            lap_v = jnp.concatenate([jnp.array([3.0]) - 2 * v[:1] + v[1:2], v[:-2] - 2 * v[1:-1] + v[2:],
                                     v[-2:-1] - 2 * v[-1:] + 3.0])
            du = A + u * u * v - (B + 1) * u + alpha * lap_u
            dv = B * u - u * u * v + alpha * lap_v
            return jnp.concatenate([du, dv])
        return bruss_jax

    def blocks():
        """(rows, cols, value(u, v)) for every group of structural nonzeros."""
        i = np.arange(N)
        lo, hi = i[1:], i[:-1]
        return [
            (i, i, lambda u, v, uu, uv2: uv2 - (B + 1) - 2 * alpha),
            (lo, lo - 1, lambda u, v, uu, uv2: alpha),
            (hi, hi + 1, lambda u, v, uu, uv2: alpha),
            (i, N + i, lambda u, v, uu, uv2: uu),
            (N + i, i, lambda u, v, uu, uv2: B - uv2),
            (N + i, N + i, lambda u, v, uu, uv2: -uu - 2 * alpha),
            (N + lo, N + lo - 1, lambda u, v, uu, uv2: alpha),
            (N + hi, N + hi + 1, lambda u, v, uu, uv2: alpha),
        ]

    rng = np.random.default_rng(N)
    grid = np.arange(1, N + 1) / (N + 1)
    u0 = 1.0 + 0.5 * np.sin(2 * np.pi * grid) + 0.1 * rng.random(N)
    v0 = 3.0 + 0.1 * rng.random(N)
    x = np.concatenate([u0, v0])[None, :].copy()
    return SimpleNamespace(name="bruss1d", label=f"bruss1d N={N}", f=bruss, make_jax=make_jax, blocks=blocks,
                           x=x, n=2 * N, m=2 * N, out_shape=(2 * N,), sparse=True,
                           split=lambda y: (y[:N], y[N:]), full_ref=(N <= 1000),
                           desc=f"1-D Brusselator, N={N} (n = m = {2 * N}), A=1, B=3, alpha=1/50**2")


def make_bruss2d(M=128):
    A, B, alpha = 1.0, 3.4, 0.1
    K = M * M

    def lap(w, roll):
        return roll(w, 1, 0) + roll(w, -1, 0) + roll(w, 1, 1) + roll(w, -1, 1) - 4 * w

    def bruss2d(y, xp=np):  # one body for NumPy (symjac traces it) and jax.numpy
        u = y[:K].reshape(M, M)
        v = y[K:].reshape(M, M)
        du = A + u * u * v - (B + 1) * u + alpha * lap(u, xp.roll)
        dv = B * u - u * u * v + alpha * lap(v, xp.roll)
        return xp.concatenate([du.ravel(), dv.ravel()])

    def make_jax():
        import jax.numpy as jnp

        return lambda y: bruss2d(y, jnp)

    def blocks():
        idx = np.arange(K).reshape(M, M)
        k = idx.ravel()
        nbs = [np.roll(idx, s, a).ravel() for a in (0, 1) for s in (1, -1)]
        out = [(k, k, lambda u, v, uu, uv2: uv2 - (B + 1) - 4 * alpha),
               (k, K + k, lambda u, v, uu, uv2: uu),
               (K + k, k, lambda u, v, uu, uv2: B - uv2),
               (K + k, K + k, lambda u, v, uu, uv2: -uu - 4 * alpha)]
        for nb in nbs:
            out.append((k, nb, lambda u, v, uu, uv2: alpha))
            out.append((K + k, K + nb, lambda u, v, uu, uv2: alpha))
        return out

    rng = np.random.default_rng(2)
    x = np.concatenate([1.0 + 0.5 * rng.random(K), 3.0 + 0.5 * rng.random(K)])[None, :].copy()
    return SimpleNamespace(name="bruss2d", label=f"bruss2d {M}x{M}", f=bruss2d, make_jax=make_jax, blocks=blocks,
                           x=x, n=2 * K, m=2 * K, out_shape=(2 * K,), sparse=True,
                           split=lambda y: (y[:K], y[K:]), full_ref=False,
                           desc=f"2-D Brusselator, {M}x{M} periodic (n = m = {2 * K}), A=1, B=3.4, alpha=0.1, np.roll")


def make_gauss(npts=200):
    t = np.linspace(0.0, 10.0, npts)
    p_true = np.array([1.0, 2.0, 0.7, 0.6, 5.0, 1.1, 0.8, 7.5, 0.5])
    rng = np.random.default_rng(7)

    def model(p, exp=np.exp):
        s = 0.0
        for k in range(3):
            s = s + p[3 * k] * exp(-(t - p[3 * k + 1]) ** 2 / (2 * p[3 * k + 2] ** 2))
        return s

    d = model(p_true) + 0.05 * rng.standard_normal(npts)

    def gauss(p):
        r = 0.0
        for k in range(3):
            r = r + p[3 * k] * np.exp(-(t - p[3 * k + 1]) ** 2 / (2 * p[3 * k + 2] ** 2))
        return r - d

    def make_jax():
        import jax.numpy as jnp
        tj, dj = jnp.asarray(t), jnp.asarray(d)

        def gauss_jax(p):
            r = 0.0
            for k in range(3):
                r = r + p[3 * k] * jnp.exp(-(tj - p[3 * k + 1]) ** 2 / (2 * p[3 * k + 2] ** 2))
            return r - dj
        return gauss_jax

    x = (p_true * (1.0 + 0.05 * rng.standard_normal(9)))[None, :].copy()
    return SimpleNamespace(name="gauss", label=f"gauss {npts}x9", f=gauss, make_jax=make_jax, t=t, d=d,
                           x=x, n=9, m=npts, out_shape=(npts,), sparse=False, full_ref=True,
                           desc=f"sum of 3 Gaussians residual, {npts} points, 9 parameters, dense {npts}x9")


def make_kinetics300(B=256, ns=300, nr=1000):
    from benchmarks import kinetics  # same generator and model as the kinetics benchmark

    net = kinetics.make_network(ns=ns, nr=nr)  # default seed
    rng = np.random.default_rng(1234)
    X = rng.uniform(0.1, 2.0, (B, ns))
    K = rng.uniform(0.1, 10.0, (B, nr))
    S, ia, ib = net.S, net.ia, net.ib

    def rhs(x, k):
        xp = np.concatenate([x, np.ones(1)])
        rates = k * xp[ia] * xp[ib]
        return S @ rates

    return SimpleNamespace(name="kinetics300", label=f"kinetics300 B={B}", f=rhs, f0=lambda y: rhs(y, K[0]),
                           args=(X, K), x=X, K=K, B=B, net=net, n=ns, m=ns, out_shape=(ns,), sparse=True,
                           full_ref=True, rhs_scalar=kinetics.rhs_scalar,
                           desc=f"mass-action kinetics, {ns} species / {nr} reactions (benchmarks.kinetics "
                                f"generator, seed {kinetics.SEED}), batch {B}, x and k batched, d rhs / d x")


def make_problem(key):
    name, _, size = key.partition(":")
    if name == "kinetics300":
        return make_kinetics300(int(size or 256))
    if name == "bruss1d":
        return make_bruss1d(int(size))
    if name == "bruss2d":
        return make_bruss2d(int(size or 128))
    if name == "gauss":
        return make_gauss(int(size or 200))
    raise ValueError(f"unknown problem {key!r}")


# -- reference (complex step) ---------------------------------------------------------

def greedy_colouring(pat):
    """Greedy distance-1 column colouring of a scipy CSR pattern (columns sharing
    a row differ): the one symjac uses for its compressed fallback, untimed
    setup for the compressed-JAX peer and the compressed complex step."""
    from symjac.ad.pattern import color_columns

    return color_columns(pat)[0]


def analytic_pattern(prob):
    """(rows, cols) of the hand-derived structural nonzeros, sorted row-major (CSR order)."""
    if getattr(prob, "net", None) is not None:  # kinetics: the pattern make_network derives
        return tuple(a.astype(np.int64) for a in np.nonzero(prob.net.pattern))
    bl = prob.blocks()
    rows = np.concatenate([np.asarray(r) for r, _, _ in bl])
    cols = np.concatenate([np.asarray(c) for _, c, _ in bl])
    order = np.lexsort((cols, rows))
    return rows[order], cols[order]


def reference(prob):
    """Complex-step reference Jacobian of sample 0: dense (m, n) ndarray or scipy CSR."""
    from scipy import sparse
    y = prob.x[0]
    f = getattr(prob, "f0", prob.f)  # sample 0 as a function of its first argument only
    if prob.full_ref:
        J = np.empty((prob.m, prob.n))
        for j in range(prob.n):
            yc = y.astype(np.complex128)
            yc[j] += 1j * H_CS
            J[:, j] = np.imag(f(yc)) / H_CS
        how = f"complex step, all {prob.n} columns"
        return (sparse.csr_matrix(J) if prob.sparse else J), how
    rows, cols = analytic_pattern(prob)
    pat = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(prob.m, prob.n))
    color = greedy_colouring(pat)
    C = int(color.max()) + 1
    Jc = np.empty((C, prob.m))
    for c in range(C):
        yc = y + 1j * H_CS * (color == c)
        Jc[c] = np.imag(f(yc)) / H_CS
    vals = Jc[color[cols], rows]
    how = f"compressed complex step, analytic pattern, {C} colours"
    return sparse.csr_matrix((vals, (rows, cols)), shape=(prob.m, prob.n)), how


def max_err(result, ref):
    """Max abs error of a method's result (dense array or (rows, cols, values)) vs the reference."""
    from scipy import sparse
    if isinstance(result, tuple):
        rows, cols, vals = result
        M = sparse.csr_matrix((np.asarray(vals, np.float64), (rows, cols)), shape=ref.shape)
        D = (M - ref).tocsr()
        if not np.all(np.isfinite(vals)):
            return float("inf")
        return float(np.max(np.abs(D.data))) if D.nnz else 0.0
    res = np.asarray(result, np.float64).reshape(ref.shape)
    if not np.all(np.isfinite(res)):
        return float("inf")
    return float(np.max(np.abs(res - ref)))


def problem_args(prob):
    """The batched arguments every method is called with: (x,) or, for kinetics, (X, K)."""
    return getattr(prob, "args", (prob.x,))


# -- symjac (fresh subprocess) ------------------------------------------------------------

def _symjac_child(key, outdir, repeats):
    """Runs in a fresh process: first call (construct + first eval), then the per-call median."""
    out = {}
    try:
        import numba  # noqa: F401  (imports are not part of the first call)
        import symjac
        prob = make_problem(key)
        args = problem_args(prob)
        t0 = time.perf_counter()
        J = symjac.jacobian(prob.f, sparse=prob.sparse)
        r = J(*args)
        out["first"] = time.perf_counter() - t0
        if prob.sparse:
            buf = r.values
            np.savez(os.path.join(outdir, "symjac.npz"), values=r.values, rows=r.rows, cols=r.cols)
            out["nnz"] = int(r.nnz)
        else:
            buf = r
            np.savez(os.path.join(outdir, "symjac.npz"), dense=np.asarray(r))
        try:
            kern = J.kernel_for(*args)
            out["backend"] = getattr(kern, "backend", None)
            st = kern.stats
            out["stats"] = {k: st[k] for k in ("dag_ops", "tree_ops", "flops_per_sample",
                                                "output_entries", "structural_zeros") if k in st}
            if not prob.sparse and "output_entries" in st:
                out["nnz"] = int(st["output_entries"] - st.get("structural_zeros", 0))
        except Exception as e:  # noqa: BLE001
            out["stats_error"] = f"{type(e).__name__}: {e}"
        mon = LoadMonitor()
        med, mn, times = time_median(lambda: J(*args, out=buf), repeats, warmup=1)
        out.update(median=med, min=mn, ncalls=len(times), bg_load=mon.cores())
    except Exception as e:  # noqa: BLE001  (report, do not crash the parent)
        tb = traceback.format_exc().strip().splitlines()
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback_tail"] = tb[-6:]
    print("SYMJAC_JSON:" + json.dumps(out, default=str), flush=True)


def run_symjac(key, repeats, timeout):
    """Returns (info dict, npz data or None)."""
    outdir = tempfile.mkdtemp(prefix="symjac-arrays-")
    cmd = [sys.executable, "-m", "benchmarks.arrays", "--symjac-child", key, "--outdir", outdir,
           "--repeats", str(repeats)]
    env = dict(os.environ)
    env.pop("SYMJAC_CACHE_DIR", None)  # the child's setup_env() makes a new empty one
    try:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s (fresh subprocess; killed)"}, None
        wall = time.perf_counter() - t0
        info = None
        for line in proc.stdout.splitlines():
            if line.startswith("SYMJAC_JSON:"):
                info = json.loads(line[len("SYMJAC_JSON:"):])
        if info is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-4:]
            return {"error": f"child exited rc={proc.returncode}: " + " | ".join(tail)}, None
        info["child_wall"] = wall
        data = None
        path = os.path.join(outdir, "symjac.npz")
        if os.path.exists(path):
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
        return info, data
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


# -- numpy by hand ---------------------------------------------------------------------------

def _runs(pos):
    """Split positions into maximal arithmetic runs: list of (src_start, src_stop, dst_start, step)."""
    L = len(pos)
    if L == 0:
        return []
    if L == 1:
        return [(0, 1, int(pos[0]), 1)]
    d = np.diff(pos)
    runs, s = [], 0
    while s < L:
        if s == L - 1:
            runs.append((s, s + 1, int(pos[s]), 1))
            break
        step = d[s]
        # extend while the step stays the same
        brk = np.flatnonzero(d[s:] != step)
        e = s + (int(brk[0]) if len(brk) else L - 1 - s) + 1  # run covers pos[s:e]
        if step <= 0:  # only positive-step slices
            runs.append((s, s + 1, int(pos[s]), 1))
            s += 1
            continue
        runs.append((s, e, int(pos[s]), int(step)))
        s = e
    return runs


def hand_sparse(prob, rows_t, cols_t):
    """Hand-written NumPy nonzeros in the order (rows_t, cols_t).  Returns (run, values_buf, note)."""
    n = prob.n
    bl = prob.blocks()
    keys_t = rows_t.astype(np.int64) * n + cols_t.astype(np.int64)
    order_t = np.argsort(keys_t, kind="stable")
    sorted_t = keys_t[order_t]
    nnz = len(rows_t)
    values = np.zeros((1, nnz))
    vflat = values[0]
    lens = [len(np.asarray(r)) for r, _, _ in bl]
    offs = np.concatenate([[0], np.cumsum(lens)])
    # position in the target of each natural entry (-1: not in the target pattern)
    dst = []
    for (r, c, _), L in zip(bl, lens):
        k = np.asarray(r, np.int64) * n + np.asarray(c, np.int64)
        i = np.searchsorted(sorted_t, k)
        i = np.minimum(i, nnz - 1)
        found = sorted_t[i] == k
        dst.append(np.where(found, order_t[i], -1))
    covered = np.zeros(nnz, bool)
    for p in dst:
        covered[p[p >= 0]] = True
    dropped = int(sum((p < 0).sum() for p in dst))
    extra = int((~covered).sum())  # target entries the hand formulas do not produce: stay 0
    fns = [fn for _, _, fn in bl]
    split = prob.split

    # plan A: strided slice writes per block (only entries in the target)
    plan_a = []
    for b, p in enumerate(dst):
        keep = np.flatnonzero(p >= 0)
        if len(keep) == len(p):
            sub = None
            runs = _runs(p)
        else:
            sub = keep
            runs = _runs(p[keep])
        plan_a.append((sub, runs))
    nruns = sum(len(r) for _, r in plan_a)

    def run_a(x):
        u, v = split(x[0])
        uu = u * u
        uv2 = 2.0 * u * v
        for fn, (sub, runs) in zip(fns, plan_a):
            val = fn(u, v, uu, uv2)
            scalar = np.ndim(val) == 0
            if sub is not None and not scalar:
                val = val[sub]
            for s0, s1, d0, step in runs:
                vflat[d0:d0 + (s1 - s0) * step:step] = val if scalar else val[s0:s1]
        return values

    # plan B: natural-order buffer of contiguous block slices, then one np.take
    nat = np.zeros(int(offs[-1]) + 1)  # last slot: 0 for target entries the formulas lack
    perm = np.full(nnz, len(nat) - 1, np.int64)
    for b, p in enumerate(dst):
        keep = p >= 0
        perm[p[keep]] = offs[b] + np.flatnonzero(keep)

    def run_b(x):
        u, v = split(x[0])
        uu = u * u
        uv2 = 2.0 * u * v
        for b, fn in enumerate(fns):
            nat[offs[b]:offs[b + 1]] = fn(u, v, uu, uv2)
        np.take(nat, perm, out=vflat)
        return values

    x = prob.x
    ta = time_median(lambda: run_a(x), 3, min_total=0.1, max_repeats=50)[0] if nruns <= 4096 else np.inf
    tb = time_median(lambda: run_b(x), 3, min_total=0.1, max_repeats=50)[0]
    if ta <= tb:
        run, note = run_a, f"slice plan ({nruns} strided runs; take plan {common._fmt_time(tb)})"
    else:
        run, note = run_b, f"np.take plan (slice plan: {nruns} runs, {common._fmt_time(ta)})"
    if dropped or extra:
        note += f"; hand pattern vs target: {dropped} hand entries not in target, {extra} target entries left 0"
    return run, values, note


def hand_gauss(prob):
    t = prob.t
    out = np.empty((1, prob.m, 9))
    J = out[0]

    def run(x):
        p = x[0]
        for k in range(3):
            a, mu, s = p[3 * k], p[3 * k + 1], p[3 * k + 2]
            dt = t - mu
            e = np.exp(-dt * dt / (2.0 * s * s))
            ae = a * e / (s * s)
            J[:, 3 * k] = e
            J[:, 3 * k + 1] = ae * dt
            J[:, 3 * k + 2] = ae * dt * dt / s
        return out
    return run, out


def hand_kinetics(prob, rows_t, cols_t):
    """Vectorised NumPy nonzeros of d rhs / d x for all B samples, in the order (rows_t, cols_t).

    rate_r = k_r * xp[a] * xp[b] (xp = [x, 1]): d rate_r / d x_a = k_r * xp[b] (and the same
    with a, b swapped).  The (reaction, reactant) derivatives are evaluated as one (B, nd)
    gather-multiply, then scattered with the stoichiometric coefficients into the nnz slots
    by a precomputed sparse (nnz, nd) matrix, in the (., B) layout (row gathers and the
    sparse product are fast there) and transposed once into the (B, nnz) result."""
    from scipy import sparse
    net = prob.net
    slot = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(rows_t, cols_t))}
    dk, dother, trow, tcol, tval = [], [], [], [], []
    dropped = 0
    for r, (reac, prod) in enumerate(zip(net.reac, net.prod)):
        for a, j in enumerate(reac):
            d = len(dk)
            dk.append(r)
            dother.append(reac[1 - a] if len(reac) == 2 else net.ns)
            for i, coef in [(i, -1.0) for i in reac] + [(i, 1.0) for i in prod]:
                if (i, j) not in slot:
                    dropped += 1
                    continue
                trow.append(d)
                tcol.append(slot[(i, j)])
                tval.append(coef)
    AT = sparse.csr_matrix((tval, (tcol, trow)), shape=(len(rows_t), len(dk)))  # duplicates summed
    dk, dother = np.array(dk), np.array(dother)
    X, K = problem_args(prob)
    xpT = np.ones((net.ns + 1, X.shape[0]))
    values = np.empty((X.shape[0], len(rows_t)))

    def run(X, K):
        xpT[:-1] = X.T
        values[...] = (AT @ (np.ascontiguousarray(K.T)[dk] * xpT[dother])).T
        return values

    note = (f"sparse (nnz, {len(dk)}) scatter matrix @ {len(dk)} (reaction, reactant) derivatives, "
            "(., B) layout, transposes timed")
    if dropped:
        note += f"; {dropped} hand terms not in the target pattern"
    return run, values, note


def symengine_jacobian(prob, se, rows_t, cols_t):
    """(symbols, nonzero expressions, input array) for symengine.Lambdify: gauss (one sample,
    dense 200 x 9) or kinetics (the nonzeros at (rows_t, cols_t), all B samples stacked)."""
    if prob.name == "gauss":
        p = se.symbols("p0:9")
        res_exprs = []
        for ti, di in zip(prob.t, prob.d):
            r = 0
            for k in range(3):
                r = r + p[3 * k] * se.exp(-(float(ti) - p[3 * k + 1]) ** 2 / (2 * p[3 * k + 2] ** 2))
            res_exprs.append(r - float(di))
        return list(p), [se.diff(e, q) for e in res_exprs for q in p], np.ascontiguousarray(prob.x[0])
    # Not x0, x1, ...: Lambdify(cse=True) names its temporaries x0, x1, ... and mixes them up
    # with user symbols of the same names (see benchmarks/kinetics.py).
    xs = [se.Symbol(f"conc{i}") for i in range(prob.net.ns)]
    ks = [se.Symbol(f"rate{r}") for r in range(prob.net.nr)]
    dx = prob.rhs_scalar(xs, ks, prob.net)
    exprs = [se.diff(dx[i], xs[j]) for i, j in zip(rows_t, cols_t)]
    return xs + ks, exprs, np.ascontiguousarray(np.hstack(problem_args(prob)))


# -- JAX -------------------------------------------------------------------------------------

def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    return jax


def jax_compressed(prob, rows_t, cols_t):
    """Returns (build(), colours): build() -> (call(xj), xj) with the jit traced lazily."""
    from scipy import sparse
    pat = sparse.csr_matrix((np.ones(len(rows_t)), (rows_t, cols_t)), shape=(prob.m, prob.n))
    color = greedy_colouring(pat)
    C = int(color.max()) + 1
    S = np.zeros((C, prob.n))
    S[color, np.arange(prob.n)] = 1.0
    gather_c = color[cols_t]

    def build():
        jax = _jax()
        import jax.numpy as jnp
        f = prob.make_jax()
        Sj = jnp.asarray(S)
        gc, gr = jnp.asarray(gather_c), jnp.asarray(rows_t)

        @jax.jit
        def jac(x):
            y = x[0]
            Jc = jax.vmap(lambda s: jax.jvp(f, (y,), (s,))[1])(Sj)  # (C, m)
            return Jc[gc, gr][None, :]
        return jac, jnp.asarray(prob.x)
    return build, C


# -- driver ----------------------------------------------------------------------------------

def new_row(name):
    return {"method": name, "first": None, "first_inproc": False, "median": None, "err": None,
            "nnz": None, "note": ""}


def run_problem(key, args):
    prob = make_problem(key)
    print(f"\n== {prob.label}: {prob.desc}", flush=True)
    rows_out = []

    # reference
    t0 = time.perf_counter()
    try:
        ref, ref_how = reference(prob)
        print(f"   reference: {ref_how} ({time.perf_counter() - t0:.2f} s)", flush=True)
    except Exception as e:  # noqa: BLE001
        ref, ref_how = None, None
        print(f"   reference FAILED: {type(e).__name__}: {e}")
    err = (lambda res: max_err(res, ref)) if ref is not None else (lambda res: None)
    batch_vals = {}  # method -> (B, nnz) values, for the all-sample cross-check (batched problems)

    # symjac
    print("   running symjac (fresh subprocess) ...", flush=True)
    row = new_row("symjac")
    rows_out.append(row)
    info, data = run_symjac(key, args.repeats, args.timeout)
    sym_median = None
    rows_t = cols_t = None
    if "first" in info:
        row["first"] = info["first"]
    if "error" in info:
        row["note"] = "FAILED: " + info["error"]
        for ln in info.get("traceback_tail", []):
            print("     | " + ln)
    else:
        row["median"] = sym_median = info["median"]
        row["nnz"] = info.get("nnz")
        st = info.get("stats", {})
        row["note"] = (f"backend={info.get('backend')}, out= preallocated, {info.get('ncalls')} timed calls"
                       + (f"; dag_ops={st.get('dag_ops')}, flops/sample={st.get('flops_per_sample')}" if st else ""))
    if data is not None:
        if prob.sparse:
            rows_t, cols_t = data["rows"].astype(np.int64), data["cols"].astype(np.int64)
            row["err"] = err((rows_t, cols_t, data["values"][0]))
            batch_vals["symjac"] = data["values"]
        else:
            row["err"] = err(data["dense"][0])
    pattern_src = "symjac's rows/cols"
    if prob.sparse:
        ra, ca = analytic_pattern(prob)
        if rows_t is None:
            rows_t, cols_t, pattern_src = ra, ca, "the analytic pattern (symjac gave none)"
        else:
            same = len(ra) == len(rows_t) and np.array_equal(ra, rows_t) and np.array_equal(ca, cols_t)
            same_set = same or set(zip(ra.tolist(), ca.tolist())) == set(zip(rows_t.tolist(), cols_t.tolist()))
            print(f"   symjac pattern nnz={len(rows_t)}, analytic nnz={len(ra)}, identical (rows, cols) sets: "
                  f"{same_set}, same order: {same}")

    # numpy by hand
    print("   running numpy-hand ...", flush=True)
    row = new_row("numpy-hand")
    rows_out.append(row)
    try:
        t0 = time.perf_counter()
        if prob.name == "kinetics300":
            run, buf, note = hand_kinetics(prob, rows_t, cols_t)
            row["note"] = f"(B, nnz) buffer in CSR order of {pattern_src}; " + note
        elif prob.sparse:
            run, buf, note = hand_sparse(prob, rows_t, cols_t)
            row["note"] = f"(1, nnz) buffer in CSR order of {pattern_src}; " + note
        else:
            run, buf = hand_gauss(prob)
            row["note"] = "dense (1, 200, 9) preallocated"
        xs = problem_args(prob)
        res = run(*xs)
        row["first"], row["first_inproc"] = time.perf_counter() - t0, True
        row["median"] = time_median(lambda: run(*xs), args.repeats)[0]
        row["nnz"] = buf.shape[1] if prob.sparse else int(np.count_nonzero(res[0]))
        row["err"] = err((rows_t, cols_t, res[0]) if prob.sparse else res[0])
        batch_vals["numpy-hand"] = res
    except Exception as e:  # noqa: BLE001
        row["note"] = f"FAILED: {type(e).__name__}: {e}"
        traceback.print_exc()

    # JAX
    try:
        _jax()
        have_jax = hasattr(prob, "make_jax")
        if not have_jax:
            print("   [skip] JAX: no JAX peer for this problem")
    except Exception as e:  # noqa: BLE001
        have_jax = False
        print(f"   [skip] JAX: import failed: {type(e).__name__}: {e}")
    if have_jax:
        name = "jax-compressed" if prob.sparse else "jax-jit-jacfwd"
        print(f"   running {name} ...", flush=True)
        row = new_row(name)
        rows_out.append(row)
        try:
            if prob.sparse:
                build, C = jax_compressed(prob, rows_t, cols_t)
                row["note"] = f"{C} colours (greedy, untimed), jit(vmap(jvp)) + gather in jit"
                t0 = time.perf_counter()
                jac, xj = build()
            else:
                jax = _jax()
                import jax.numpy as jnp
                xj = jnp.asarray(prob.x)
                t0 = time.perf_counter()
                jac = jax.jit(jax.vmap(jax.jacfwd(prob.make_jax())))
                row["note"] = "jit(vmap(jacfwd)), dense (1, 200, 9), allocates"
            res = jac(xj).block_until_ready()
            row["first"], row["first_inproc"] = time.perf_counter() - t0, True
            row["median"] = time_median(lambda: jac(xj).block_until_ready(), args.repeats)[0]
            res = np.asarray(res)
            assert res.dtype == np.float64, res.dtype
            row["nnz"] = res.shape[1] if prob.sparse else int(np.count_nonzero(res[0]))
            row["err"] = err((rows_t, cols_t, res[0]) if prob.sparse else res[0])
            row["note"] += "; x pre-converted to a jax array"
        except Exception as e:  # noqa: BLE001
            row["note"] = f"FAILED: {type(e).__name__}: {e}"
            traceback.print_exc()

    # SymEngine (gauss and kinetics, optional)
    if prob.name in ("gauss", "kinetics300"):
        try:
            import symengine as se
        except Exception as e:  # noqa: BLE001
            se = None
            print(f"   [skip] symengine: import failed: {type(e).__name__}: {e}")
        if se is not None:
            print("   running symengine ...", flush=True)
            row = new_row("symengine-llvm")
            rows_out.append(row)
            try:
                t0 = time.perf_counter()
                syms, jac_exprs, inp = symengine_jacobian(prob, se, rows_t, cols_t)
                try:
                    lam = se.Lambdify(syms, jac_exprs, backend="llvm", cse=True)
                    row["note"] = "Lambdify backend='llvm', cse=True, out= preallocated"
                except Exception as e:  # noqa: BLE001
                    lam = se.Lambdify(syms, jac_exprs, cse=True)
                    row["note"] = f"Lambdify lambda backend (llvm failed: {type(e).__name__}), out= preallocated"
                buf = np.empty(inp.shape[:-1] + (len(jac_exprs),))
                lam(inp, out=buf)
                row["first"], row["first_inproc"] = time.perf_counter() - t0, True
                row["median"] = time_median(lambda: lam(inp, out=buf), args.repeats)[0]
                if prob.sparse:
                    row["nnz"] = buf.shape[1]
                    row["err"] = err((rows_t, cols_t, buf[0]))
                    batch_vals["symengine-llvm"] = buf
                    row["note"] += f"; input pre-stacked {inp.shape} (untimed), symbols conc*/rate*, not x*"
                else:
                    res = buf.reshape(prob.m, 9)
                    row["nnz"] = int(np.count_nonzero(res))
                    row["err"] = err(res)
            except Exception as e:  # noqa: BLE001
                row["note"] = f"FAILED: {type(e).__name__}: {e}"
                traceback.print_exc()

    cross_check(prob, rows_out, batch_vals)
    print_table(prob, rows_out, sym_median, ref_how)
    return rows_out


def cross_check(prob, rows_out, batch_vals):
    """Batched problems: every method's values for all B samples vs symengine-llvm (else numpy-hand)."""
    if getattr(prob, "B", 1) == 1 or len(batch_vals) < 2:
        return
    base = "symengine-llvm" if "symengine-llvm" in batch_vals else "numpy-hand"
    if base not in batch_vals:
        return
    ref = batch_vals[base]
    scale = float(np.max(np.abs(ref)))
    for r in rows_out:
        v = batch_vals.get(r["method"])
        if v is None or r["method"] == base:
            continue
        d = float(np.max(np.abs(v - ref))) if v.shape == ref.shape else None
        msg = f"all {prob.B} samples vs {base}: " + ("shape mismatch" if d is None else f"max abs diff {d:.1e}")
        print(f"   {r['method']}: {msg} (max |value| {scale:.1f})")
        r["note"] += "; " + msg


def print_table(prob, rows, sym_median, ref_how):
    fmt_t = common._fmt_time
    head = ["method", "first call", "median/call", "ratio vs symjac", "max abs err", "nnz", "notes"]
    cells = []
    for r in rows:
        ratio = "-"
        if r["median"] is not None and sym_median:
            ratio = f"{r['median'] / sym_median:.2f}x"
        first = fmt_t(r["first"]) if r["first"] is not None else "-"
        if r["first"] is not None and r["first_inproc"]:
            first += " *"
        e = r["err"]
        es = "-" if e is None else (f"{e:.1e}" if e else "0")
        cells.append([r["method"], first, fmt_t(r["median"]) if r["median"] is not None else "-", ratio, es,
                      "-" if r["nnz"] is None else str(r["nnz"]), r["note"]])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head[:-1])]
    line = lambda cs: "  ".join(c.ljust(w) for c, w in zip(cs[:-1], widths)) + "  " + cs[-1]  # noqa: E731
    print(f"\n{prob.label}  (n = {prob.n}, m = {prob.m}, batch {getattr(prob, 'B', 1)}; reference: {ref_how}"
          + (", sample 0 only" if getattr(prob, "B", 1) > 1 else "") + ")")
    print(line(head))
    print(line(["-" * w for w in widths] + ["-----"]))
    for c in cells:
        print(line(c))
    print("(ratio = method median / symjac median, > 1: symjac faster; first call * = in this process, "
          "otherwise a fresh process with an empty SYMJAC_CACHE_DIR)\n", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="bruss1d N=500 only for 1-D, kinetics300 with B=32, 3 repeats: a smoke test")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per method, at least (default 7, quick 3)")
    p.add_argument("--only", default=None, help="comma-separated problems: bruss1d,bruss2d,gauss,kinetics300")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds allowed for symjac's fresh subprocess per problem (default 900, quick 600)")
    p.add_argument("--symjac-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--outdir", default=None, help=argparse.SUPPRESS)
    # accepted for benchmarks.run_all (the tables are its report; first calls are always isolated)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--wait-idle", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--no-isolate", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.symjac_child:
        _symjac_child(args.symjac_child, args.outdir, args.repeats)
        return
    if args.timeout is None:
        args.timeout = 600.0 if args.quick else 900.0
    keys = (["bruss1d:500"] + ([] if args.quick else ["bruss1d:100000"]) + ["bruss2d:128", "gauss:200"]
            + ["kinetics300:" + ("32" if args.quick else "256")])
    if args.only:
        want = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = want - {"bruss1d", "bruss2d", "gauss", "kinetics300"}
        if unknown:
            p.error(f"unknown problem(s) in --only: {', '.join(sorted(unknown))}")
        keys = [k for k in keys if k.split(":")[0] in want]
    print("# array programs: Jacobians of NumPy array models, batch of one sample (kinetics300: B), float64")
    if args.quick:
        print("QUICK MODE: few repeats, bruss1d N=500 only, kinetics300 B=32: a smoke test, not a measurement.")
    print(f"- machine: {common.machine_line()}; load average at start {os.getloadavg()[0]:.2f}")
    try:
        print(f"- versions: {common.versions_line()}")
    except Exception:  # noqa: BLE001
        pass
    print(f"- {args.repeats}+ timed calls per method (median; fast methods: until 0.5 s timed), "
          f"symjac subprocess timeout {args.timeout:.0f} s")
    failed = 0
    for key in keys:
        try:
            run_problem(key, args)
        except Exception:  # noqa: BLE001  (keep going with the next problem)
            failed += 1
            print(f"problem {key} FAILED:")
            traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
