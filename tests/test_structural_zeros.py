"""The zeros of a constant matrix in a contraction are structural, as in
scipy.sparse (issue 16): S @ v costs nnz(S) in values and derivatives, an
infinity in v reaches only the outputs S connects it to, and both the unrolled
and the tensor forms agree with scipy.sparse; 0.0 * x stays IEEE."""

import numpy as np
import pytest
import scipy.sparse

import symjac

RNG = np.random.default_rng(2)
S = np.zeros((4, 40))
S[[0, 1, 2, 3, 0, 2], [3, 10, 20, 39, 10, 3]] = [1.5, -1.0, 2.0, 1.0, 0.5, -3.0]
T = np.zeros((6, 5))
T[[0, 2, 3, 5], [1, 4, 0, 2]] = [2.0, -1.0, 0.5, 3.0]
RUNS = {"unrolled": {"min_array": None}, "tensor": {"min_array": 1}}


def model(x):
    e = np.exp(x)
    return np.concatenate([S @ e, e[:6] @ T, np.einsum("ij,j->i", T.T, x[:6] ** 2),
                           np.tensordot(T, np.sin(x[:5]), axes=1), np.dot(S, x) * x[0]])


def sparse_model(x):
    e = np.exp(x)
    St, Tt = scipy.sparse.csr_matrix(S), scipy.sparse.csr_matrix(T)
    return np.concatenate([St @ e, Tt.T @ e[:6], Tt.T @ (x[:6] ** 2), Tt @ np.sin(x[:5]), (St @ x) * x[0]])


def test_unrolled_contraction_costs_nnz():
    g = symjac.trace(lambda x: S @ np.exp(x), (40,))
    assert len(g.nodes()) <= 4 + 6 + 6 + 3  # inputs, exps, products and sums of the 6 nonzeros only
    pattern = symjac.sparsity(lambda x: S @ np.exp(x), np.zeros(40))
    np.testing.assert_array_equal(pattern.toarray() != 0, S != 0)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_values_and_infinities_as_scipy_sparse(backend, run):
    x = RNG.uniform(-1, 1, (3, 40))
    x[1, 10], x[2, 3], x[2, 7] = np.inf, np.nan, -np.inf
    with symjac.tensor_policy(**RUNS[run]):
        got = symjac.compile(model, backend=backend)(x)
    with np.errstate(all="ignore"):
        want = np.stack([sparse_model(r) for r in x])
        numpy_dense = np.stack([model(r) for r in x])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)  # NaN and inf where scipy.sparse has them
    assert np.isnan(numpy_dense[1, 2:4]).all() and np.isfinite(got[1, 2:4]).all()  # rows 2, 3 skip column 10


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_derivatives_against_the_complex_step(mode, run):
    x = RNG.uniform(-1, 1, (2, 40))
    with symjac.tensor_policy(**RUNS[run]):
        J = symjac.jacobian(model, mode=mode, backend="numpy")(x)
    for b in range(2):
        cs = np.stack([model(x[b] + 1e-30j * np.eye(40)[j]).imag / 1e-30 for j in range(40)], axis=1)
        np.testing.assert_allclose(J[b], cs, rtol=1e-13, atol=1e-15)


def test_a_scalar_zero_product_stays_ieee():
    got = symjac.compile(lambda x: 0.0 * x, backend="numpy")(np.array([[np.inf, 1.0]]))
    assert np.isnan(got[0, 0]) and got[0, 1] == 0.0
