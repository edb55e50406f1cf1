"""dlfeval and the dljacobian family: MATLAB shape rules (0-based dim, batch
first or last, 2-D and 4-D x), against per-sample complex-step and
finite-difference constructions of the same arrays."""

import numpy as np
import pytest

import symjac
from symjac.dl import BatchMixingError

rng = np.random.default_rng(21)
B = 5
W = rng.normal(size=(4, 3))
W2 = rng.normal(size=(5, 12)) / 4


def cs_jac(g, x):
    """Complex-step Jacobian of a per-sample function: (out..., in...)."""
    cols = [np.asarray(g(x + 1e-30j * e.reshape(x.shape))).imag / 1e-30 for e in np.eye(x.size)]
    return np.stack(cols, axis=-1).reshape(np.shape(g(x)) + x.shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dljacobian_cb_layout_dim0(dtype):
    X = rng.normal(size=(3, B)).astype(dtype)
    J = symjac.dlfeval(lambda X: symjac.dljacobian(np.tanh(W @ X) * X[0], X, 0), X, backend="numpy")
    assert J.shape == (4, 3, B) and J.dtype == dtype
    for b in range(B):
        ref = cs_jac(lambda x: np.tanh(W @ x) * x[0], X[:, b].astype(float))
        np.testing.assert_allclose(J[:, :, b], ref, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)


def test_dljacobian_batch_first_dim1():
    X = rng.normal(size=(B, 3))
    J = symjac.dlfeval(lambda X: symjac.dljacobian(np.sin(X @ W.T), X, 1), X, batch_axis=0, backend="numpy")
    assert J.shape == (4, B, 3)
    for b in range(B):
        np.testing.assert_allclose(J[:, b, :], cs_jac(lambda x: np.sin(W @ x), X[b]), rtol=1e-13)


def test_dljacobian_4d_sscb_input():
    X = rng.normal(size=(2, 2, 3, B))

    def model(X):
        U = np.tanh(W2 @ X.reshape(12, X.shape[-1]))
        return U, symjac.dljacobian(U, X, 0)

    U, J = symjac.dlfeval(model, X, backend="numpy")
    assert U.shape == (5, B) and J.shape == (5, 2, 2, 3, B)
    for b in range(B):
        ref = cs_jac(lambda x: np.tanh(W2 @ x.reshape(12)), X[..., b])
        np.testing.assert_allclose(J[..., b], ref, rtol=1e-13, atol=1e-15)


def test_one_component_and_unused_x():
    X, Z = rng.normal(size=(3, B)), rng.normal(size=(2, B))
    J, Jz = symjac.dlfeval(lambda X, Z: (symjac.dljacobian(np.sum(X ** 2, axis=0, keepdims=True), X, 0),
                                         symjac.dljacobian(X * 2.0, Z, 0)), X, Z, backend="numpy")
    assert J.shape == (1, 3, B)
    np.testing.assert_allclose(J[0], 2 * X)
    assert Jz.shape == (3, 2, B) and not Jz.any()


def test_dldivergence_and_dllaplacian():
    X = rng.normal(size=(3, B))

    def field(x):
        return np.sin(x) * x[::-1] + x[0] * x[1] * x[2]

    def model(X):
        U = np.sin(X) * X[::-1] + X[0] * X[1] * X[2]
        return symjac.dldivergence(U, X, 0), symjac.dllaplacian(U, X, 0)

    div, lap = symjac.dlfeval(model, X, backend="numpy")
    assert div.shape == (1, B) and lap.shape == (3, B)
    for b in range(B):
        J = cs_jac(field, X[:, b])
        np.testing.assert_allclose(div[0, b], np.trace(J), rtol=1e-13)
        h = 1e-4
        fd = sum((field(X[:, b] + h * e) - 2 * field(X[:, b]) + field(X[:, b] - h * e)) / h ** 2 for e in np.eye(3))
        np.testing.assert_allclose(lap[:, b], fd, rtol=1e-5, atol=1e-5)


def test_higher_derivatives_and_stopping_them():
    X = rng.normal(size=(2, B))

    def second(X, enable):
        U = np.sin(X[0] * X[1]).reshape(1, X.shape[-1])
        J = symjac.dljacobian(U, X, 0, enable_higher_derivatives=enable)   # (1, 2, B)
        return symjac.dljacobian(J.reshape(2, X.shape[-1]), X, 0)         # (2, 2, B)

    H = symjac.dlfeval(lambda X: second(X, True), X, backend="numpy")
    Hh = symjac.hessian(lambda x: np.sin(x[0] * x[1]), backend="numpy")(X.T)
    np.testing.assert_allclose(np.moveaxis(H, -1, 0), Hh, rtol=1e-13)
    H0 = symjac.dlfeval(lambda X: second(X, False), X, backend="numpy")
    assert H0.shape == (2, 2, B) and not H0.any()


def test_numba_backend_and_shared_weights():
    X = rng.normal(size=(3, 7))
    J_np = symjac.dlfeval(lambda X, W: symjac.dljacobian(np.tanh(W @ X), X, 0), X, W,
                          batch_axis=(-1, None), backend="numpy")
    J_nb = symjac.dlfeval(lambda X, W: symjac.dljacobian(np.tanh(W @ X), X, 0), X, W,
                          batch_axis=(-1, None), backend="numba")
    np.testing.assert_allclose(J_nb, J_np, rtol=1e-13)


def test_errors_name_the_problem():
    X = rng.normal(size=(3, B))
    run = lambda fn, *a, **k: symjac.dlfeval(fn, *a, backend="numpy", **k)  # noqa: E731
    with pytest.raises(ValueError, match="dim must be 0 or 1"):
        run(lambda X: symjac.dljacobian(X * 2, X, 2), X)
    with pytest.raises(ValueError, match="use dim=0"):
        run(lambda X: symjac.dljacobian(X * 2, X, 1), X)
    with pytest.raises(ValueError, match="must be 2-D"):
        run(lambda X: symjac.dljacobian(X.reshape(3, 1, B), X, 0), X)
    with pytest.raises(TypeError, match="x must be a traced array"):
        run(lambda X: symjac.dljacobian(X * 2, np.ones((3, B)), 0), X)
    with pytest.raises(BatchMixingError, match="mixes samples"):
        run(lambda X: X.sum(axis=1), X)
    with pytest.raises(BatchMixingError, match="batch axis"):
        run(lambda X: X.reshape(3 * B), X)
    with pytest.raises(BatchMixingError, match="selects samples"):
        run(lambda X: X[:, 0], X)
    with pytest.raises(ValueError, match="different batch sizes"):
        run(lambda X, Y: X * Y, X, np.ones((3, B + 1)))
    with pytest.raises(TypeError, match="real numeric"):
        run(lambda X: X, np.array([["a"]]))
    with pytest.raises(TypeError, match="np.where"):
        run(lambda X: X if X[0] > 0 else -X, X)
