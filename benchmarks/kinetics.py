"""Kinetics benchmark: Jacobian of a mass-action chemical kinetics RHS (30 species, 80 reactions).

Per sample: state x (30,), rate constants k (80,); rate_r = k_r * prod of the
reactant concentrations; dx/dt = S @ rates.  The network is random but seeded:
each reaction has 1-2 reactants and 1-2 products (distinct species,
stoichiometry 1, no duplicate reactions).  The Jacobian d(dx/dt)/dx (30 x 30)
has 259 structural nonzeros out of 900 for the default seed.

Run:  python -m benchmarks.kinetics [--quick] [--repeats N] [-B N] [--methods a,b]
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common
from benchmarks.common import Runner, nz_to_dense

common.setup_env()  # fresh SYMJAC_CACHE_DIR before symjac is imported anywhere

NAME = "kinetics"
TITLE = "kinetics: mass-action RHS, 30 species / 80 reactions, Jacobian w.r.t. the state"
DEFAULT_B = 100_000
QUICK_B = 5_000
NS, NR = 30, 80
SEED = 15  # gives 259 structural nonzeros (of 900), as in DESIGN.md


# -- the network ----------------------------------------------------------------

def make_network(seed=SEED, ns=NS, nr=NR, p_two=0.5):
    """Random mass-action network: lists of reactant / product tuples, S, gather indices."""
    rng = np.random.default_rng(seed)
    reac, prod, seen = [], [], set()
    while len(reac) < nr:
        nre = 1 + int(rng.random() < p_two)
        npr = 1 + int(rng.random() < p_two)
        sp = rng.choice(ns, nre + npr, replace=False)
        r, p = tuple(sorted(int(s) for s in sp[:nre])), tuple(sorted(int(s) for s in sp[nre:]))
        if (r, p) in seen:
            continue
        seen.add((r, p))
        reac.append(r)
        prod.append(p)
    S = np.zeros((ns, nr))
    for j, (r, p) in enumerate(zip(reac, prod)):
        S[list(r), j] -= 1.0
        S[list(p), j] += 1.0
    # gather indices: rate_r = k_r * xp[ia[r]] * xp[ib[r]], xp = [x, 1]
    ia = np.array([r[0] for r in reac])
    ib = np.array([r[1] if len(r) > 1 else ns for r in reac])
    pattern = np.zeros((ns, ns), bool)
    for r, p in zip(reac, prod):
        for i in r + p:
            for j in r:
                pattern[i, j] = True
    return SimpleNamespace(reac=reac, prod=prod, S=S, ia=ia, ib=ib, pattern=pattern, ns=ns, nr=nr)


def make_problem(B, seed=0):
    net = make_network()
    rng = np.random.default_rng(1234 + seed)
    X = rng.uniform(0.1, 2.0, (B, net.ns))
    K = rng.uniform(0.1, 10.0, (B, net.nr))
    S, ia, ib = net.S, net.ia, net.ib

    def rhs(x, k):
        """The per-sample model as symjac sees it: plain NumPy."""
        xp = np.concatenate([x, np.ones(1)])
        rates = k * xp[ia] * xp[ib]
        return S @ rates

    return SimpleNamespace(B=B, X=X, K=K, net=net, rhs=rhs)


def rhs_scalar(x, k, net):
    """The same RHS on lists of scalar symbols (SymPy, SymEngine, CasADi SX)."""
    rates = []
    for r, reactants in enumerate(net.reac):
        v = k[r]
        for i in reactants:
            v = v * x[i]
        rates.append(v)
    dx = [0] * net.ns
    for r in range(net.nr):
        for i in net.reac[r]:
            dx[i] = dx[i] - rates[r]
        for i in net.prod[r]:
            dx[i] = dx[i] + rates[r]
    return dx


def describe(p):
    nnz = int(p.net.pattern.sum())
    two_r = sum(len(r) == 2 for r in p.net.reac)
    two_p = sum(len(q) == 2 for q in p.net.prod)
    return [f"- network: seed {SEED}, {NS} species, {NR} reactions ({two_r} with 2 reactants, "
            f"{two_p} with 2 products); structural nonzeros of the 30x30 Jacobian (from the network): "
            f"{nnz} of {NS * NS} ({100 * (1 - nnz / NS**2):.1f}% zeros)"]


def floor_shapes(p):
    nnz = int(p.net.pattern.sum())
    return [("dense", (p.B, NS * NS)), ("nnz", (p.B, nnz))]


def check_indices(B):
    return np.unique(np.linspace(0, B - 1, min(B, 257)).astype(np.int64))


# -- symjac ---------------------------------------------------------------------

def _preload_symjac():
    import numba  # noqa: F401  (library import is not part of the first call)

    import symjac  # noqa: F401


def _symjac(p, backend, sparse, use_out=True):
    return common.symjac_runner(p.rhs, (p.X, p.K), (NS, NS), backend=backend, sparse=sparse, use_out=use_out)


# -- peers ----------------------------------------------------------------------

def _preload_jax():
    import jax

    jax.config.update("jax_enable_x64", True)


def _jax(p):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    S, ia, ib = jnp.asarray(p.net.S), jnp.asarray(p.net.ia), jnp.asarray(p.net.ib)

    def rhs(x, k):
        xp = jnp.concatenate([x, jnp.ones(1, x.dtype)])
        rates = k * xp[ia] * xp[ib]
        return S @ rates

    fn = jax.jit(jax.vmap(jax.jacfwd(rhs, argnums=0)))
    X, K = jnp.asarray(p.X), jnp.asarray(p.K)
    state = {}

    def run():
        state["res"] = fn(X, K).block_until_ready()

    return Runner(run, lambda idx: np.asarray(state["res"])[idx])


def _preload_torch():
    import torch
    import torch.func  # noqa: F401


def _torch(p):
    import torch
    from torch.func import jacfwd, vmap

    S = torch.from_numpy(p.net.S)
    ia, ib = torch.from_numpy(p.net.ia), torch.from_numpy(p.net.ib)
    one = torch.ones(1, dtype=torch.float64)

    def rhs(x, k):
        xp = torch.cat([x, one])
        rates = k * xp[ia] * xp[ib]
        return S @ rates

    fn = vmap(jacfwd(rhs, argnums=0))
    X, K = torch.from_numpy(p.X), torch.from_numpy(p.K)
    state = {}

    def run():
        with torch.no_grad():
            state["res"] = fn(X, K)

    return Runner(run, lambda idx: state["res"].numpy()[idx],
                  info={"torch_threads": torch.get_num_threads()})


def _symbolic_jacobian(mod):
    """(symbols x, symbols k, row-major nonzero entries, rows, cols) with SymPy or SymEngine."""
    net = make_network()
    # Not "x0", "x1", ...: SymEngine's Lambdify(cse=True) names its temporaries x0, x1, ... and
    # silently mixes them up with user symbols of the same names (wrong values, no error).
    xs = [mod.Symbol(f"conc{i}") for i in range(NS)]
    ks = [mod.Symbol(f"rate{r}") for r in range(NR)]
    dx = rhs_scalar(xs, ks, net)
    rows, cols, nz = [], [], []
    for i in range(NS):
        for j in range(NS):
            e = mod.diff(dx[i], xs[j]) if dx[i] != 0 else 0
            if e != 0:
                rows.append(i)
                cols.append(j)
                nz.append(e)
    return xs, ks, nz, np.array(rows), np.array(cols)


def _preload_sympy():
    import sympy  # noqa: F401


def _sympy(p):
    import sympy

    xs, ks, nz, rows, cols = _symbolic_jacobian(sympy)
    fn = sympy.lambdify((xs, ks), nz, modules="numpy", cse=True)
    XT, KT = np.ascontiguousarray(p.X.T), np.ascontiguousarray(p.K.T)  # layout: untimed, see note
    buf = np.empty((len(nz), p.B))

    def run():
        vals = fn(XT, KT)
        for j, v in enumerate(vals):
            buf[j] = v

    return Runner(run, lambda idx: nz_to_dense(buf[:, idx].T, rows, cols, (NS, NS)), info={"nnz": len(nz)})


def _preload_symengine():
    import symengine  # noqa: F401


def _symengine(p):
    import symengine

    xs, ks, nz, rows, cols = _symbolic_jacobian(symengine)
    fn = symengine.Lambdify(xs + ks, nz, cse=True, backend="llvm")
    inp = np.ascontiguousarray(np.hstack([p.X, p.K]))  # (B, 110): layout, untimed, see note
    buf = np.empty((p.B, len(nz)))

    def run():
        fn(inp, out=buf)

    return Runner(run, lambda idx: nz_to_dense(buf[idx], rows, cols, (NS, NS)), info={"nnz": len(nz)})


def _preload_casadi():
    import casadi  # noqa: F401


def _casadi(p, mode):
    import casadi as ca

    net = make_network()
    x, k = ca.SX.sym("x", NS), ca.SX.sym("k", NR)
    dx = ca.vertcat(*rhs_scalar([x[i] for i in range(NS)], [k[r] for r in range(NR)], net))
    Jsx = ca.jacobian(dx, x)
    rows, cols = (np.array(a) for a in Jsx.sparsity().get_triplet())  # nonzeros in column-major order
    F = ca.Function("jac_nz", [x, k], [Jsx.nz[:]])  # the nonzeros as a dense (nnz, 1) output
    Fm = F.map(p.B, mode, 2) if mode == "thread" else F.map(p.B, "serial")
    XT, KT = p.X.T, p.K.T  # (n, B) views: CasADi is column-major
    state = {}

    def run():
        state["res"] = Fm(XT, KT).full()  # DM (nnz, B) -> NumPy

    return Runner(run, lambda idx: nz_to_dense(state["res"][:, idx].T, rows, cols, (NS, NS)),
                  info={"nnz": len(rows)})


METHODS = common.symjac_methods(_symjac, _preload_symjac, "(B, 30, 30)") + common.peer_methods(sys.modules[__name__], "(B, 30, 30)",
                        "nnz entries, NumPy-vectorized, into a preallocated (nnz, B) buffer; inputs pre-transposed",
                        "nnz entries, cse=True, out= (B, nnz); input pre-stacked (B, 110)")

REFS = [("symjac dense", "symjac dense (numba-parallel)"), ("symjac sparse", "symjac sparse (numba-parallel)")]

TARGETS = [
    ("faster", "symjac sparse (numba-parallel)", "SymEngine Lambdify LLVM (1 thread)", 2.0),
    ("floor", "symjac dense (numba-parallel)", "dense", 1.3),
    ("first", "symjac dense (numba-parallel)", 5.0),
    ("first", "symjac sparse (numba-parallel)", 5.0),
]


if __name__ == "__main__":
    common.main(sys.modules[__name__])
