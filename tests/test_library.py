"""SciPy's Python-level functions in a traced model (issue 15): logsumexp,
softmax, log_softmax, multigammaln and the scipy.stats densities, against
SciPy's values and central differences; SciPy's functions untouched after a
trace; and errors that name a library function that cannot be traced."""

import functools
import statistics

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats as st
from scipy.special import logsumexp as imported_logsumexp

import symjac

B = 3
RNG = np.random.default_rng(11)
COV = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
MEAN = np.array([0.5, -1.0, 0.25])

ROWS = [  # name, per-sample function, input length, sampling interval
    ("logsumexp", lambda x: np.concatenate([np.atleast_1d(scipy.special.logsumexp(x)),
                                            scipy.special.logsumexp(x.reshape(2, 2), axis=1),
                                            np.atleast_1d(imported_logsumexp(x, b=np.array([1.0, 2.0, 0.5, 1.0])))]),
     4, -3, 3),
    ("logsumexp_sign", lambda x: np.concatenate(scipy.special.logsumexp(x, b=np.array([1.0, -1.0, 0.5, -0.2]),
                                                                        return_sign=True, keepdims=True)), 4, -3, 3),
    ("softmax", lambda x: np.concatenate([scipy.special.softmax(x), scipy.special.softmax(x.reshape(2, 2), axis=0).ravel()]),
     4, -3, 3),
    ("log_softmax", lambda x: scipy.special.log_softmax(x.reshape(2, 2), axis=1).ravel(), 4, -3, 3),
    ("norm", lambda x: np.concatenate([st.norm.logpdf(x, 0.5, 2.0), st.norm.pdf(x), st.norm.cdf(x, loc=0.1),
                                       st.norm.logcdf(x), st.norm.sf(x, 0.0, 3.0), st.norm.logsf(x),
                                       st.norm(1.0, 0.5).logpdf(x)]), 2, -2, 2),
    ("norm_traced_params", lambda x: np.atleast_1d(st.norm.logpdf(x[0], loc=x[1], scale=x[2])), 3, 0.5, 2),
    ("t", lambda x: np.concatenate([st.t.logpdf(x, 3.5), st.t.pdf(x, 2.0, 0.5, 1.5), st.t.cdf(x, 4.0),
                                    st.t.sf(x, 2.5)]), 2, -2, 2),
    ("gamma", lambda x: np.concatenate([st.gamma.logpdf(x, 2.5), st.gamma.pdf(x, 1.5, scale=2.0),
                                        st.gamma.cdf(x, 3.0), st.gamma.sf(x, 2.0)]), 2, 0.2, 4),
    ("beta", lambda x: np.concatenate([st.beta.logpdf(x, 2.0, 3.0), st.beta.pdf(x, 1.5, 2.5),
                                       st.beta.cdf(x, 2.0, 1.5), st.beta.sf(x, 3.0, 2.0)]), 2, 0.1, 0.9),
    ("mvn", lambda x: np.array([st.multivariate_normal.logpdf(x, MEAN, COV), st.multivariate_normal.pdf(x, MEAN, COV),
                                st.multivariate_normal(MEAN, COV).logpdf(x)]), 3, -1, 1),
    ("multigammaln", lambda x: np.atleast_1d(scipy.special.multigammaln(x[0] + 3.0, 3)), 1, 0.5, 3),
    ("polygamma", lambda x: np.concatenate([scipy.special.polygamma(1, x), scipy.special.polygamma([0, 2], x)]),
     2, 0.5, 3),
]


def sample(row):
    _, _, k, lo, hi = row
    return RNG.uniform(lo, hi, size=(B, k))


INPUTS = [sample(r) for r in ROWS]


@functools.cache
def jac(i, backend, mode):
    return symjac.jacobian(ROWS[i][1], mode=mode, backend=backend)


def central(fn, x):
    cols = []
    for j in range(len(x)):
        e = np.zeros(len(x))
        e[j] = 1e-6
        cols.append((np.ravel(fn(x + e)) - np.ravel(fn(x - e))) / 2e-6)
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("i", range(len(ROWS)), ids=[r[0] for r in ROWS])
def test_against_scipy(i, backend, mode):
    fn, x = ROWS[i][1], INPUTS[i]
    if backend == "numba" and mode == "rev" and ROWS[i][0] not in ("logsumexp", "norm", "t"):
        pytest.skip("reverse mode on Numba: three rows stand for the rest (the same ops)")
    values = symjac.compile(fn, backend=backend)(x)
    np.testing.assert_allclose(values, np.stack([np.ravel(fn(r)) for r in x]), rtol=1e-12, atol=1e-14)
    J = jac(i, backend, mode)(x)
    for b in range(B):
        np.testing.assert_allclose(J[b], central(fn, x[b]), rtol=2e-6, atol=2e-7)


