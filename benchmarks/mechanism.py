"""Mechanism benchmark: Jacobian of a synthetic detailed reaction mechanism (issue 16).

A seeded generator makes mechanisms with the parts of a real combustion mechanism (GRI-3.0 has 53
species and 325 reactions): state y = [C (mol/m^3, ns species), T (K)]; Arrhenius rates
``k = exp(logA + b*log(T) - Ea/T)`` (``logA`` is the model's second argument, shared by the batch);
reversible reactions with ``Kc`` from two-range NASA-7 polynomials (``np.where(T > 1000, hi, lo)``)
combined with the stoichiometric matrix and the pressure factor ``(P0/RT)^sum(nu)``; third bodies
``M = eff @ C``; Lindemann and Troe falloff; mass-action rates with padded index arrays
(``np.prod(Cp[reac], axis=1)``); production rates ``nu @ q`` with the dense, mostly-zero
stoichiometric matrix; and the energy equation ``dT/dt = -(h @ wdot) / (cp @ C)`` from NASA-7 enthalpy
and heat capacity, so the Jacobian has the temperature row and column.  The model is written as a user
writes it, plain array NumPy, per sample: ``rhs(y, logA)``.

Sizes: small = 50 species / 300 reactions, large = 300 species / 2,000 reactions.  Methods, side by
side: symjac dense and ``sparse=True`` (numba-parallel), JAX ``jit(vmap(jacfwd))`` (chunked over the
batch when the dense result or JAX's temporaries would not fit), SymEngine ``Lambdify`` with the LLVM
backend (``cse=True``) of the symbolic Jacobian's nonzeros (the model evaluated on SymEngine symbols).
Before timing, every method's Jacobian is checked against JAX on 64 samples and symjac's against
central differences on a few samples.  First calls: symjac's in a fresh process with an empty
``SYMJAC_CACHE_DIR`` (with a time and memory limit; the timed runs then load that process's kernel
from its disk cache, so a many-minute compile is not paid twice), the peers' in this process (trace,
compile and first run on the smaller batch).

Run:  python -m benchmarks.mechanism [--quick] [--size small|large|both] [-B N[,N]] [--repeats N]
                                     [--methods symjac-dense,symjac-sparse,jax,symengine] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from types import SimpleNamespace

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common

NAME = "mechanism"
SIZES = {"small": (50, 300, 16), "large": (300, 2000, 17)}  # species, reactions, seed
QUICK_SIZE = (8, 20, 18)
R_GAS, P0, T_MID = 8.314462618, 101325.0, 1000.0
T_RANGE = (800.0, 2400.0)
METHOD_KEYS = ["symjac-dense", "symjac-sparse", "jax", "symengine"]
FIRST_CALL_TIMEOUT = 600.0  # s, per symjac first call
RSS_LIMIT_GB = 12.0  # a symjac first-call process is killed above this resident size


# -- the mechanism ------------------------------------------------------------------

def _nasa7(rng, ns):
    """Two-range NASA-7 coefficients (ns, 7) low and high, continuous in h and s at T_MID."""
    lo = np.empty((ns, 7))
    lo[:, 0] = rng.uniform(2.5, 4.5, ns)
    lo[:, 1] = rng.uniform(-0.5e-3, 2.0e-3, ns)
    lo[:, 2] = rng.uniform(-0.8e-6, 0.4e-6, ns)
    lo[:, 3] = rng.uniform(-0.1e-9, 0.2e-9, ns)
    lo[:, 4] = rng.uniform(-0.2e-13, 0.2e-13, ns)
    lo[:, 5] = rng.uniform(-1.5e4, 1.5e4, ns)  # h_f / R, K
    lo[:, 6] = 0.0
    lo[:, 6] = rng.uniform(20.0, 30.0, ns) - _s_r(lo, T_MID)  # s/R at 1000 K as small molecules have
    hi = lo.copy()
    hi[:, 0] += rng.uniform(-0.3, 0.3, ns)
    hi[:, 1] *= rng.uniform(0.5, 1.0, ns)
    hi[:, 2] *= rng.uniform(0.2, 0.6, ns)
    hi[:, 3:5] *= 0.1
    # match h/RT and s/R at T_MID: the fits are continuous, as real ones
    h_lo, s_lo = _h_rt(lo, T_MID), _s_r(lo, T_MID)
    hi[:, 5] = 0.0
    hi[:, 6] = 0.0
    hi[:, 5] = (h_lo - _h_rt(hi, T_MID)) * T_MID
    hi[:, 6] = s_lo - _s_r(hi, T_MID)
    return lo, hi


def _h_rt(a, T):
    return a[:, 0] + a[:, 1] * T / 2 + a[:, 2] * T**2 / 3 + a[:, 3] * T**3 / 4 + a[:, 4] * T**4 / 5 + a[:, 5] / T


def _s_r(a, T):
    return a[:, 0] * np.log(T) + a[:, 1] * T + a[:, 2] * T**2 / 2 + a[:, 3] * T**3 / 3 + a[:, 4] * T**4 / 4 + a[:, 6]


def make_mechanism(ns, nr, seed, p_rev=0.8, p_third=0.08, p_lind=0.03, p_troe=0.06):
    """A seeded synthetic mechanism.  Reactions have 1-3 reactants and 1-3 products (a species may
    appear twice, e.g. 2 OH), drawn with Zipf-like species weights so a few radicals take part in
    many reactions, as in real mechanisms; no duplicate reactions."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, ns + 1) ** 0.8
    w /= w.sum()
    reac, prod, seen = [], [], set()
    kind = []  # "plain", "third", "lind", "troe"
    while len(reac) < nr:
        u = rng.random()
        kd = "third" if u < p_third else "lind" if u < p_third + p_lind else \
            "troe" if u < p_third + p_lind + p_troe else "plain"
        if kd == "plain":
            nre, npr = rng.choice([1, 2, 2, 2, 3]), rng.choice([1, 2, 2, 2, 3])
        else:  # recombination / dissociation: A + B (+M) <-> AB (+M)
            nre, npr = (2, 1) if rng.random() < 0.7 else (1, 2)
        r = tuple(sorted(int(s) for s in rng.choice(ns, nre, p=w)))
        p = tuple(sorted(int(s) for s in rng.choice(ns, npr, p=w)))
        if r == p or (r, p) in seen or (p, r) in seen or set(r) & set(p):
            continue
        seen.add((r, p))
        reac.append(r)
        prod.append(p)
        kind.append(kd)
    kind = np.array(kind)
    order = np.array([len(r) for r in reac])
    nu = np.zeros((ns, nr))
    for j, (r, p) in enumerate(zip(reac, prod)):
        for i in r:
            nu[i, j] -= 1.0
        for i in p:
            nu[i, j] += 1.0
    pad = lambda lists: np.array([list(x) + [ns] * (3 - len(x)) for x in lists])  # noqa: E731
    # Arrhenius, SI units (m^3/mol)^(order-1)/s: log A for unimolecular ~ 10^12, bimolecular ~ 10^7
    logA = np.log(10.0) * (rng.uniform(10.0, 12.0, nr) - 5.0 * (order - 1))
    b = rng.uniform(-1.0, 1.5, nr)
    logA -= b * np.log(T_MID)  # A T^b is the rate's scale near 1000 K
    lo, hi = _nasa7(rng, ns)
    # activation temperature (K): at least -log Kc(T_MID) * T_MID, so the reverse rate kf/Kc is no
    # larger than the forward one's prefactor at 1000 K (real mechanisms are written that way round)
    G_lo = _gibbs_matrices(lo)[0]
    P_mid = np.array([1.0, T_MID, T_MID**2, T_MID**3, T_MID**4, 1 / T_MID, np.log(T_MID)])
    minus_log_kc = (G_lo @ P_mid) @ nu - nu.sum(0) * np.log(P0 / (R_GAS * T_MID))
    Ea = np.maximum(minus_log_kc * T_MID, 0.0) + rng.uniform(4.0e3, 2.5e4, nr)
    falloff = np.flatnonzero((kind == "lind") | (kind == "troe"))
    third = np.flatnonzero(kind == "third")
    tb = np.concatenate([third, falloff])  # reactions with a third body
    eff = np.ones((len(tb), ns))
    for row in eff:  # a few collision partners with their own efficiency, as in GRI-3.0
        sp = rng.choice(ns, min(ns, 6), replace=False)
        row[sp] = rng.choice([0.0, 0.4, 0.7, 0.75, 1.5, 2.0, 6.0, 12.0], len(sp))
    # falloff: k0 (low-pressure limit, one order higher) and the Troe parameters
    logA0 = logA[falloff] + np.log(10.0) * rng.uniform(4.0, 6.0, len(falloff))
    b0 = rng.uniform(-2.5, 0.0, len(falloff))
    Ea0 = rng.uniform(0.0, 1.0e4, len(falloff))
    is_troe = kind[falloff] == "troe"
    troe = np.stack([rng.uniform(0.4, 0.8, len(falloff)), rng.uniform(50.0, 300.0, len(falloff)),
                     rng.uniform(500.0, 3000.0, len(falloff)), rng.uniform(3000.0, 8000.0, len(falloff))], 1)
    rev = rng.random(nr) < p_rev
    return SimpleNamespace(ns=ns, nr=nr, seed=seed, reac=reac, prod=prod, kind=kind, nu=nu,
                           reac_idx=pad(reac), prod_idx=pad(prod), logA=logA, b=b, Ea=Ea, rev=rev,
                           tb=tb, third=third, falloff=falloff, eff=eff, logA0=logA0, b0=b0, Ea0=Ea0,
                           is_troe=is_troe, troe=troe, lo=lo, hi=hi)


