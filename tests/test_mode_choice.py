"""mode="auto" is never the costlier sweep by more than 10% in statements built
(issue 16): on hypothesis-generated graphs (node counts of both sweeps and of
the choice), and on the kinetics, arm, MLP and reversible mass-action network
models (kernel statements)."""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import symjac
from symjac.ad.sweeps import built_size, jacobian_nodes
from symjac.ir import toposort

UNARY = {"sin": np.sin, "exp": lambda a: np.exp(0.1 * a), "square": lambda a: a * a, "neg": np.negative,
         "tanh": np.tanh, "scale": lambda a: 3.0 * a, "zero_times": lambda a: 0.0 * a}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": lambda a, b: a / (2.0 + b * b),
          "max": np.maximum, "where": lambda a, b: np.where(a > b, a, 2.0 * b)}


@st.composite
def graphs(draw):
    # up to 30 inputs and outputs and 200 steps: estimates past `TRY_BOTH_FLOOR`, where the estimate decides
    n_in, n_out = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    steps = draw(st.lists(st.tuples(st.sampled_from(sorted(UNARY) + sorted(BINARY)), st.integers(0, 10 ** 6),
                                    st.integers(0, 10 ** 6)), min_size=draw(st.sampled_from([1, 100])), max_size=200))
    outs = draw(st.lists(st.integers(0, 10 ** 6), min_size=n_out, max_size=n_out))

    def f(x):
        pool = [x[i] for i in range(n_in)]
        for name, i, j in steps:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            pool.append(UNARY[name](a) if name in UNARY else BINARY[name](a, b))
        return np.stack([pool[-1 - (k % len(pool))] for k in outs])

    return f, n_in


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_auto_is_never_the_costlier_sweep_on_random_graphs(case):
    f, n_in = case
    g = symjac.trace(f, (n_in,))
    outs, ins = list(g.outputs[0].ravel()), list(g.inputs[0].ravel())
    order = toposort(outs)
    size = {m: built_size(jacobian_nodes(outs, ins, m), order) for m in ("fwd", "rev", "auto")}
    assert size["auto"] <= 1.1 * min(size["fwd"], size["rev"]) + 1, size


def network(ns, nr, seed=0):
    """The reversible mass-action network of issue 16: Arrhenius rates, equilibrium
    constants from Gibbs-like polynomials, products of concentrations by index arrays."""
    rng = np.random.default_rng(seed)
    reac, prod = rng.integers(0, ns, size=(nr, 2)), rng.integers(0, ns, size=(nr, 2))
    nu = np.zeros((ns, nr))
    for r in range(nr):
        np.add.at(nu[:, r], reac[r], -1.0)
        np.add.at(nu[:, r], prod[r], 1.0)
    rev = np.arange(0, nr, 2)
    logA, b, Ea = rng.uniform(1, 5, nr), rng.uniform(-1, 1, nr), rng.uniform(100, 1000, nr)
    g0, g1 = rng.uniform(-1, 1, ns), rng.uniform(-100, 100, ns)

    def rhs(y):
        C, T = y[:-1], y[-1]
        k = np.exp(logA + b * np.log(T) - Ea / T)
        Kc = np.exp((g0 + g1 / T) @ nu)
        return nu @ (k * np.prod(C[reac], 1)) - nu[:, rev] @ (k[rev] / Kc[rev] * np.prod(C[prod[rev]], 1))

    x = np.concatenate([rng.uniform(0.1, 1, (2, ns)), rng.uniform(800, 1500, (2, 1))], axis=1)
    return rhs, x


def _kinetics():
    from benchmarks import kinetics

    p = kinetics.make_problem(2)
    return p.rhs, (p.X, p.K)


def _arm():
    from benchmarks import arm

    p = arm.make_problem(2)
    return p.fk, (p.Q,)


def _mlp(sizes):
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((m, n)) for n, m in zip(sizes[:-1], sizes[1:])]

    def f(x):
        for w in ws[:-1]:
            x = np.tanh(w @ x)
        return ws[-1] @ x

    return f, (rng.standard_normal((2, sizes[0])),)


MODELS = {
    "network": lambda: (lambda f, x: (f, (x,)))(*network(20, 100)),
    "kinetics": _kinetics,
    "arm": _arm,
    "mlp_narrow": lambda: _mlp([3, 32, 32, 4]),
    "mlp_wide": lambda: _mlp([40, 32, 32, 12]),
}


@functools.cache
def statements(name, mode, policy):
    f, args = MODELS[name]()
    with symjac.tensor_policy(**dict(policy)):
        return len(symjac.jacobian(f, mode=mode, backend="numpy").kernel_for(*args).program.body)


@pytest.mark.parametrize("policy", [{}, {"min_array": None}], ids=["default", "unrolled"])
@pytest.mark.parametrize("name", MODELS)
def test_auto_is_never_the_costlier_sweep_on_models(name, policy):
    key = tuple(sorted(policy.items()))
    fwd, rev, auto = (statements(name, m, key) for m in ("fwd", "rev", "auto"))
    assert auto <= 1.1 * min(fwd, rev), (fwd, rev, auto)
