"""jvp, vjp, hvp and value_and_gradient: against the complex step and against
products with `jacobian`/`hessian`, batched and shared arguments, one sample."""

import numpy as np
import pytest

import symjac
from symjac.testing import complex_step_jvp

rng = np.random.default_rng(3)
W = rng.standard_normal((4, 3))


def f(x, w):
    return np.tanh(w @ x) * x[0] + np.sin(x[1:].sum())


def scalar(x, w):
    return np.sum(np.exp(0.3 * (w @ x)) * x[0]) + x[1] ** 3


X = rng.uniform(-1, 1, (6, 3))
V = rng.standard_normal((6, 3))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_jvp_against_complex_step_and_jacobian(backend):
    y, t = symjac.jvp(f, (X, W), (V, np.zeros_like(W)), in_axes=(0, None), backend=backend)
    J = symjac.jacobian(f, in_axes=(0, None), backend="numpy")(X, W)
    np.testing.assert_allclose(y, np.stack([f(x, W) for x in X]), rtol=1e-14)
    np.testing.assert_allclose(t, np.einsum("bij,bj->bi", J, V), rtol=1e-13, atol=1e-14)
    for b in range(3):
        np.testing.assert_allclose(t[b], complex_step_jvp(f, (X[b], W), 0, V[b]), rtol=1e-13, atol=1e-14)
    # a shared primal with a shared tangent: the weights' direction
    dW = rng.standard_normal(W.shape)
    _, tw = symjac.jvp(f, (X, W), (np.zeros_like(X), dW), in_axes=(0, None), backend=backend)
    for b in range(3):
        np.testing.assert_allclose(tw[b], complex_step_jvp(f, (X[b], W), 1, dW), rtol=1e-13, atol=1e-14)


def test_vjp_against_jacobian_transpose():
    y, pullback = symjac.vjp(f, X, W, in_axes=(0, None), backend="numpy")
    ct = rng.standard_normal(y.shape)
    dx, dw = pullback(ct)
    Jx, Jw = symjac.jacobian(f, argnums=(0, 1), in_axes=(0, None), backend="numpy")(X, W)
    np.testing.assert_allclose(dx, np.einsum("bi,bij->bj", ct, Jx), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dw, np.einsum("bi,bijk->bjk", ct, Jw), rtol=1e-13, atol=1e-14)
    assert dw.shape == (6,) + W.shape  # per sample: the pullback of each sample's value


def test_hvp_against_the_hessian_and_one_sample():
    Hv = symjac.hvp(scalar, in_axes=(0, None), backend="numpy")(X, W, V)
    H = symjac.hessian(scalar, in_axes=(0, None), backend="numpy")(X, W)
    np.testing.assert_allclose(Hv, np.einsum("bij,bj->bi", H, V), rtol=1e-13, atol=1e-13)
    one = symjac.hvp(scalar, in_axes=None, backend="numpy")
    np.testing.assert_allclose(one(X[2], W, V[2]), Hv[2], rtol=1e-14)
    with pytest.raises(ValueError, match="hvp needs f to return one scalar"):
        symjac.hvp(f, in_axes=(0, None), backend="numpy")(X, W, V)


def test_value_and_gradient_fused():
    vg = symjac.value_and_gradient(scalar, in_axes=(0, None), backend="numpy")
    value, grad = vg(X, W)
    np.testing.assert_allclose(value, [scalar(x, W) for x in X], rtol=1e-14)
    np.testing.assert_allclose(grad, symjac.gradient(scalar, in_axes=(0, None), backend="numpy")(X, W), rtol=1e-14)
    assert len(vg._kernels) == 1  # one kernel for both


def test_jvp_checks_the_tangent_shapes():
    with pytest.raises(ValueError, match="tangent 0 has per-sample shape"):
        symjac.jvp(f, (X, W), (V[:, :2], np.zeros_like(W)), in_axes=(0, None), backend="numpy")
    with pytest.raises(ValueError, match="1 primal\\(s\\) but 2 tangent"):
        symjac.jvp(f, (X,), (V, V))


def test_has_aux_returns_the_aux_beside_the_result():
    def fa(x, w):
        y = np.sum(np.exp(0.3 * (w @ x)) * x[0])
        return y, (w @ x, x[0] * 2)

    g, (wx, x2) = symjac.gradient(fa, in_axes=(0, None), has_aux=True, backend="numpy")(X, W)
    np.testing.assert_allclose(g, symjac.gradient(lambda x, w: fa(x, w)[0], in_axes=(0, None), backend="numpy")(X, W))
    np.testing.assert_allclose(wx, X @ W.T, rtol=1e-14)
    np.testing.assert_allclose(x2, X[:, 0] * 2)
    J, aux = symjac.jacobian(lambda x: (np.sin(x), np.cos(x)), has_aux=True, backend="numpy")(X)
    np.testing.assert_allclose(aux, np.cos(X))
    H, aux = symjac.hessian(lambda x: (np.sum(x ** 3), x), has_aux=True, backend="numpy")(X)
    np.testing.assert_allclose(H, np.einsum("bi,ij->bij", 6 * X, np.eye(3)), atol=1e-14)
    with pytest.raises(ValueError, match="has_aux=True needs f to return a pair"):
        symjac.gradient(lambda x: np.sum(x), has_aux=True, backend="numpy")(X)
    with pytest.raises(ValueError, match="has_aux=True and sparse="):
        symjac.jacobian(lambda x: (x, x), has_aux=True, sparse=True)


