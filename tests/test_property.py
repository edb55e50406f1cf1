"""Property tests: random expression graphs, differentiated in both modes,
against the complex step (analytic ops) or central differences (kinks)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symjac

N_IN = 4

ANALYTIC_UNARY = {
    "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "arctan": np.arctan, "neg": np.negative,
    "square": lambda a: a * a, "expsin": lambda a: np.exp(np.sin(a)),
    "soft_sqrt": lambda a: np.sqrt(1.0 + a * a), "soft_log": lambda a: np.log(1.0 + a * a),
    "cube": lambda a: a ** 3, "sinh_small": lambda a: np.sinh(np.tanh(a)),
}
ANALYTIC_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "soft_div": lambda a, b: a / (1.0 + b * b), "scaled_add": lambda a, b: 0.5 * a + 2.0 * b,
    "pow_pos": lambda a, b: (1.5 + np.sin(a)) ** np.cos(b),
}
KINK_UNARY = {"abs": np.abs, "relu": lambda a: np.maximum(a, 0.0), "clip": lambda a: np.clip(a, -0.5, 0.5)}
KINK_BINARY = {
    "max": np.maximum, "min": np.minimum, "where": lambda a, b: np.where(a > b, a * b, a - b),
    "hypot": lambda a, b: np.hypot(a, b + 3.0),
}


def programs(unary, binary):
    step = st.one_of(
        st.tuples(st.just(1), st.sampled_from(sorted(unary)), st.integers(0, 10 ** 6), st.just(0)),
        st.tuples(st.just(2), st.sampled_from(sorted(binary)), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
    )
    return st.tuples(st.lists(step, min_size=1, max_size=25), st.integers(1, 4), st.integers(0, 2 ** 31))


def build(steps, n_out, unary, binary):
    def f(x):
        pool = [x[i] for i in range(N_IN)]
        for arity, name, i, j in steps:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            pool.append(unary[name](a) if arity == 1 else binary[name](a, b))
        outs = pool[-n_out:]
        return np.stack([o + 0.0 * x[0] for o in outs]) if not isinstance(outs[0], complex) else np.stack(outs)
    return f


def check(f, seed, oracle):
    x = np.random.default_rng(seed).uniform(-1.5, 1.5, size=(2, N_IN))
    Jf = symjac.jacobian(f, mode="fwd", backend="numpy")(x)
    Jr = symjac.jacobian(f, mode="rev", backend="numpy")(x)
    scale = max(1.0, float(np.abs(Jf).max()))
    assert np.max(np.abs(Jf - Jr)) <= 1e-12 * scale
    # the compiled values agree with plain NumPy
    np.testing.assert_allclose(symjac.compile(f, backend="numpy")(x), np.stack([f(xi) for xi in x]),
                               rtol=1e-13, atol=1e-13)
    for b in range(2):
        ref = np.stack([oracle(f, x[b], j) for j in range(N_IN)], axis=-1)
        tol = 1e-11 if oracle is complex_step else 1e-5
        assert np.max(np.abs(Jf[b] - ref)) <= tol * max(scale, float(np.abs(ref).max())), (Jf[b], ref)


def complex_step(f, x, j):
    e = np.zeros(N_IN, dtype=complex)
    e[j] = 1e-30j
    return f(x + e).imag / 1e-30


def central(f, x, j):
    e = np.zeros(N_IN)
    e[j] = 1e-6
    return (f(x + e) - f(x - e)) / 2e-6


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(programs(ANALYTIC_UNARY, ANALYTIC_BINARY))
def test_random_analytic_graphs_match_complex_step(prog):
    steps, n_out, seed = prog
    check(build(steps, n_out, ANALYTIC_UNARY, ANALYTIC_BINARY), seed, complex_step)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs({**ANALYTIC_UNARY, **KINK_UNARY}, {**ANALYTIC_BINARY, **KINK_BINARY}))
def test_random_graphs_with_kinks_match_central_differences(prog):
    steps, n_out, seed = prog
    f = build(steps, n_out, {**ANALYTIC_UNARY, **KINK_UNARY}, {**ANALYTIC_BINARY, **KINK_BINARY})
    check(f, seed, central)


# -- random tensor programs: the same ops on whole tensors (loops, not scalars) -----------------

_TW = np.random.default_rng(3).normal(size=(3, 12, 12)) / 4
TENSOR_STEPS = {
    "matmul0": lambda a, b: _TW[0] @ a, "matmul1": lambda a, b: np.tanh(_TW[1] @ a + 0.1),
    "einsum": lambda a, b: np.einsum("ij,j->i", _TW[2], a * b),
    "sum_bcast": lambda a, b: a * np.sum(b) / 12, "elem_bcast": lambda a, b: a + b[3] * b[7],
    "reverse_mean": lambda a, b: a[::-1] - np.mean(a),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(sorted({**ANALYTIC_UNARY, **ANALYTIC_BINARY, **TENSOR_STEPS})),
                          st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)), min_size=1, max_size=12),
       st.integers(0, 2 ** 31))
def test_random_tensor_programs_match_complex_step(steps, seed):
    def f(x):
        pool = [np.tanh(_TW[0][:, :N_IN] @ x), np.sin(_TW[1][:, N_IN:2 * N_IN] @ x)]
        for name, i, j in steps:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            if name in ANALYTIC_UNARY:
                pool.append(ANALYTIC_UNARY[name](a))
            elif name in ANALYTIC_BINARY:
                pool.append(ANALYTIC_BINARY[name](a, b))
            else:
                pool.append(TENSOR_STEPS[name](a, b))
        return np.concatenate([pool[-1][:3], [np.sum(pool[-1] * pool[0])]])

    with symjac.tensor_policy(min_work=1, min_operand=1):  # constant weights become tensor ops too
        g = symjac.trace(f, (N_IN,))
        assert any(n.op == "einsum" for n in g.nodes())
        check(f, seed, complex_step)