def test_scipy_untouched_after_a_trace():
    codes = [scipy.special.logsumexp.__code__, st.rv_continuous.logpdf.__code__]
    symjac.jacobian(ROWS[0][1], backend="numpy")(INPUTS[0])
    assert [scipy.special.logsumexp.__code__, st.rv_continuous.logpdf.__code__] == codes
    assert scipy.special.logsumexp([1.0, 2.0]) == pytest.approx(2.313261687518223)


def test_constants_inside_a_model_run_scipys_own_code():
    c = st.norm.logpdf(np.array([0.3, 1.2]))  # no traced argument: SciPy's result, a constant
    k = symjac.compile(lambda x: x + st.norm.logpdf(np.array([0.3, 1.2])) + scipy.special.logsumexp([0.0, 1.0]),
                       backend="numpy")
    np.testing.assert_allclose(k(np.zeros((1, 2))), [c + np.log1p(np.e)])


def test_support_and_invalid_parameters_follow_scipy():
    f = lambda x: np.concatenate([st.gamma.logpdf(x, 2.0), st.beta.pdf(x, 2.0, 2.0), st.norm.logpdf(x, 0.0, -1.0),
                                  st.gamma.cdf(x, 2.0)])
    x = np.array([[-1.0, 0.5], [2.0, 0.0]])
    np.testing.assert_allclose(symjac.compile(f, backend="numpy")(x), np.stack([f(r) for r in x]), rtol=1e-13)


def test_a_distribution_symjac_does_not_trace_is_named():
    with pytest.raises(symjac.UnsupportedOperationError, match=r"scipy\.stats\.cauchy\.logpdf is not traceable"):
        symjac.jacobian(lambda x: st.cauchy.logpdf(x), backend="numpy")(INPUTS[4])


def test_a_library_function_that_branches_is_named():
    with pytest.raises(symjac.UnsupportedOperationError, match=r"statistics\.median is not traceable") as info:
        symjac.jacobian(lambda x: np.atleast_1d(statistics.median([x[0], x[1], x[2]])), backend="numpy")(INPUTS[5])
    assert isinstance(info.value.__cause__, symjac.TracerBoolError)


def test_every_routed_function_exists_in_this_scipy():
    from symjac.frontend.library import TRACED, _library_function

    import scipy.stats._multivariate  # noqa: F401  (loaded by scipy.stats; named for the check)

    missing = [f"{m}.{q}" for m, q in TRACED if _library_function(m, q) is None]
    assert not missing, f"SciPy moved these (update symjac.frontend.library.TRACED): {missing}"


SECOND = [  # scalar functions whose Hessians likelihood fits and the PINN paths take
    ("logsumexp", lambda x: scipy.special.logsumexp(x * np.array([1.0, 2.0, -1.0]))),
    ("softmax", lambda x: scipy.special.softmax(x)[0] * 3.0 + scipy.special.log_softmax(x)[2]),
    ("norm_t", lambda x: np.sum(st.norm.logpdf(x, 0.3, 1.7)) + np.sum(st.t.logpdf(x, 3.0))),
    ("gamma_beta", lambda x: np.sum(st.gamma.logpdf(np.abs(x) + 0.5, 2.5)) + np.sum(st.beta.logpdf(x * 0.1 + 0.5, 2.0, 3.0))),
    ("mvn", lambda x: st.multivariate_normal.logpdf(x, MEAN, COV)),
]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name,fn", SECOND, ids=[s[0] for s in SECOND])
def test_hessians_against_differences_of_the_gradient(name, fn, backend):
    x = RNG.uniform(-1.0, 1.0, size=(2, 3))
    H = symjac.hessian(fn, backend=backend)(x)
    g = symjac.gradient(fn, backend="numpy")
    for b in range(2):
        cols = []
        for j in range(3):
            e = np.zeros((1, 3))
            e[0, j] = 1e-5
            cols.append((g(x[b: b + 1] + e) - g(x[b: b + 1] - e))[0] / 2e-5)
        np.testing.assert_allclose(H[b], np.stack(cols, axis=1), rtol=1e-6, atol=1e-8)


# -- regressions from review (issue 15): each was a silently wrong value ----------------------------