def test_keyword_arguments_are_static_values():
    def g(x, *, scale=1.0, kind="sin", table=None):
        base = np.sin(x) if kind == "sin" else np.cos(x)
        return base * scale + (0.0 if table is None else table @ x)

    J = symjac.jacobian(g, backend="numpy")
    np.testing.assert_allclose(J(X, scale=2.0), 2 * J(X), rtol=1e-15)
    np.testing.assert_allclose(J(X, kind="cos"), -np.einsum("bi,ij->bij", np.sin(X), np.eye(3)), rtol=1e-15)
    table = np.ones((3, 3))
    first = J(X, table=table)
    table[0, 0] = 5.0  # changed in place: a new static value, traced again (never a stale kernel)
    np.testing.assert_allclose(J(X, table=table) - first, np.broadcast_to([[4.0, 0, 0], [0, 0, 0], [0, 0, 0]], first.shape))
    assert len(J._statics) == 4
    k = symjac.compile(g, in_axes=None, backend="numpy")
    np.testing.assert_allclose(k(X[0], scale=3.0), 3 * np.sin(X[0]), rtol=1e-15)


def _cs_jacobian(fn, x, *rest):
    """Complex-step Jacobian of fn(x, *rest) with respect to x (one column per entry)."""
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size, complex)
        e[j] = 1e-30j
        cols.append(np.ravel(fn(x + e, *rest)).imag / 1e-30)
    return np.stack(cols, axis=-1)


def test_vjp_and_hvp_against_the_complex_step():
    y, pullback = symjac.vjp(f, X, W, in_axes=(0, None), backend="numpy")
    ct = rng.standard_normal(y.shape)
    dx, _ = pullback(ct)
    for b in range(3):
        np.testing.assert_allclose(dx[b], ct[b] @ _cs_jacobian(f, X[b], W), rtol=1e-13, atol=1e-14)
    Hv = symjac.hvp(scalar, in_axes=(0, None), backend="numpy")(X, W, V)
    for b in range(3):  # central differences of the complex-step gradient along v
        eps = 1e-5
        g = lambda x: _cs_jacobian(scalar, x, W)  # noqa: E731
        want = ((g(X[b] + eps * V[b]) - g(X[b] - eps * V[b])) / (2 * eps)).reshape(-1)
        np.testing.assert_allclose(Hv[b], want, rtol=1e-7, atol=1e-8)


def test_review_regressions_never_silently_wrong():
    x = np.array([0.3, -0.7])
    ca, cb = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    y, pb = symjac.vjp(lambda x: {"a": np.sin(x), "b": 3.0 * x}, x, in_axes=None, backend="numpy")
    want = np.cos(x) * ca + 3 * cb
    np.testing.assert_allclose(pb({"b": cb, "a": ca})[0], want, rtol=1e-15)  # by key, not by position
    with pytest.raises(ValueError, match="the cotangent must be a dict with keys"):
        pb({"p": ca, "q": cb})
    _, pb = symjac.vjp(lambda x: (np.sin(x), 3.0 * x), x, in_axes=None, backend="numpy")
    np.testing.assert_allclose(pb((ca, cb))[0], want, rtol=1e-15)  # a tuple output's tuple cotangent
    g = lambda *a: sum(np.sin(v) for v in a)  # noqa: E731
    symjac.jvp(g, (x,), (x,), in_axes=None, backend="numpy")
    np.testing.assert_allclose(symjac.jvp(g, (x, x), (x, x), in_axes=None, backend="numpy")[1], 2 * np.cos(x) * x)
    scale = [2.0]
    h = lambda x: scale[0] * x  # noqa: E731
    symjac.jvp(h, (x,), (np.ones(2),), in_axes=None, backend="numpy")
    scale[0] = 7.0  # a changed captured value: traced again
    np.testing.assert_allclose(symjac.jvp(h, (x,), (np.ones(2),), in_axes=None, backend="numpy")[1], [7.0, 7.0])
    xx = x.copy()
    _, pb = symjac.vjp(np.sin, xx, in_axes=None, backend="numpy")
    xx += 1  # the pullback keeps the primals of its vjp call
    np.testing.assert_allclose(pb(np.ones(2))[0], np.cos(x), rtol=1e-15)
    J = symjac.jacobian(lambda x, s: s * x ** 2, in_axes=(0, None), backend="numpy")
    J(np.ones((3, 2)), 3.0)
    np.testing.assert_allclose(J(np.ones((3, 2)), 3.0)[0], 6 * np.eye(2))  # a Python float on the fast path
    fd = lambda p, x: p["w"] * x + p["b"]  # noqa: E731
    _, t = symjac.jvp(fd, ({"w": 2.0 * np.ones(2), "b": np.ones(2)}, np.ones((3, 2))),
                      ({"w": np.ones(2), "b": np.zeros(2)}, np.zeros((3, 2))), in_axes=({"w": None, "b": None}, 0),
                      backend="numpy")
    np.testing.assert_allclose(t, np.ones((3, 2)))
    (value, aux), grad = symjac.value_and_gradient(lambda x: (np.sum(x ** 2), x[0]), has_aux=True,
                                                   backend="numpy")(np.array([[1.0, 2.0]]))
    assert value.tolist() == [5.0] and aux.tolist() == [1.0] and grad.tolist() == [[2.0, 4.0]]
