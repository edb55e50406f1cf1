"""SciPy's solvers with symjac's one-sample Jacobians: the same solutions and
the same counts (nfev, njev, nlu) as with a hand-written Jacobian.  Robertson
and HIRES with BDF and Radau, a sparse stiff system (1-D Brusselator) with
``jac_sparsity`` from `symjac.sparsity` and with a CSC Jacobian,
``least_squares`` and ``root``."""

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp
from scipy.integrate import solve_ivp

import symjac

K = np.array([0.04, 1e4, 3e7])


def robertson(t, y):
    return np.array([-K[0] * y[0] + K[1] * y[1] * y[2],
                     K[0] * y[0] - K[1] * y[1] * y[2] - K[2] * y[1] ** 2,
                     K[2] * y[1] ** 2])


def robertson_jac(t, y):
    return np.array([[-K[0], K[1] * y[2], K[1] * y[1]],
                     [K[0], -K[1] * y[2] - 2 * K[2] * y[1], -K[1] * y[1]],
                     [0.0, 2 * K[2] * y[1], 0.0]])


def hires(t, y):
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    return np.array([-1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
                     -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                     -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
                     -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                     280.0 * y6 * y8 - 1.81 * y7, -280.0 * y6 * y8 + 1.81 * y7])


def hires_jac(t, y):
    J = np.zeros((8, 8))
    J[0, :3] = -1.71, 0.43, 8.32
    J[1, :2] = 1.71, -8.75
    J[2, [2, 3, 4]] = -10.03, 0.43, 0.035
    J[3, [1, 2, 3]] = 8.32, 1.71, -1.12
    J[4, [4, 5, 6]] = -1.745, 0.43, 0.43
    J[5, [3, 4, 5, 6, 7]] = 0.69, 1.71, -280.0 * y[7] - 0.43, 0.69, -280.0 * y[5]
    J[6, [5, 6, 7]] = 280.0 * y[7], -1.81, 280.0 * y[5]
    J[7, [5, 6, 7]] = -280.0 * y[7], 1.81, -280.0 * y[5]
    return J


def counts(sol):
    return sol.nfev, sol.njev, sol.nlu, sol.t.size


@pytest.mark.parametrize("method", ["BDF", "Radau"])
@pytest.mark.parametrize("problem", ["robertson", "hires"])
def test_stiff_solvers_match_a_hand_written_jacobian(problem, method):
    f, jac, y0, t1 = {"robertson": (robertson, robertson_jac, [1.0, 0.0, 0.0], 1e4),
                      "hires": (hires, hires_jac, [1, 0, 0, 0, 0, 0, 0, 0.0057], 321.8122)}[problem]
    J = symjac.jacobian(f, argnums=1, in_axes=None, backend="numpy")
    np.testing.assert_allclose(J(0.0, np.asarray(y0, float) + 0.1), jac(0.0, np.asarray(y0, float) + 0.1), rtol=1e-14)
    ours = solve_ivp(f, (0, t1), y0, method=method, jac=J, rtol=1e-6, atol=1e-10)
    hand = solve_ivp(f, (0, t1), y0, method=method, jac=jac, rtol=1e-6, atol=1e-10)
    assert ours.success and hand.success
    np.testing.assert_allclose(ours.y[:, -1], hand.y[:, -1], rtol=1e-12, atol=1e-18)
    assert counts(ours) == counts(hand)


N = 50  # the 1-D Brusselator: 2N states, a banded Jacobian


def brusselator(t, y):
    u, v = y[:N], y[N:]
    a = 1.0 / (N + 1) ** 2 / 50.0
    uu = np.concatenate([[1.0], u, [1.0]])
    vv = np.concatenate([[3.0], v, [3.0]])
    du = 1.0 + u * u * v - 4.0 * u + a * (uu[:-2] - 2.0 * u + uu[2:]) * (N + 1) ** 2 * 50.0 * 0.02
    dv = 3.0 * u - u * u * v + a * (vv[:-2] - 2.0 * v + vv[2:]) * (N + 1) ** 2 * 50.0 * 0.02
    return np.concatenate([du, dv])


def brusselator_jac(t, y):
    u, v = y[:N], y[N:]
    c = 1.0 / (N + 1) ** 2 / 50.0 * (N + 1) ** 2 * 50.0 * 0.02
    off = np.full(N - 1, c)
    Juu = sp.diags([off, 2 * u * v - 4.0 - 2 * c, off], [-1, 0, 1])
    Jvv = sp.diags([off, -u * u - 2 * c, off], [-1, 0, 1])
    return sp.bmat([[Juu, sp.diags(u * u)], [sp.diags(3.0 - 2 * u * v), Jvv]], format="csc")