EDGES = [  # name, per-sample function, one input row, in which NaN/inf/edge values are the point
    ("logsumexp_masked_max", lambda x: np.atleast_1d(scipy.special.logsumexp(x, b=[0.0, 1.0])), [1000.0, 0.0]),
    ("lists", lambda x: np.concatenate([np.atleast_1d(scipy.special.logsumexp([x[0], x[1]])),
                                        scipy.special.softmax([x[0], x[1]]), st.norm.logpdf([x[0], x[1]])]), [1.0, 2.0]),
    ("mvn_dimension_one", lambda x: np.concatenate([st.multivariate_normal.logpdf(x, mean=0, cov=2),
                                                    st.multivariate_normal.pdf(x)]), [0.1, 0.2, 0.3]),
    ("support_ends", lambda x: np.array([st.gamma.pdf(x[0], 1, scale=0.5), st.gamma.logpdf(x[0], 0.5),
                                         st.gamma.logpdf(x[0], 2.0), st.beta.pdf(x[0], 1, 2), st.beta.pdf(x[1], 2, 1),
                                         st.gamma.logpdf(x[2], 2.0), st.beta.logpdf(x[2], 2, 2)]), [0.0, 1.0, np.nan]),
    ("beta_upper_tail", lambda x: np.array([st.beta(2, 5).logsf(x[0]), st.beta.sf(x[0], 2, 5)]), [0.99999]),
    ("t_large_df", lambda x: np.array([st.t.logpdf(x[0], 1e12), st.t.cdf(x[0], 1e12), st.t.logpdf(x[0], np.inf),
                                       st.t.sf(x[0], np.inf)]), [0.3]),
    ("polygamma_orders", lambda x: scipy.special.polygamma(np.array([0, 1, 3]), x), [1.5, 2.0, 0.7]),
]


@pytest.mark.parametrize("run", [{}, {"min_array": 1}], ids=["default", "tensor"])
@pytest.mark.parametrize("name,fn,row", EDGES, ids=[e[0] for e in EDGES])
def test_edges_as_scipy(name, fn, row, run):
    x = np.array([row], dtype=float)
    with np.errstate(all="ignore"), symjac.tensor_policy(**run):
        got = symjac.compile(fn, backend="numpy")(x)[0]
        want = np.asarray(fn(x[0]), dtype=float)
    np.testing.assert_allclose(got, want, rtol=1e-10)  # NaN and inf where SciPy has them


def test_t_cdf_derivative_at_its_center():
    for mode in ("fwd", "rev"):
        J = symjac.jacobian(lambda x: st.t.cdf(x[0], 3.0, loc=0.5), mode=mode, backend="numpy")(np.array([[0.5]]))
        np.testing.assert_allclose(J.ravel(), [st.t.pdf(0.5, 3.0, loc=0.5)], rtol=1e-12)


def test_a_model_that_imports_scipy_while_traced_is_routed(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "model.py"
    script.write_text(
        "import numpy as np, symjac\n"
        "def f(x):\n"
        "    import scipy.stats\n"
        "    return scipy.stats.norm.logpdf(x, 0.5, 2.0)\n"
        "J = symjac.jacobian(f, backend='numpy')(np.array([[0.3, 1.0]]))\n"
        "print(np.allclose(np.diagonal(J[0]), -(np.array([0.3, 1.0]) - 0.5) / 4.0))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


@pytest.mark.parametrize("fn,name", [
    (lambda x: np.linalg.det(np.array([[x[0], x[1]], [x[1], x[2]]])), "np.stack"),
    (lambda x: scipy.special.gammaln(np.array([x[0], x[1]])), "np.stack"),
    (lambda x: st.zscore(x), "scipy.stats.zscore is not traceable"),
    (lambda x: np.atleast_1d(scipy.integrate.quad(lambda t: t * x[0], 0.0, 1.0)[0]),
     "scipy.integrate.quad is not traceable"),
], ids=["det_of_object_array", "ufunc_of_object_array", "zscore", "quad"])
def test_other_failures_name_what_failed(fn, name):
    with pytest.raises(symjac.UnsupportedOperationError, match=name):
        symjac.jacobian(fn, backend="numpy")(np.array([[1.0, 2.0, 3.0]]))


def test_numpy_comparing_an_object_array_is_named_and_a_users_if_is_not_renamed():
    with pytest.raises(symjac.TracerBoolError, match=r"np\.max compared traced values .* np\.stack"):
        symjac.jacobian(lambda x: np.max(np.array([x[0], x[1]])), backend="numpy")(np.ones((1, 2)))

    def branchy(x):
        if x[0] > 0:
            return x
        return -x

    with pytest.raises(symjac.TracerBoolError, match=r"^bool\(\) was called on a traced value"):
        symjac.jacobian(branchy, backend="numpy")(np.ones((1, 2)))