def _gibbs_matrices(a):
    """(G, H, Cp), each (ns, 7) acting on P = [1, T, T^2, T^3, T^4, 1/T, log T]:
    g/RT = G @ P, h/RT = H @ P, cp/R = Cp @ P."""
    ns = a.shape[0]
    H = np.zeros((ns, 7))
    H[:, 0], H[:, 1], H[:, 2], H[:, 3], H[:, 4], H[:, 5] = a[:, 0], a[:, 1] / 2, a[:, 2] / 3, a[:, 3] / 4, \
        a[:, 4] / 5, a[:, 5]
    S = np.zeros((ns, 7))
    S[:, 6], S[:, 1], S[:, 2], S[:, 3], S[:, 4], S[:, 0] = a[:, 0], a[:, 1], a[:, 2] / 2, a[:, 3] / 3, \
        a[:, 4] / 4, a[:, 6]
    Cp = np.zeros((ns, 7))
    Cp[:, :5] = a[:, :5]
    return H - S, H, Cp


def make_rhs(mech, xp=np):
    """The per-sample model ``rhs(y, logA)``, y = [C, T], in plain array NumPy (``xp`` = jax.numpy
    for the JAX peer: the same text)."""
    G_lo, H_lo, Cp_lo = _gibbs_matrices(mech.lo)
    G_hi, H_hi, Cp_hi = _gibbs_matrices(mech.hi)
    nu, reac, prod, rev, eff = mech.nu, mech.reac_idx, mech.prod_idx, mech.rev, mech.eff
    dn = nu.sum(0)
    b, Ea, third, falloff = mech.b, mech.Ea, mech.third, mech.falloff
    logA0, b0, Ea0, is_troe = mech.logA0, mech.b0, mech.Ea0, mech.is_troe
    a_t, T3, T1, T2 = mech.troe.T
    n3 = len(third)

    def rhs(y, logA):
        C, T = y[:-1], y[-1]
        logT = xp.log(T)
        P = xp.stack([xp.ones_like(T), T, T**2, T**3, T**4, 1.0 / T, logT])
        hot = T > T_MID
        g = xp.where(hot, G_hi @ P, G_lo @ P)   # g/RT per species
        h = xp.where(hot, H_hi @ P, H_lo @ P)   # h/RT
        cp = xp.where(hot, Cp_hi @ P, Cp_lo @ P)  # cp/R
        k = xp.exp(logA + b * logT - Ea / T)
        # third bodies and falloff
        M = eff @ C
        k0 = xp.exp(logA0 + b0 * logT - Ea0 / T)
        kinf = k[falloff]
        Pr = k0 * M[n3:] / kinf
        Fcent = (1 - a_t) * xp.exp(-T / T3) + a_t * xp.exp(-T / T1) + xp.exp(-T2 / T)
        logFc = xp.log10(Fcent)
        c = -0.4 - 0.67 * logFc
        n = 0.75 - 1.27 * logFc
        f1 = (xp.log10(Pr) + c) / (n - 0.14 * (xp.log10(Pr) + c))
        F = xp.where(is_troe, 10.0 ** (logFc / (1 + f1**2)), 1.0)
        kfall = kinf * Pr / (1 + Pr) * F
        kf = _set(xp, k, falloff, kfall)
        # equilibrium constants, reverse rates and rates of progress
        Kc = xp.exp(-(g @ nu) + dn * xp.log(P0 / (R_GAS * T)))
        kr = xp.where(rev, kf / Kc, 0.0)
        Cp1 = xp.concatenate([C, xp.ones(1)])
        q = kf * xp.prod(Cp1[reac], axis=1) - kr * xp.prod(Cp1[prod], axis=1)
        q = _set(xp, q, third, q[third] * M[:n3])
        wdot = nu @ q
        dTdt = -(R_GAS * T) * (h @ wdot) / (R_GAS * (cp @ C))
        return xp.concatenate([wdot, xp.stack([dTdt])])

    return rhs


