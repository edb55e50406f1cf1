"""Every supported op, against complex-step and central differences, in both
modes, on every backend.  The whole table is one fused model, so each
(backend, mode) compiles one kernel; each op is still its own test."""

import functools

import numpy as np
import pytest

import symjac
from conftest import BACKENDS
from optable import OPS, fused, layout, sample

B = 5
X = sample(np.random.default_rng(42), B)
OFFSETS, N_IN = layout()


@functools.cache
def out_layout():
    sizes = [np.size(fn(X[0, o: o + k])) for (_, fn, k, *_), o in zip(OPS, OFFSETS)]
    return np.concatenate([[0], np.cumsum(sizes)])


@functools.cache
def jac(backend, mode, dtype="float64"):
    return symjac.jacobian(fused, mode=mode, backend=backend)(X.astype(dtype))


@functools.cache
def oracle(i):
    """(B, out, k) Jacobian of op i by complex step (if analytic) and central differences."""
    name, fn, k, lo, hi, analytic = OPS[i]
    o = OFFSETS[i]
    cs = np.empty((B, out_layout()[i + 1] - out_layout()[i], k))
    fd = np.empty_like(cs)
    for b in range(B):
        x = X[b, o: o + k]
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1.0
            h = 1e-5 * max(1.0, abs(x[j]))
            fd[b, :, j] = (np.ravel(fn(x + h * e)) - np.ravel(fn(x - h * e))) / (2 * h)
            if analytic:
                cs[b, :, j] = np.ravel(fn(x + 1e-30j * e)).imag / 1e-30
    return (cs if analytic else None), fd


IDS = [entry[0] for entry in OPS]


@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("i", range(len(OPS)), ids=IDS)
def test_op_derivative(i, backend, mode):
    J = jac(backend, mode)
    lo, hi = out_layout()[i], out_layout()[i + 1]
    o, k = OFFSETS[i], OPS[i][2]
    block = J[:, lo:hi, o: o + k]
    rest = np.delete(J[:, lo:hi, :], np.s_[o: o + k], axis=2)
    assert not np.any(rest), "an op's outputs depend on another op's inputs"
    cs, fd = oracle(i)
    if cs is not None:
        np.testing.assert_allclose(block, cs, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(block, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_match_numpy(backend):
    kernel = symjac.compile(fused, backend=backend)
    got = kernel(X)
    want = np.stack([fused(x) for x in X])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float32_end_to_end(backend):
    J32 = jac(backend, "fwd", "float32")
    assert J32.dtype == np.float32
    J64 = jac("numpy", "fwd")
    scale = np.maximum(1.0, np.abs(J64))
    assert np.max(np.abs(J32 - J64) / scale) < 1e-4


def test_modes_agree_exactly_on_structure():
    Jf, Jr = jac("numpy", "fwd"), jac("numpy", "rev")
    assert np.array_equal(Jf == 0, Jr == 0)
    np.testing.assert_allclose(Jf, Jr, rtol=1e-13, atol=1e-14)