def test_a_sparse_stiff_system_with_jac_sparsity_and_a_csc_jacobian():
    y0 = np.concatenate([1 + np.sin(2 * np.pi * np.arange(1, N + 1) / (N + 1)), np.full(N, 3.0)])
    pattern = symjac.sparsity(lambda y: brusselator(0.0, y), y0)
    hand = brusselator_jac(0.0, y0)
    assert (pattern != 0).toarray().tolist() == (hand != 0).toarray().tolist()  # no stored zero entries either
    by_pattern = solve_ivp(brusselator, (0, 10), y0, method="BDF", jac_sparsity=pattern, rtol=1e-6)
    by_hand_pattern = solve_ivp(brusselator, (0, 10), y0, method="BDF", jac_sparsity=hand != 0, rtol=1e-6)
    assert counts(by_pattern) == counts(by_hand_pattern)
    J = symjac.jacobian(brusselator, argnums=1, in_axes=None, sparse="csc", backend="numpy")
    got = J(0.0, y0)
    assert sp.issparse(got) and got.format == "csc" and J(0.0, y0 * 1.1) is got  # one matrix, refilled
    np.testing.assert_allclose(got.toarray(), brusselator_jac(0.0, y0 * 1.1).toarray(), rtol=1e-13, atol=1e-13)
    fresh = J(0.0, y0, copy=True)
    assert fresh is not got
    ours = solve_ivp(brusselator, (0, 10), y0, method="BDF", jac=lambda t, y: J(t, y, copy=True), rtol=1e-6)
    hand_run = solve_ivp(brusselator, (0, 10), y0, method="BDF", jac=brusselator_jac, rtol=1e-6)
    np.testing.assert_allclose(ours.y[:, -1], hand_run.y[:, -1], rtol=1e-10)
    assert counts(ours) == counts(hand_run)


def gaussians(p, x, y):
    r = -y
    for k in range(3):
        r = r + p[3 * k] * np.exp(-((x - p[3 * k + 1]) ** 2) / (2 * p[3 * k + 2] ** 2))
    return r


def gaussians_jac(p, x, y):
    cols = []
    for k in range(3):
        a, m, s = p[3 * k: 3 * k + 3]
        e = np.exp(-((x - m) ** 2) / (2 * s ** 2))
        cols += [e, a * e * (x - m) / s ** 2, a * e * (x - m) ** 2 / s ** 3]
    return np.stack(cols, axis=1)


def test_least_squares_and_root_match_a_hand_written_jacobian():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 10, 200)
    true = np.array([1.0, 3.0, 0.5, 0.7, 5.0, 0.8, 1.2, 7.5, 0.6])
    y = gaussians(true, x, 0.0) + 0.01 * rng.standard_normal(200)
    p0 = np.array([0.8, 2.8, 0.6, 0.8, 5.2, 0.7, 1.0, 7.3, 0.5])
    J = symjac.jacobian(gaussians, in_axes=None, backend="numpy")
    ours = so.least_squares(gaussians, p0, jac=J, args=(x, y))
    hand = so.least_squares(gaussians, p0, jac=gaussians_jac, args=(x, y))
    np.testing.assert_allclose(ours.x, hand.x, rtol=1e-10)
    assert (ours.nfev, ours.njev) == (hand.nfev, hand.njev)

    def broyden(z):  # Broyden's tridiagonal system
        zz = np.concatenate([[0.0], z, [0.0]])
        return (3.0 - 2.0 * z) * z - zz[:-2] - 2.0 * zz[2:] + 1.0

    def broyden_jac(z):
        n = z.size
        return np.diag(3.0 - 4.0 * z) - np.eye(n, k=-1) - 2.0 * np.eye(n, k=1)

    Jb = symjac.jacobian(broyden, in_axes=None, backend="numpy")
    z0 = -np.ones(10)
    ours = so.root(broyden, z0, jac=Jb, method="hybr")
    hand = so.root(broyden, z0, jac=broyden_jac, method="hybr")
    assert ours.success
    np.testing.assert_allclose(ours.x, hand.x, rtol=1e-12)
    assert (ours.nfev, ours.njev) == (hand.nfev, hand.njev)


def test_one_sample_results_equal_the_batched_ones():
    Y = np.abs(np.random.default_rng(1).normal(size=(5, 8)))
    batched = symjac.jacobian(hires, argnums=1, in_axes=(None, 0), backend="numba")(0.0, Y)
    one = symjac.jacobian(hires, argnums=1, in_axes=None, backend="numba")
    for b in range(5):
        assert np.array_equal(one(0.0, Y[b]), batched[b])
    k = symjac.compile(hires, in_axes=None, backend="numpy")
    np.testing.assert_allclose(k(0.0, Y[0]), hires(0.0, Y[0]), rtol=1e-15)
    out = np.empty((8, 8))
    assert one(0.0, Y[2], out=out) is out and np.array_equal(out, batched[2])
    with pytest.raises(TypeError, match="takes one sample"):
        one(0.0, Y[2], start=0, stop=1)
    with pytest.raises(ValueError, match="sparse='csr' gives one SciPy matrix per call"):
        symjac.jacobian(hires, argnums=1, in_axes=(None, 0), sparse="csr")


def test_a_pruned_csr_matrix_is_replaced_not_written_past():
    S = symjac.jacobian(lambda y: np.array([y[0] * y[1], y[1] ** 2]), in_axes=None, sparse="csr", backend="numpy")
    M = S(np.array([0.0, 1.0]))
    S(np.array([0.0, 1.0]))
    M.eliminate_zeros()  # the caller restructures the matrix it was given
    np.testing.assert_allclose(S(np.array([2.0, 3.0])).toarray(), [[3.0, 2.0], [0.0, 6.0]])