def _set(xp, v, idx, vals):
    """``v`` with ``v[idx] = vals``, as a user writes it (JAX arrays are immutable: ``.at[].set``)."""
    if hasattr(v, "at"):
        return v.at[idx].set(vals)
    v = v.copy()
    v[idx] = vals
    return v


def make_states(mech, B, seed=0):
    """(B, ns + 1) states: concentrations log-uniform in [1e-4, 1] mol/m^3, T uniform in T_RANGE
    (both NASA-7 ranges are used)."""
    u = np.random.default_rng(1000 + seed).random((B, mech.ns + 1))  # row b is the same for every B
    C = 10.0 ** (-4.0 + 4.0 * u[:, :-1])
    T = T_RANGE[0] + (T_RANGE[1] - T_RANGE[0]) * u[:, -1:]
    return np.ascontiguousarray(np.hstack([C, T]))


class SymbolicNumPy:
    """The few NumPy functions the model calls, on object arrays of SymEngine (or SymPy)
    expressions: the same ``make_rhs`` text evaluated on symbols.  ``np.where`` on a symbolic
    condition becomes a Piecewise; float-times-expression products with 0.0 vanish (SymEngine
    simplifies ``0.0*x`` to 0), so ``nu @ q`` keeps only the nonzero terms."""

    def __init__(self, sym):
        self.sym = sym

    def _map(self, f, x):
        if isinstance(x, np.ndarray):
            return np.array([f(v) for v in x.ravel()], dtype=object).reshape(x.shape)
        return f(x)

    def log(self, x):
        return self._map(self.sym.log, x)

    def exp(self, x):
        return self._map(self.sym.exp, x)

    def log10(self, x):
        return self._map(lambda v: self.sym.log(v) / np.log(10.0), x)

    def stack(self, xs):
        return np.array(list(xs), dtype=object)

    def concatenate(self, xs):
        return np.concatenate([np.asarray(x, dtype=object) for x in xs])

    def ones_like(self, x):
        return 1.0

    def ones(self, n):
        return np.ones(n, dtype=object)

    def prod(self, x, axis):
        return np.prod(x, axis=axis)

    def where(self, c, a, b):
        if isinstance(c, (np.ndarray, bool, np.bool_)):
            return np.where(c, np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        a, b = np.broadcast_arrays(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
        return np.array([self.sym.Piecewise((u, c), (v, True)) for u, v in zip(a.ravel(), b.ravel())],
                        dtype=object).reshape(a.shape)


def symbolic_jacobian(mech, sym):
    """(input symbols y + logA, nonzero Jacobian entries, rows, cols, seconds) of the model
    evaluated on ``sym`` (symengine) symbols, differentiated by ``Matrix.jacobian``."""
    t0 = time.perf_counter()
    # not x0, x1, ...: Lambdify(cse=True) names its temporaries that way (see benchmarks/kinetics.py)
    ys = [sym.Symbol(f"conc{i}") for i in range(mech.ns)] + [sym.Symbol("temp")]
    las = [sym.Symbol(f"logA{r}") for r in range(mech.nr)]
    out = make_rhs(mech, SymbolicNumPy(sym))(np.array(ys, dtype=object), np.array(las, dtype=object))
    J = sym.Matrix(list(out)).jacobian(sym.Matrix(ys))
    n = len(ys)
    rows, cols, nz = [], [], []
    for i in range(n):
        for j in range(n):
            e = J[i, j]
            if e != 0:
                rows.append(i)
                cols.append(j)
                nz.append(e)
    return ys + las, nz, np.array(rows), np.array(cols), time.perf_counter() - t0


# -- problems -------------------------------------------------------------------------

def make_problem(size, B):
    ns, nr, seed = QUICK_SIZE if size == "quick" else SIZES[size]
    mech = make_mechanism(ns, nr, seed)
    return SimpleNamespace(size=size, mech=mech, rhs=make_rhs(mech), Y=make_states(mech, B), logA=mech.logA,
                           n=ns + 1)


def describe(mech):
    kinds = {k: int((mech.kind == k).sum()) for k in ("plain", "third", "lind", "troe")}
    nre = np.bincount([len(r) for r in mech.reac], minlength=4)[1:]
    npr = np.bincount([len(q) for q in mech.prod], minlength=4)[1:]
    return (f"{mech.ns} species, {mech.nr} reactions (seed {mech.seed}): {int(mech.rev.sum())} reversible, "
            f"{kinds['third']} third-body, {kinds['lind']} Lindemann and {kinds['troe']} Troe falloff; "
            f"reactants 1/2/3: {'/'.join(map(str, nre))}, products 1/2/3: {'/'.join(map(str, npr))}; "
            f"nu {mech.ns} x {mech.nr} with {int((mech.nu != 0).sum())} nonzeros; "
            f"Jacobian {mech.ns + 1} x {mech.ns + 1} w.r.t. y = [C, T]")


# -- methods: set-up, chunked evaluation, the first 64 Jacobians ------------------------

class Evaluator:
    """``evaluate(n)``: the Jacobians of samples [0, n) of the problem, ``chunk`` samples a call
    into one reused buffer (the timed unit); ``first64()``: dense Jacobians of samples 0-63 from
    the buffer after ``evaluate(chunk)``."""

    def __init__(self, call, chunk, dense, info=None):
        self.call, self.chunk, self.dense, self.info = call, chunk, dense, info or {}

    def evaluate(self, n):
        for s in range(0, n, self.chunk):
            self.call(s, min(n, s + self.chunk))

    def first64(self, n_states):
        self.evaluate(min(self.chunk, n_states))
        return self.dense(64)


def _symjac(p, sparse, chunk):
    import symjac
    import symjac.ad.sweeps as sweeps
    import symjac.transforms as transforms

    # reporting hooks (trace time only): whether the array-level (compressed forward) path was
    # taken, and the scalar sweeps' cost estimate when it was not
    seen = {}
    array_level, costs = transforms._array_level, sweeps._costs

    def rec_array_level(v):
        w = array_level(v)
        seen["array_level"] = w is not None
        return w

    def rec_costs(*a):
        c = costs(*a)
        seen["estimate fwd/rev"] = list(c)
        return c

    transforms._array_level, sweeps._costs = rec_array_level, rec_costs
    J = symjac.jacobian(p.rhs, 0, in_axes=(0, None), backend="numba-parallel", sparse=sparse)
    st = {}

    def call(s, e):
        if "buf" not in st or len(st["buf"]) < e - s:  # the first call, or a larger batch: allocate
            r = J(p.Y[s:e], p.logA)
            st["res"], st["buf"] = r, (r.values if sparse else r)
        else:
            J(p.Y[s:e], p.logA, out=st["buf"][: e - s])

    def dense(k):
        if sparse:
            r = st["res"]
            return common.nz_to_dense(st["buf"][:k], r.rows, r.cols, (p.n, p.n))
        return np.array(st["buf"][:k])

    ev = Evaluator(call, chunk, dense)

    def info():
        k = J.kernel_for(p.Y[:chunk], p.logA)
        s = k.stats
        out = {"statements": s["statements"], "dag_ops": s["dag_ops"], "flops/sample": s["flops_per_sample"]}
        if sparse:
            out["nnz"] = int(st["res"].nnz)
        out["mode (auto)"] = "array level (compressed forward)" if seen.get("array_level") else \
            f"scalar sweeps, estimate fwd/rev = {seen.get('estimate fwd/rev')}"
        return out

    ev.info = info
    return ev


def _jax(p, chunk):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    fn = jax.jit(jax.vmap(jax.jacfwd(make_rhs(p.mech, jnp)), in_axes=(0, None)))
    Yj, la = jnp.asarray(p.Y), jnp.asarray(p.logA)  # on the device before the clock, as the peers' inputs
    st = {}

    def call(s, e):
        st["res"] = fn(Yj[s:e], la).block_until_ready()

    return Evaluator(call, chunk, lambda k: np.asarray(st["res"][:k]),
                     {"devices": str(jax.devices()), "chunk": chunk})


def _symengine(p, chunk):
    import symengine

    syms, nz, rows, cols, t_build = symbolic_jacobian(p.mech, symengine)
    t0 = time.perf_counter()
    fn = symengine.Lambdify(syms, nz, cse=True, backend="llvm")
    t_compile = time.perf_counter() - t0
    nin = p.n + p.mech.nr
    inp = np.empty((chunk, nin))
    inp[:, p.n:] = p.logA  # the shared logA, stacked once; each chunk copies its states in (timed)
    buf = np.empty((chunk, len(nz)))

    def call(s, e):
        inp[: e - s, : p.n] = p.Y[s:e]
        fn(inp[: e - s], out=buf[: e - s])

    info = {"nnz": len(nz), "symbolic Jacobian build": f"{t_build:.1f} s", "Lambdify LLVM": f"{t_compile:.1f} s"}
    return Evaluator(call, chunk, lambda k: common.nz_to_dense(buf[:k], rows, cols, (p.n, p.n)), info)


SETUPS = {
    "symjac-dense": ("symjac dense (numba-parallel)", lambda p, c: _symjac(p, False, c)),
    "symjac-sparse": ("symjac sparse=True (numba-parallel)", lambda p, c: _symjac(p, True, c)),
    "jax": ("JAX jit(vmap(jacfwd))", _jax),
    "symengine": ("SymEngine Lambdify LLVM cse=True (1 thread)", _symengine),
}


def _preload(key):
    if key.startswith("symjac"):
        import numba  # noqa: F401
        import symjac  # noqa: F401
    elif key == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.numpy.zeros(1).block_until_ready()  # backend start-up is not the model's first call
    elif key == "symengine":
        import symengine  # noqa: F401


# -- child: one method, one size, in a fresh process ------------------------------------

def _child(key, size, batches, repeats, chunk, budget, outdir):
    common.setup_env()  # a new, empty SYMJAC_CACHE_DIR for this process
    _preload(key)
    rep = {"key": key, "name": SETUPS[key][0], "chunk": chunk, "batches": {}}

    def emit():
        rep["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print("RESULT_JSON:" + json.dumps(rep, default=str), flush=True)

    p = make_problem(size, max(batches))
    B0 = batches[0]
    mon = common.LoadMonitor()
    t0 = time.perf_counter()
    ev = SETUPS[key][1](p, chunk)
    rep["setup"] = time.perf_counter() - t0
    ev.evaluate(B0)
    rep["first_call"] = time.perf_counter() - t0
    rep["first_call_bg_load"] = mon.cores()
    rep["info"] = ev.info() if callable(ev.info) else ev.info
    emit()
    np.save(os.path.join(outdir, f"{key}.npy"), ev.first64(len(p.Y)))
    last = None  # (B, seconds a call)
    for B in batches:
        row = rep["batches"][str(B)] = {}
        if last is not None and last[1] * B / last[0] > 2 * budget:
            row["skipped"] = f"not run: about {last[1] * B / last[0]:.0f} s a call (from B = {last[0]}), " \
                             f"over the {budget:.0f} s budget"
            emit()
            continue
        mon = common.LoadMonitor()
        t1 = time.perf_counter()
        ev.evaluate(B)  # warm-up at this size, and the estimate of a call
        t1 = time.perf_counter() - t1
        n = int(max(1, min(repeats, budget // max(t1, 1e-9))))
        med, mn, times = common.time_median(lambda: ev.evaluate(B), n, warmup=0,
                                            min_total=min(0.5, budget), max_repeats=max(n, 200))
        row.update(median=med, min=mn, runs=len(times), bg_load=mon.cores())
        last = (B, med)
        emit()


# -- parent: run the children, check, print -------------------------------------------

def _rss_gb(pid):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return 0.0


def run_child(key, size, batches, repeats, chunk, budget, outdir, first_timeout, rss_limit):
    """One method in a fresh process, watched: killed when its first call takes longer than
    ``first_timeout`` s, when the whole run takes longer than the timings' budget allows, or when
    its resident memory passes ``rss_limit`` GB.  Returns its last report (with ``error`` if any)."""
    cmd = [sys.executable, "-m", "benchmarks.mechanism", "--child", key, "--size", size,
           "-B", ",".join(map(str, batches)), "--repeats", str(repeats), "--chunk", str(chunk),
           "--budget", str(budget), "--outdir", outdir]
    env = dict(os.environ, SYMJAC_PROGRESS="0")
    env.pop("SYMJAC_CACHE_DIR", None)  # the child makes its own, empty
    proc = subprocess.Popen(cmd, cwd=common.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines, errs = [], []
    readers = [threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True),
               threading.Thread(target=lambda: errs.extend(proc.stderr), daemon=True)]
    for t in readers:
        t.start()
    t0, peak, error = time.perf_counter(), 0.0, None
    total = first_timeout + len(batches) * (3 * budget + 60)
    while proc.poll() is None:
        time.sleep(0.5)
        peak = max(peak, _rss_gb(proc.pid))
        el = time.perf_counter() - t0
        first_done = any(ln.startswith("RESULT_JSON:") for ln in lines)
        if peak > rss_limit:
            error = f"killed at {peak:.1f} GB resident after {el:.0f} s (limit {rss_limit:.0f} GB)"
        elif not first_done and el > first_timeout:
            error = f"first call did not finish in {first_timeout:.0f} s ({peak:.1f} GB resident)"
        elif el > total:
            error = f"killed after {el:.0f} s (timings over budget)"
        if error:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
    for t in readers:
        t.join(timeout=5)
    reps = [json.loads(ln[len("RESULT_JSON:"):]) for ln in lines if ln.startswith("RESULT_JSON:")]
    rep = reps[-1] if reps else {"key": key, "name": SETUPS[key][0], "batches": {}}
    rep["watched_peak_rss_gb"] = peak
    rep.setdefault("chunk", chunk)
    if error is None and proc.returncode != 0:
        tail = "".join(errs).strip().splitlines()[-2:]
        error = f"exit {proc.returncode}: " + " | ".join(tail)
    if error:
        rep["error"] = error
    return rep


def _row_scaled(J, ref):
    """max |J - ref| / max_j |ref[row]| over samples and rows (rows that are all zero: absolute)."""
    scale = np.abs(ref).max(axis=2, keepdims=True)
    scale[scale == 0] = 1.0
    return float(np.max(np.abs(J - ref) / scale)) if np.all(np.isfinite(J)) else float("inf")


def central_differences(p, idx, rel=1e-6):
    out = []
    for s in idx:
        y = p.Y[s]
        J = np.empty((p.n, p.n))
        for j in range(p.n):
            h = rel * abs(y[j])
            e = np.zeros(p.n)
            e[j] = h
            J[:, j] = (p.rhs(y + e, p.logA) - p.rhs(y - e, p.logA)) / (2 * h)
        out.append(J)
    return np.array(out)


def run_size(size, args, outdir):
    batches, repeats = args.batches, args.repeats
    p = make_problem(size, 64)
    print(f"\n## mechanism ({size}): {describe(p.mech)}\n")
    print(f"- batches B = {', '.join(map(str, batches))}; median of up to {repeats} timed runs a method "
          f"(fewer when a call is slow: at most {args.budget:.0f} s of runs per method and B); each method "
          "in a fresh process (its first call: construct + first evaluation at "
          f"B = {batches[0]}; symjac with an empty SYMJAC_CACHE_DIR and Numba compiled in-process)")
    print(f"- machine: {common.machine_line()}; load average at start {os.getloadavg()[0]:.2f}")
    chunk = args.chunk or (1000 if size == "large" else max(batches))
    jchunk = args.jax_chunk or (100 if size == "large" else 1000)
    reports = {}
    for key in args.methods:
        c = jchunk if key == "jax" else min(chunk, 10_000) if key == "symengine" else chunk
        print(f"  running {SETUPS[key][0]} (chunks of {c}) ...", flush=True)
        mon = common.LoadMonitor()
        reports[key] = r = run_child(key, size, batches, repeats, c, args.budget, outdir,
                                     args.first_timeout, args.rss_limit)
        r["child_bg_load"] = mon.cores()  # cores used by others than this driver and its child
        if r.get("error"):
            print(f"  [{key}] {r['error']}", flush=True)
    # correctness: against JAX on 64 samples, and central differences on 3
    ref_key = "jax" if os.path.exists(os.path.join(outdir, "jax.npy")) else None
    ref = np.load(os.path.join(outdir, "jax.npy")) if ref_key else None
    cd = central_differences(p, [0, 1, 2])
    for key, r in reports.items():
        path = os.path.join(outdir, f"{key}.npy")
        if not os.path.exists(path):
            continue
        J = np.load(path)
        if ref is not None:
            r["err_vs_jax"] = _row_scaled(J, ref)
            r["rel_err_vs_jax"] = common.compare(J, ref)[1]
            r["missed_nonzeros"] = int(np.sum((J == 0) & (ref != 0)))
        r["err_vs_cd"] = _row_scaled(J[:3], cd)
    print_size_table(size, p, reports, batches)
    return reports


def _fmt(t):
    return common._fmt_time(t) if t is not None else "-"


def print_size_table(size, p, reports, batches):
    jax = reports.get("jax", {}).get("batches", {})
    head = ["method", "first call (B = %d)" % batches[0]] + \
        [f"B = {B}" for B in batches] + [f"JAX / method, B = {B}" for B in batches] + \
        ["row-scaled err vs JAX (64)", "max rel err vs JAX", "err vs central diff. (3)", "peak RSS",
         "bg load (first / timed)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in reports.items():
        bt = r.get("batches", {})
        cells = [r.get("name", key), _fmt(r.get("first_call"))]
        for B in batches:
            b = bt.get(str(B), {})
            cells.append(f"{_fmt(b['median'])} ({b['runs']} runs)" if "median" in b else b.get("skipped", "-"))
        for B in batches:
            b, j = bt.get(str(B), {}), jax.get(str(B), {})
            cells.append(f"{j['median'] / b['median']:.1f}x" if "median" in b and "median" in j else "-")
        loads = [bt.get(str(B), {}).get("bg_load") for B in batches]
        cells += [common._fmt_err(r.get("err_vs_jax")), common._fmt_err(r.get("rel_err_vs_jax")),
                  common._fmt_err(r.get("err_vs_cd")), f"{r.get('watched_peak_rss_gb', 0):.2f} GB",
                  f"{common._fmt_load(r.get('first_call_bg_load'))} / "
                  + ", ".join(common._fmt_load(x) for x in loads),
                  "; ".join(x for x in [r.get("error", ""), "chunks of %s" % r.get("chunk")] if x)]
        lines.append("| " + " | ".join(cells) + " |")
    print()
    print("\n".join(lines))
    print("\n(first call: construct + first evaluation of the whole batch in a fresh process; per-call: "
          "median over the runs shown; JAX / method > 1 means the method is faster than JAX; errors: "
          "max |J - J_ref| / max |row of J_ref| over the 64 samples (JAX) or 3 samples (central "
          "differences, step 1e-6 relative); bg load: cores used by other processes)")
    for key, r in reports.items():
        info = dict(r.get("info") or {})
        if r.get("missed_nonzeros"):
            info["entries zero here but not in JAX"] = r["missed_nonzeros"]
        if r.get("setup") is not None:
            info["setup (before the first evaluation)"] = f"{r['setup']:.2f} s"
        if info:
            print(f"- {r.get('name', key)}: " + ", ".join(f"{k}: {v}" for k, v in info.items()))
    print()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"a {QUICK_SIZE[0]}-species mechanism, B = 2000, "
                    "3 repeats: a smoke test of about a minute")
    ap.add_argument("--size", default=None, choices=["small", "large", "both", "quick"])
    ap.add_argument("-B", "--batch", default=None, help="batch sizes, comma-separated (default 10000,100000)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per method and B (default 7, quick 3)")
    ap.add_argument("--methods", default=",".join(METHOD_KEYS), help="comma-separated: " + ", ".join(METHOD_KEYS))
    ap.add_argument("--budget", type=float, default=None, help="seconds of timed runs per method and B (default 240)")
    ap.add_argument("--first-timeout", type=float, default=FIRST_CALL_TIMEOUT)
    ap.add_argument("--rss-limit", type=float, default=RSS_LIMIT_GB, help="GB; a method's process is killed above")
    ap.add_argument("--chunk", type=int, default=None, help="samples per call for symjac and SymEngine "
                    "(default: the whole batch at small size, 1000 at large)")
    ap.add_argument("--jax-chunk", type=int, default=None, help="samples per JAX call (default 1000; large 100)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--wait-idle", type=float, default=0.0, help=argparse.SUPPRESS)  # run_all passes these
    ap.add_argument("--no-isolate", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--outdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = args.size or ("quick" if args.quick else "small")
    args.batches = [int(b) for b in (args.batch or ("2000" if args.quick else "10000,100000")).split(",")]
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.budget = args.budget or (10.0 if args.quick else 240.0)
    if args.quick:
        args.first_timeout = min(args.first_timeout, 120.0)
    if args.child:
        _child(args.child, size, args.batches, args.repeats, args.chunk, args.budget, args.outdir)
        return 0
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(SETUPS)
    if unknown:
        ap.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    args.methods.sort(key=lambda k: k != "jax")  # JAX first: the reference
    common.setup_env()
    if args.quick:
        print("QUICK MODE: a small mechanism, small batch, few repeats; a smoke test, not a measurement.")
    sizes = ["small", "large"] if size == "both" else [size]
    results = {"machine": common.machine_line(), "sizes": {}}
    for s in sizes:
        with tempfile.TemporaryDirectory(prefix="symjac-mech-") as outdir:
            results["sizes"][s] = run_size(s, args, outdir)
    common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
