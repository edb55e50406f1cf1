"""Public API semantics: shapes, argnums, in_axes, composition, dtypes,
out= buffers, batch slices, sparse output."""

import numpy as np
import pytest

import symjac
from symjac.testing import check_jacobian

rng = np.random.default_rng(0)


def f2(x, y):
    return np.array([x[0] * y[1], np.sin(x[1]) + y[0] ** 2, x[0] * x[1] * y[2]])


def test_shapes_single_argnum():
    x, y = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    J = symjac.jacobian(f2, backend="numpy")(x, y)
    assert J.shape == (4, 3, 2)
    J1 = symjac.jacobian(f2, argnums=1, backend="numpy")(x, y)
    assert J1.shape == (4, 3, 3)
    np.testing.assert_allclose(J1[:, 0, 1], x[:, 0])


def test_several_argnums_and_tuple_outputs():
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 3))
    Jx, Jy = symjac.jacobian(f2, argnums=(0, 1), backend="numpy")(x, y)
    assert Jx.shape == (3, 3, 2) and Jy.shape == (3, 3, 3)

    def g(x, y):
        return x * 2.0, np.sum(y) * x[0]

    (a, b), (c, d) = symjac.jacobian(g, argnums=(0, 1), backend="numpy")(x, y)
    assert a.shape == (3, 2, 2) and b.shape == (3, 2, 3) and c.shape == (3, 2) and d.shape == (3, 3)
    np.testing.assert_allclose(a[0], 2 * np.eye(2))
    np.testing.assert_allclose(d, np.repeat(x[:, :1], 3, axis=1))


def test_matrix_input_and_output_shapes():
    def f(A):
        return A @ A.T

    A = rng.normal(size=(2, 3, 4))
    J = symjac.jacobian(f, backend="numpy")(A)
    assert J.shape == (2, 3, 3, 3, 4)
    h = 1e-6
    E = np.zeros((3, 4))
    E[1, 2] = 1
    fd = (f(A[0] + h * E) - f(A[0] - h * E)) / (2 * h)
    np.testing.assert_allclose(J[0, :, :, 1, 2], fd, atol=1e-8)


def test_in_axes_shared_and_nonzero_axis():
    W = rng.normal(size=(3, 2))

    def layer(x, W):
        return np.tanh(W @ x)

    x = rng.normal(size=(5, 2))
    J = symjac.jacobian(layer, in_axes=(0, None), backend="numpy")(x, W)
    assert J.shape == (5, 3, 2)
    t = np.tanh(x @ W.T)
    np.testing.assert_allclose(J, (1 - t ** 2)[:, :, None] * W[None], rtol=1e-13)
    # the batch axis may sit elsewhere (jax.vmap's in_axes)
    J_last = symjac.jacobian(layer, in_axes=(1, None), backend="numpy")(x.T.copy(), W)
    np.testing.assert_allclose(J_last, J)
    # derivative with respect to the shared weights, per sample
    JW = symjac.jacobian(layer, argnums=1, in_axes=(0, None), backend="numpy")(x, W)
    assert JW.shape == (5, 3, 3, 2)
    np.testing.assert_allclose(JW[:, 1, 1, :], (1 - t[:, 1:2] ** 2) * x)


