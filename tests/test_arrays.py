"""NumPy's array functions on tensors follow NumPy's signatures: every argument
form either becomes tensor ops or goes through NumPy's own code, never a
different answer; values and Jacobians are checked against NumPy and the
complex step, as small arrays and as tensors (after a dense contraction)."""

import numpy as np
import pytest

import symjac
from symjac.testing import complex_step_jvp

W = np.random.default_rng(8).normal(size=(40, 40)) / 6
X0 = np.random.default_rng(0).uniform(-1.0, 1.0, 40)


def tensor(x):
    return W @ x  # a dense contraction: a tensor op, and everything after it


CASES = {
    "roll_tuple_shift_one_axis": lambda y: np.roll(y.reshape(5, 8), (1, 2), axis=(0,)),
    "roll_tuple_shift_int_axis": lambda y: np.roll(y.reshape(5, 8), (1, 2), axis=1),
    "roll_tuple_shift_no_axis": lambda y: np.roll(y.reshape(5, 8), (1, 2)),
    "roll_two_axes": lambda y: np.roll(y.reshape(5, 8), (2, -3), axis=(-2, -1)),
    "roll_one_shift_two_axes": lambda y: np.roll(y.reshape(5, 8), (1,), axis=(0, 1)),
    "diff_prepend_append": lambda y: np.diff(y, prepend=0.0, append=y[:2]),
    "diff_n0_n3": lambda y: np.concatenate([np.diff(y, 0), np.diff(y.reshape(5, 8), 3, axis=1).ravel()]),
    "tril_1d": lambda y: np.tril(y[:6]).ravel() + np.triu(y[:6], 1).ravel(),
    "tril_3d": lambda y: np.tril(y.reshape(2, 4, 5), -1).ravel(),
    "kron_outer_scalars": lambda y: np.concatenate([np.kron(y, 2.0), np.outer(y, 3.0).ravel(), np.kron(2.0, y)]),
    "kron_mixed_ndim": lambda y: np.kron(y[:4].reshape(2, 2), y[4:7]).ravel(),
    "sinc_keyword": lambda y: np.sinc(x=y),
    "cumsum_keyword": lambda y: np.cumsum(a=y.reshape(5, 8), axis=0).ravel(),
    "trace_offsets": lambda y: np.array([np.trace(y.reshape(5, 8), 2), np.trace(y.reshape(5, 8), -3),
                                         np.trace(y.reshape(2, 4, 5), 1, 1, 2).sum()]),
    "diagonal_3d": lambda y: np.diagonal(y.reshape(2, 4, 5), -1, 2, 1).ravel(),
    "diag_negative_k": lambda y: np.diag(y[:3], -2).ravel() + np.diag(np.diag(y.reshape(5, 8), 3), 1).ravel()[0],
    "methods": lambda y: np.concatenate([[y.reshape(5, 8).trace(1)], y.reshape(5, 8).diagonal(), y.round(1) * y,
                                         y.cumsum()]),
    "flip_axes": lambda y: np.flip(y.reshape(2, 4, 5), (0, 2)).ravel() + np.flip(y.reshape(2, 4, 5)).ravel(),
}


@pytest.mark.parametrize("mode", ["tensor", "scalar"])
@pytest.mark.parametrize("name", CASES)
def test_array_function_forms(name, mode):
    g = CASES[name]
    f = (lambda x: g(tensor(x))) if mode == "tensor" else (lambda x: g(x))
    np.testing.assert_allclose(symjac.compile(f, backend="numpy")(X0[None])[0], f(X0), rtol=1e-14, atol=1e-14)
    J = symjac.jacobian(f, backend="numpy")(X0[None])[0]
    if name != "methods":  # round is not complex-analytic
        ref = np.stack([complex_step_jvp(f, [X0], 0, e) for e in np.eye(40)], axis=-1)
        np.testing.assert_allclose(J.reshape(ref.shape), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("call, error", [
    (lambda y: np.trace(y.reshape(5, 8), dtype=np.float32), "dtype"),
    (lambda y: np.diff(y, n=1.5), "integer"),
    (lambda y: np.flip(y.reshape(5, 8), (0, -2)), "repeated axis"),
    (lambda y: np.roll(y.reshape(5, 8), (1, 2, 3), axis=(0, 1)), "shape mismatch"),
])
def test_forms_numpy_refuses_are_refused(call, error):
    with pytest.raises(Exception, match=error):
        symjac.compile(lambda x: call(tensor(x)), backend="numpy")(X0[None])


def test_heaviside_has_no_derivative_at_nan():
    J = symjac.jacobian(lambda x: np.heaviside(x, 0.5), backend="numpy")(np.array([[np.nan, 0.0, 2.0]]))
    np.testing.assert_array_equal(J[0], np.zeros((3, 3)))
    v = symjac.compile(lambda x: np.heaviside(x, x[1]), backend="numpy")(np.array([[np.nan, 0.25, -1.0, 0.0]]))
    np.testing.assert_array_equal(v, [[np.nan, 1.0, 0.0, 0.25]])


def test_logaddexp_is_differentiable_at_infinities():
    G = symjac.gradient(lambda x: np.logaddexp(x[0], x[1]) + np.logaddexp2(x[2], x[3]), backend="numpy")
    np.testing.assert_array_equal(G(np.array([[-np.inf, -np.inf, np.inf, np.inf]])), [[0.5, 0.5, 0.5, 0.5]])


def test_elementwise_array_functions_inside_dlfeval():
    X = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    out = symjac.dlfeval(lambda X: (np.sinc(X), np.round(X * 10.0, 1)), X, backend="numpy")
    np.testing.assert_allclose(out[0], np.sinc(X), rtol=1e-15)
    np.testing.assert_allclose(out[1], np.round(X * 10.0, 1), rtol=1e-15)


def test_zero_dimensional_constants():
    f = lambda x: x * np.array(2.0) + np.maximum(x, np.float64(0.5)) * np.asarray(3.0)  # noqa: E731
    J = symjac.jacobian(f, backend="numpy")(np.array([[0.25, 1.0]]))
    np.testing.assert_allclose(J[0], np.diag([2.0, 5.0]))
