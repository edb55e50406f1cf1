"""Jacobians of array programs at the array level (issue 10).

Arrays of at least ``min_array`` entries stay tensors (8 here, so the
programs stay small); their Jacobian is
taken by compressed forward mode over a colouring of the structural
pattern.  Checked here: the pattern equals the nonzeros of a dense
complex-step Jacobian, the values match it, the array path agrees with the
unrolled one (``tensor_policy(min_work=None)``) on random programs, and the
kernel's size does not grow with the arrays.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import symjac

rng = np.random.default_rng(10)


@pytest.fixture(autouse=True)
def small_arrays_stay_whole():
    """The programs here are small (tests compile fast): keep arrays of 8 entries whole."""
    with symjac.tensor_policy(min_array=8):
        yield


def bruss1d(N, A=1.0, B=3.0, alpha=0.02):
    def f(y):
        u, v = y[:N], y[N:]
        lap_u = np.concatenate([[1.0 - 2 * u[0] + u[1]], u[:-2] - 2 * u[1:-1] + u[2:], [u[-2] - 2 * u[-1] + 1.0]])
        lap_v = np.concatenate([[3.0 - 2 * v[0] + v[1]], v[:-2] - 2 * v[1:-1] + v[2:], [v[-2] - 2 * v[-1] + 3.0]])
        return np.concatenate([A + u * u * v - (B + 1) * u + alpha * lap_u, B * u - u * u * v + alpha * lap_v])
    return f


def bruss2d(n, A=1.0, B=3.4, alpha=0.1):
    def f(y):
        u, v = y[: n * n].reshape(n, n), y[n * n:].reshape(n, n)

        def lap(w):
            return np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4 * w
        du = A + u * u * v - (B + 1) * u + alpha * lap(u)
        dv = B * u - u * u * v + alpha * lap(v)
        return np.concatenate([du.ravel(), dv.ravel()])
    return f


T200 = np.linspace(0.0, 10.0, 40)
DATA = rng.normal(size=40)


def gaussians(p):
    r = -DATA
    for k in range(3):
        r = r + p[3 * k] * np.exp(-(T200 - p[3 * k + 1]) ** 2 / (2 * p[3 * k + 2] ** 2))
    return r


S = np.where(rng.random((20, 24)) < 0.15, rng.normal(size=(20, 24)), 0.0)  # a mostly-zero constant


NU = np.where(rng.random((16, 120)) < 0.3, rng.normal(size=(16, 120)), 0.0)  # a stoichiometry-like matrix
R0, R1 = rng.integers(0, 16, 120), rng.integers(0, 16, 120)  # the two reactants of each reaction
H16 = rng.normal(size=16)


def network(c):
    """A mechanism's shape: rates of two reactants each, production rates through a
    mostly-zero stoichiometric matrix, and an energy-like row contracting those again."""
    q = np.exp(-1.0 / c[R0]) * c[R0] * c[R1]
    w = NU @ q
    return np.concatenate([w * c, [H16 @ w / (1.0 + c @ c)]])


def odeish(y):
    dy = np.zeros_like(y)
    dy[1:-1] = y[:-2] * y[2:] - np.sin(y[1:-1])  # scatter-style assignment
    dy[0], dy[-1] = y[0] ** 2, y[-1] * y[0]
    return dy


PROGRAMS = {  # name: (f, n)
    "bruss1d": (bruss1d(12), 24),
    "bruss2d": (bruss2d(5), 50),
    "gaussians": (gaussians, 9),
    "sparse_constant": (lambda x: np.tanh(S @ x) * x[:20], 24),
    "odeish": (odeish, 20),
    "gather_mask": (lambda x: x[np.arange(19, -1, -3)] * x[x.size // 2] + np.exp(x[np.arange(20) % 3 == 0]).sum(), 20),
    "where_cumsum": (lambda x: np.where(np.arange(20) % 2 == 0, x ** 2, np.cumsum(x)) + np.diff(x ** 3, prepend=0.0), 20),
    "reduce_reshape": (lambda x: np.concatenate([x.reshape(4, 5).sum(axis=0) * x[:5], x.reshape(4, 5).T.ravel() ** 3,
                                                 np.mean(x.reshape(4, 5) ** 2, axis=1)]), 20),
    "stack_split": (lambda x: np.stack([a * b for a, b in zip(np.split(x, 4), np.split(x[::-1], 4))]).ravel(), 20),
    "add_at": (lambda x: _add_at(x), 20),
    "network": (network, 16),
}


def _add_at(x):
    out = x[:17] * 0.0
    np.add.at(out, np.arange(20) % 17, x * x[::-1])
    return out


def complex_step(f, x):
    h = 1e-30
    cols = [np.asarray(f(x + 1j * h * e)).imag / h for e in np.eye(x.size)]
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_array_jacobian_pattern_and_values_match_complex_step(name):
    f, n = PROGRAMS[name]
    x = rng.uniform(0.5, 1.5, size=(2, n))
    Jsp = symjac.jacobian(f, sparse=True, backend="numpy")
    S_ = Jsp(x)
    J = symjac.jacobian(f, backend="numpy")(x)
    for b in range(2):
        want = complex_step(f, x[b].astype(complex))
        np.testing.assert_allclose(J[b], want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(S_.todense()[b], want, rtol=1e-12, atol=1e-12)
    dense_nz = set(zip(*np.nonzero(complex_step(f, x[0].astype(complex)))))
    assert set(zip(S_.rows.tolist(), S_.cols.tolist())) == dense_nz  # exact: no entry too many, none missing


def test_the_array_path_is_taken():
    f, n = PROGRAMS["bruss1d"]
    k = symjac.jacobian(f, sparse=True, backend="numpy").kernel_for(np.ones((1, n)))
    ops = {s.op for s in k.program.body}
    assert {"scatter", "view"} <= ops  # array ops, not one statement per entry
    assert len(k.program.body) < 120


def test_products_at_one_position_are_summed_before_later_ops(monkeypatch):
    """Through ``NU @ q`` each position of the Jacobian gets one product per
    reaction; they are summed there, so ``* c`` and ``H16 @`` work on the
    positions, not on the products (the values are checked above)."""
    import symjac.ad.blocks as blocks

    def flops():
        k = symjac.jacobian(network, backend="numpy").kernel_for(np.ones((1, 16)))
        return k.stats["flops_per_sample"]

    summed = flops()
    monkeypatch.setattr(blocks, "REDUCE_AT", float("inf"))
    assert summed < 0.85 * flops()  # 9,918 against 12,606 when written


@pytest.mark.parametrize("name", ["network", "add_at", "sparse_constant"])
def test_dense_jacobian_adds_its_sums_in_place(name):
    """Values summed by position are added straight into the dense Jacobian:
    it costs what the sparse values cost (once a pass more, which wrote the sums
    into a buffer and then placed that into the zeros of the Jacobian)."""
    f, n = PROGRAMS[name]
    x = np.ones((1, n))
    dense = symjac.jacobian(f, backend="numpy").kernel_for(x)
    sparse = symjac.jacobian(f, sparse=True, backend="numpy").kernel_for(x)
    assert dense.stats["flops_per_sample"] == sparse.stats["flops_per_sample"]
    assert sum(s.op == "scatter" for s in dense.program.body) == sum(s.op == "scatter" for s in sparse.program.body)


@pytest.mark.parametrize("c2", [np.r_[1.0, -np.ones(11)], np.r_[-np.ones(4), np.ones(8)]])
def test_cancelling_scales_added_to_other_values_by_position(c2):
    """``x * c1 + x * c2`` sums two scales of one block (constant, with zeros where
    c1 + c2 cancels); adding ``D @ sin(x)``, at the same positions, must keep those
    positions: dropping the zeros first put one survivor's value on the whole
    diagonal (a reviewer's case: a silently wrong Jacobian, or a shape error)."""
    n, c1, D = 12, np.ones(12), np.diag(np.linspace(1.0, 2.0, 12))

    def f(x):
        return (x * c1 + x * c2) + D @ np.sin(x)
    x = np.linspace(0.5, 1.5, n)[None]
    want = np.diag(c1 + c2) + D * np.cos(x[0])
    np.testing.assert_allclose(symjac.jacobian(f, backend="numpy")(x)[0], want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(complex_step(f, x[0].astype(complex)), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("backend", ["numba"])
def test_brusselator_sparse_on_numba(backend):
    f, n = PROGRAMS["bruss1d"]
    x = rng.uniform(0.5, 1.5, size=(3, n))
    S_ = symjac.jacobian(f, sparse=True, backend=backend)(x)
    for b in range(3):
        np.testing.assert_allclose(S_.todense()[b], complex_step(f, x[b].astype(complex)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, sparse", [("bruss1d", True), ("gaussians", False), ("add_at", False)])
def test_one_sample_variant_and_whole_tiles_agree(name, sparse):
    """A slice of at most a quarter tile runs a variant with one sample per tile
    (compiled when first needed); whole and partial tiles run the tiled one.
    Both against the complex step, on every sample, on threads at once (each
    call takes its own workspace)."""
    from concurrent.futures import ThreadPoolExecutor

    f, n = PROGRAMS[name]
    jf = symjac.jacobian(f, sparse=sparse, backend="numba")
    x = rng.uniform(0.5, 1.5, size=(1, n))
    kern = jf.kernel_for(x)
    one = jf(x)

    def compiled_tiles():  # the variants Numba has compiled (loading one compiles nothing)
        tiles = set()
        for c in kern._compiled.values():
            f = c.func
            while not hasattr(f, "signatures"):
                f = f.func
            tiles |= {c.tile} if f.signatures else set()
        return tiles

    assert compiled_tiles() == {1}
    big = kern._compile("float64").tile
    assert big >= 4
    xs = rng.uniform(0.5, 1.5, size=(big + 3, n))  # a whole tile and a partial one
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(jf, [x, xs, xs[:1], xs[1:2]]))
    assert compiled_tiles() == {1, big}

    def dense(r):
        return r.todense() if sparse else r

    assert np.array_equal(dense(results[0]), dense(one))
    for b in range(xs.shape[0]):
        np.testing.assert_allclose(dense(results[1])[b], complex_step(f, xs[b].astype(complex)),
                                   rtol=1e-12, atol=1e-12)
    # the same sample through both variants
    np.testing.assert_allclose(dense(results[2])[0], dense(results[1])[0], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(dense(results[3])[0], dense(results[1])[1], rtol=1e-14, atol=1e-14)


def _kernel_lines(N, backend):
    k = symjac.jacobian(bruss1d(N), sparse=True, backend=backend).kernel_for(np.ones((1, 2 * N)))
    return k, len(k.source.splitlines())


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_kernel_size_does_not_grow_with_the_arrays(backend):
    k1, small = _kernel_lines(100, backend)
    k2, large = _kernel_lines(10_000, backend)
    assert small == large, (small, large)
    # 8N - 4 nonzeros: u and v each a tridiagonal block, plus the two diagonal couplings
    assert k1.sparsity[0][0][0].size == 796 and k2.sparsity[0][0][0].size == 79_996


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_kinetics_keeps_its_structural_zeros(backend):
    from benchmarks.kinetics import make_problem  # the benchmark's own generator

    p = make_problem(3)
    jf = symjac.jacobian(p.rhs, sparse=True, backend=backend)
    S_ = jf(p.X, p.K)
    assert S_.nnz == 259 == int(p.net.pattern.sum())
    assert set(zip(S_.rows.tolist(), S_.cols.tolist())) == set(zip(*np.nonzero(p.net.pattern)))
    assert "scatter" in {s.op for s in jf.kernel_for(p.X, p.K).program.body}  # the sparse S @ rates stays whole
    with symjac.tensor_policy(min_work=None):
        want = symjac.jacobian(p.rhs, backend="numpy")(p.X, p.K)
    np.testing.assert_allclose(S_.todense(), want, rtol=1e-13, atol=1e-13)


# -- the array path against the unrolled path on random programs --------------------------

UNARY = [np.sin, np.exp, np.tanh, lambda a: a * a, lambda a: 1.0 / (1.5 + a * a)]
BUILD = [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: np.roll(a, 3) - b, lambda a, b: a[::-1] * b,
    lambda a, b: np.cumsum(a) * 0.1 + b, lambda a, b: np.where(np.arange(a.size) % 3 == 0, a, b),
    lambda a, b: np.concatenate([a[1:], b[:1]]), lambda a, b: a * b.sum(),
    lambda a, b: np.concatenate([np.diff(a), [b[0]]]), lambda a, b: a[np.arange(a.size) * 7 % a.size] + b,
    lambda a, b: (NU[:, :18] @ a) @ NU[:, :18] * b,  # products summed at one position, then used again
]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(BUILD) - 1), st.integers(0, len(UNARY) - 1),
                          st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=6),
       st.integers(0, 2 ** 31 - 1))
def test_array_path_agrees_with_the_unrolled_path(steps, seed):
    n = 18

    def f(x):
        vals = [x, np.sin(x)]
        for op, un, i, j in steps:
            a, b = vals[i % len(vals)], vals[j % len(vals)]
            vals.append(UNARY[un](BUILD[op](a, b)))
        return vals[-1]

    x = np.random.default_rng(seed).uniform(-1, 1, size=(2, n))
    with np.errstate(all="ignore"):
        finite = all(np.isfinite(f(xi)).all() for xi in x)
    # where the model overflows, its derivatives hold inf * 0 products, which two equivalent derivative
    # graphs (and two canonical argument orders) may place differently: nothing to compare there
    assume(finite)
    with symjac.tensor_policy(min_work=None):
        want = symjac.jacobian(f, backend="numpy")(x)
    got = symjac.jacobian(f, backend="numpy")(x)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    k = symjac.jacobian(f, sparse=True, backend="numpy")
    S_ = k(x)
    assert set(zip(S_.rows.tolist(), S_.cols.tolist())) >= set(zip(*np.nonzero(want[0])))


def test_scatter_adds_in_the_kernels_dtype():
    # the NumPy kernel's scatter-add sums by np.bincount in float64; float32 kernels add in float32, as
    # np.add.at and the Numba kernels do (a reviewer's case: 1e8 + 1 - 1e8 gave 1 instead of 0)
    def f(x):
        out = x * 0.0
        np.add.at(out, np.zeros(8, dtype=int), x)
        return out
    x = np.array([[1e8, 1, -1e8, 0, 0, 0, 0, 0]])
    for dt in (np.float32, np.float64):
        k = symjac.compile(f, backend="numpy")
        got = k(x.astype(dt))
        assert "scatter" in {s.op for s in k.program.body}
        want = np.zeros(8, dt)
        np.add.at(want, np.zeros(8, dtype=int), x[0].astype(dt))
        assert got.dtype == dt and np.array_equal(got[0], want)


def test_where_selects_the_taken_branchs_derivative():
    # the branch not taken has an infinite derivative at x = 0 (sqrt); the array path multiplied it by the
    # 0/1 partial of `where` (inf * 0 = NaN) where the scalar sweeps select the taken branch (a reviewer's case)
    def f(x):
        return np.where(x > 0.5, np.sqrt(x) * x, x * x) * np.sin(x)
    x = np.linspace(0.0, 1.0, 12)[None]
    got = symjac.jacobian(f, backend="numpy")(x)[0]
    with symjac.tensor_policy(min_work=None):
        want = symjac.jacobian(f, backend="numpy")(x)[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got[1:, 1:], complex_step(f, x[0].astype(complex))[1:, 1:], rtol=1e-13, atol=1e-15)