def test_composition_hessian_and_value_with_jacobian():
    def energy(x):
        return np.sum(x ** 3) * x[0] + np.sin(x[1] * x[2])

    x = rng.normal(size=(3, 3))
    H = symjac.jacobian(symjac.jacobian(energy), backend="numpy")(x)
    assert H.shape == (3, 3, 3)
    grad = symjac.jacobian(energy, backend="numpy")
    h = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = h
        fd = (grad(x + e) - grad(x - e)) / (2 * h)
        np.testing.assert_allclose(H[:, :, j], fd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(H, np.swapaxes(H, 1, 2), rtol=1e-12)

    def model(x):
        return energy(x), symjac.jacobian(energy)(x)

    k = symjac.compile(model, backend="numpy")
    v, g = k(x)
    np.testing.assert_allclose(v, [energy(xi) for xi in x])
    np.testing.assert_allclose(g, grad(x))
    assert k.stats["dag_ops"] < k.stats["tree_ops"]


def test_inner_jacobian_of_non_leaf_arguments():
    # jacobian called on a computed value (not an input leaf) differentiates
    # with respect to that value, not through it
    def outer(x):
        y = np.sin(x)
        return symjac.jacobian(lambda z: z ** 2 * z[0])(y)

    x = rng.normal(size=(2, 2))
    J = symjac.compile(outer, backend="numpy")(x)
    y = np.sin(x)
    want = np.stack([2 * np.diag(yi) * yi[0] + np.outer(yi ** 2, [1, 0]) for yi in y])
    np.testing.assert_allclose(J, want, rtol=1e-13)


def test_modes_agree_and_auto():
    wide = lambda x: np.array([np.sum(np.sin(x) * x)])  # noqa: E731  (20 -> 1: reverse is cheaper)
    tall = lambda x: np.exp(np.sin(x[0]) * np.arange(1.0, 21.0))  # noqa: E731  (1 -> 20: forward is cheaper)
    from symjac.ad import estimate_costs

    for fn, n, cheaper in ((wide, 20, "rev"), (tall, 1, "fwd")):
        with symjac.tensor_policy(min_work=None):  # the scalar sweeps' cost model
            g = symjac.trace(fn, (n,))
        fwd, rev = estimate_costs(g.output_nodes(), list(g.inputs[0].ravel()))
        assert (fwd < rev) == (cheaper == "fwd")
        x = rng.normal(size=(2, n))
        Js = [symjac.jacobian(fn, mode=m, backend="numpy")(x) for m in ("auto", "fwd", "rev")]
        np.testing.assert_allclose(Js[1], Js[2], rtol=1e-13)
        np.testing.assert_allclose(Js[0], Js[1], rtol=1e-13)


def test_check_jacobian_helper_catches_a_wrong_rule(monkeypatch):
    x = np.array([0.4, 1.3])
    assert check_jacobian(lambda x: np.sin(x) * x[0], x)["complex_step"] < 1e-13
    import dataclasses

    from symjac.ir import REGISTRY, make

    # a deliberately wrong derivative of sin must be caught
    monkeypatch.setitem(REGISTRY, "sin", dataclasses.replace(REGISTRY["sin"], partials=lambda n, a: (make("sin", a),)))
    with pytest.raises(AssertionError, match="differs"):
        check_jacobian(lambda x: np.sin(x) * 1.0001, x + 0.123)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_dtypes(backend):
    f = lambda x: np.sin(x) * x  # noqa: E731
    J = symjac.jacobian(f, backend=backend)
    x = rng.normal(size=(3, 2))
    assert J(x.astype(np.float32)).dtype == np.float32
    assert J(x).dtype == np.float64
    Ji = J(np.arange(6).reshape(3, 2))
    assert Ji.dtype == np.float64
    np.testing.assert_allclose(Ji, J(np.arange(6.0).reshape(3, 2)))
    # mixed float32 / float64 arguments compute in float64
    g = symjac.jacobian(lambda x, y: x * y, backend=backend)
    assert g(x.astype(np.float32), x).dtype == np.float64


def test_out_buffers_slices_and_no_copy():
    f = lambda x: x ** 2  # noqa: E731
    J = symjac.jacobian(f, backend="numba")
    x = rng.normal(size=(10, 3))
    out = np.full((10, 3, 3), np.nan)
    r = J(x, out=out, start=2, stop=6)
    assert r is out
    assert np.isnan(out[:2]).all() and np.isnan(out[6:]).all()
    np.testing.assert_allclose(out[2:6], J(x)[2:6])
    J(x, out=out, start=0, stop=2)
    J(x, out=out, start=6, stop=10)
    np.testing.assert_allclose(out, J(x))
    x_before = x.copy()
    J(x)
    assert np.array_equal(x, x_before)  # inputs are never modified


def test_nan_and_inf_propagate():
    J = symjac.jacobian(lambda x: np.array([x[0] * x[1], np.log(x[0])]), backend="numba")
    r = J(np.array([[np.nan, 1.0], [np.inf, 2.0], [0.0, 1.0], [-1.0, 1.0]]))
    assert np.isnan(r[0, 0, 1]) and r[0, 0, 0] == 1.0
    assert r[1, 0, 1] == np.inf and r[1, 1, 0] == 0.0
    assert r[2, 1, 0] == np.inf
    assert r[3, 1, 0] == -1.0


def test_zero_batch():
    J = symjac.jacobian(lambda x: x * 2.0, backend="numpy")
    assert J(np.zeros((0, 3))).shape == (0, 3, 3)


def test_constant_output_and_unused_input():
    J = symjac.jacobian(lambda x, y: np.array([3.0, x[0]]), argnums=1, backend="numpy")
    r = J(np.ones((2, 2)), np.ones((2, 4)))
    assert r.shape == (2, 2, 4) and not r.any()


def kinetics(x, k):
    # a small mass-action network: A + B -> C, C -> A + B, B + C -> D, D -> 2 A
    rates = k * np.array([x[0] * x[1], x[2], x[1] * x[2], x[3]])
    S = np.array([[-1, 1, 0, 2], [-1, 1, -1, 0], [1, -1, -1, 0], [0, 0, 1, -1]], dtype=float)
    return S @ rates


@pytest.mark.parametrize("backend", ["numpy", "numba-parallel"])
def test_sparse_output(backend):
    x, k = rng.uniform(0.1, 1, size=(6, 4)), rng.uniform(0.1, 1, size=(6, 4))
    dense = symjac.jacobian(kinetics, in_axes=(0, 0), backend=backend)(x, k)
    S = symjac.jacobian(kinetics, in_axes=(0, 0), backend=backend, sparse=True)(x, k)
    assert isinstance(S, symjac.SparseJacobian)
    assert S.values.shape == (6, S.nnz) and S.shape == (4, 4)
    assert S.nnz == np.count_nonzero(np.any(dense != 0, axis=0))
    np.testing.assert_array_equal(S.todense(), dense)
    for b in (0, 5):
        np.testing.assert_array_equal(S.to_scipy(b).toarray(), dense[b])
    import scipy.sparse

    np.testing.assert_array_equal(S.block_diag().toarray(), scipy.sparse.block_diag(list(dense)).toarray())
    # the pattern is structural: it holds for every sample
    assert set(zip(S.rows, S.cols)) == set(zip(*np.nonzero(np.any(dense != 0, axis=0))))
    out = np.empty_like(S.values)
    S2 = symjac.jacobian(kinetics, in_axes=(0, 0), backend=backend, sparse=True)(x, k, out=out)
    assert S2.values is out


def test_sparse_with_matrix_shapes():
    f = lambda A: np.diag(A) * A[0, 0]  # noqa: E731
    A = rng.normal(size=(2, 3, 3))
    S = symjac.jacobian(f, sparse=True, backend="numpy")(A)
    assert S.shape == (3, 9) and S.out_shape == (3,) and S.in_shape == (3, 3)
    np.testing.assert_allclose(S.todense(), symjac.jacobian(f, backend="numpy")(A))


def test_trace_returns_graph_and_to_sympy():
    g = symjac.trace(lambda x: x[0] * x[1] + np.sin(x[0]), (2,))
    assert isinstance(g, symjac.Graph) and len(g) == 3
    (expr,) = g.to_sympy()
    import sympy

    a, b = sympy.symbols("x0_0 x0_1")
    assert sympy.simplify(expr - (a * b + sympy.sin(a))) == 0
    assert symjac.trace(lambda x: x * 2, np.ones(3)).inputs[0].shape == (3,)


def test_kernel_properties():
    k = symjac.compile(lambda x: np.sin(x) * np.sin(x) + x, backend="numpy")
    with pytest.raises(RuntimeError, match="first call"):
        k.source
    k(np.ones((2, 3)))
    assert "np.sin" in k.source and k.stats["dag_ops"] == 9
    assert k.path.exists() and k.path.read_text() == k.source


def test_no_perturbation_confusion():
    # the inner derivative is with respect to `a` only, although x also reaches f through the closure
    x = rng.normal(size=(3, 2))
    J = symjac.compile(lambda x: symjac.jacobian(lambda a: a * x)(x), backend="numpy")(x)
    np.testing.assert_allclose(J, np.stack([np.diag(xi) for xi in x]))
    # the same value passed as a second, non-differentiated argument
    J2 = symjac.compile(lambda x: symjac.jacobian(lambda a, p: a * p)(x, np.sin(x)), backend="numpy")(x)
    np.testing.assert_allclose(J2, np.stack([np.diag(np.sin(xi)) for xi in x]))
    J3 = symjac.jacobian(lambda a, p: a * p, in_axes=(0, 0), backend="numpy")(x, x)
    np.testing.assert_allclose(J3, np.stack([np.diag(xi) for xi in x]))


def test_matrix_norms_and_reductions_with_initial():
    A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    for ord_ in (None, "fro", 1, -1, np.inf, -np.inf):
        k = symjac.compile(lambda a: np.linalg.norm(a, ord_), backend="numpy")
        np.testing.assert_allclose(k(A[None])[0], np.linalg.norm(A, ord_), rtol=1e-14)
        k2 = symjac.compile(lambda a: np.linalg.norm(a, ord_, axis=(0, 1)), backend="numpy")
        np.testing.assert_allclose(k2(A[None])[0], np.linalg.norm(A, ord_, axis=(0, 1)), rtol=1e-14)
    v = np.array([[-1.0, -2.0, -3.0]])
    assert symjac.compile(lambda x: np.max(x, initial=0.0), backend="numpy")(v)[0] == 0.0
    assert symjac.compile(lambda x: np.min(x, initial=-5.0), backend="numpy")(v)[0] == -5.0


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_expit_derivative_is_finite_in_the_tails(backend):
    import scipy.special

    x = np.array([[-800.0], [-30.0], [0.0], [30.0], [800.0]])
    J = symjac.jacobian(scipy.special.expit, backend=backend)(x)[:, 0, 0]
    e = scipy.special.expit(x[:, 0])
    np.testing.assert_allclose(J, e * (1 - e), rtol=1e-13, atol=0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_an_empty_batch_gives_empty_results(backend):
    # the NumPy kernel's reshapes of zero samples failed (a reviewer's case), also after a first call had
    # made the fast path; a batch sum over no sample is zero
    f = lambda x: np.cumsum(x) * np.sum(x ** 2)  # noqa: E731
    with symjac.tensor_policy(min_array=8):
        jac = symjac.jacobian(f, backend=backend)
        sparse = symjac.jacobian(f, backend=backend, sparse=True)
        value = symjac.compile(f, backend=backend)
        for B in (3, 0, 0, 2, 0):
            x = np.ones((B, 10))
            assert jac(x).shape == (B, 10, 10) and value(x).shape == (B, 10)
            assert sparse(x).values.shape[0] == B
        out = np.full((3, 10, 10), 7.0)
        jac(np.ones((3, 10)), start=1, stop=1, out=out)  # an empty slice writes nothing
        assert np.all(out == 7.0)
    W = np.array([[1.0, 2.0], [0.0, 1.0]])
    for B in (3, 0):  # a weight gradient: a batch sum, zero over no sample
        g = symjac.dlfeval(lambda X, W: symjac.dlgradient(np.sum(np.tanh(W @ X)), W), np.ones((2, B)), W,
                           batch_axis=(-1, None), backend=backend)
    np.testing.assert_array_equal(g, np.zeros((2, 2)))
