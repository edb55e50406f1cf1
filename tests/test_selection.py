"""np.sort, np.partition, np.select, np.nan_to_num, np.linspace, np.gradient,
np.rot90, the order statistics, NaN-ignoring reductions, interp, convolve,
cov and the other functions of `symjac.frontend.numeric` on traced arrays
(issue 15): values against NumPy, first derivatives
against central differences in both modes, on every backend, as unrolled
scalars and as tensors; the sorting network against sorted(); NaN and the
infinities where NumPy gives them a meaning."""

import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symjac
from conftest import BACKENDS
from symjac.frontend.selection import sorting_network

XC = np.linspace(0.0, 1.0, 5) ** 2  # non-uniform coordinates

ROWS = [  # name, per-sample function of a slice, slice length, sampling interval
    ("sort", lambda x: np.sort(x) * np.arange(1.0, 8.0), 7, -2, 2),
    ("sort_axis", lambda x: np.sort(x.reshape(2, 3), axis=0).ravel() + np.sort(x.reshape(2, 3), axis=None) ** 2, 6, -2, 2),
    ("partition", lambda x: np.partition(x, 2)[2] * x, 5, -2, 2),
    ("select", lambda x: np.select([x > 0.5, x < -0.5], [x ** 2, np.sin(x)], default=x * 3.0), 4, -2, 2),
    ("isnan_isinf", lambda x: np.where(np.isfinite(x) & ~np.isinf(x * 2.0) & ~np.isnan(x), x ** 2, 0.0), 3, -2, 2),
    ("nan_to_num", lambda x: np.nan_to_num(x * 2.0) + np.nan_to_num(np.log(x + 1.0), nan=-1.0), 3, 0.1, 2),
    ("linspace", lambda x: np.linspace(x[0], x[1], 5) * np.linspace(x[2], 3.0, 4, endpoint=False)[1:, None].sum(),
     3, -2, 2),
    ("linspace_arrays", lambda x: np.linspace(x[:2], x[2:] ** 2, 3, axis=1).ravel(), 4, -2, 2),
    ("gradient", lambda x: np.concatenate([np.gradient(x ** 2), np.gradient(x, 0.5, edge_order=2),
                                           np.gradient(np.sin(x), XC), np.gradient(x, XC, edge_order=2)]), 5, -2, 2),
    ("gradient_2d", lambda x: np.concatenate([g.ravel() for g in np.gradient(x.reshape(2, 3) ** 3)]), 6, -2, 2),
    ("median_quantile", lambda x: np.concatenate([np.atleast_1d(np.median(x)), np.percentile(x, [10.0, 75.0]),
                                                  np.quantile(x.reshape(2, 3), 0.4, axis=1),
                                                  np.quantile(x, [0.2, 0.5], method="midpoint"),
                                                  np.atleast_1d(np.quantile(x, 0.3, method="nearest"))]), 6, -2, 2),
    ("ptp_average", lambda x: np.concatenate([np.atleast_1d(np.ptp(x)), np.atleast_1d(np.average(x, weights=np.arange(1.0, 7.0))),
                                              np.average(x.reshape(2, 3), axis=1, weights=[1.0, 2.0, 0.5])]), 6, -2, 2),
    ("nan_reductions", lambda x: np.stack([np.nansum(x), np.nanmean(x), np.nanmax(x), np.nanmin(x), np.nanprod(x)]),
     4, -2, 2),
    ("any_all_isclose", lambda x: np.where(np.any(x > 1.0), x, -x) + np.where(np.all(x > -1.5, axis=0), x ** 2, 1.0)
     + np.where(np.isclose(x, x[0]), 0.5, x), 4, -2, 2),
    ("cov_corrcoef", lambda x: np.concatenate([np.cov(x.reshape(2, 3)).ravel(), np.corrcoef(x.reshape(2, 3)).ravel(),
                                               np.atleast_1d(np.cov(x[:3], ddof=0))]), 6, -2, 2),
    ("interp", lambda x: np.concatenate([np.interp(x[:3], [-1.0, 0.0, 0.5, 1.5], [2.0, -1.0, 0.5, 3.0]),
                                         np.interp([0.25, -3.0, 0.7], [0.0, 0.5, 1.0], x[3:] ** 2, left=9.0),
                                         np.interp(x[:2], [-0.5, 0.5, 1.0], x[3:])]), 6, -2, 2),
    ("convolve", lambda x: np.concatenate([np.convolve(x, [1.0, -2.0, 0.5]), np.convolve(x[:2], x[2:], "same"),
                                           np.correlate(x, [0.5, 1.5]), np.convolve(x[:3], x[3:], "valid")]), 6, -2, 2),
    ("correlate_short_first", lambda x: np.concatenate([np.correlate(x[:2], x[2:], m) for m in ("full", "same", "valid")]
                                                       + [np.correlate(x[2:], x[:2], "same")]), 6, -2, 2),
    ("quantile_keepdims", lambda x: np.concatenate([
        (x.reshape(2, 3) - np.median(x.reshape(2, 3), keepdims=True)).ravel(),
        (x.reshape(1, 2, 3) - np.quantile(x.reshape(1, 2, 3), 0.3, axis=(1, 2), keepdims=True)).ravel(),
        (x.reshape(2, 3) - np.nanmax(x.reshape(2, 3), axis=1, keepdims=True)).ravel()]), 6, -2, 2),
    ("grids", lambda x: np.concatenate([np.meshgrid(x[:2], x[2:5])[0].ravel(), np.meshgrid(x[:2], x[2:5], indexing="ij")[1].ravel(),
                                        np.logspace(x[0] * 0.1, 1.0, 3), np.logspace(0.0, x[1] * 0.1, 3, base=2.0),
                                        np.take_along_axis(x.reshape(2, 3), np.array([[2, 0], [1, 1]]), axis=1).ravel(),
                                        np.take_along_axis(x.reshape(2, 3), np.array([[2, 0]]), axis=1).ravel(),
                                        np.vander(x[:3]).ravel()]), 6, -2, 2),
    ("floor_divide_signbit", lambda x: x // 0.7 * x + np.floor_divide(x, -1.3) + np.where(np.signbit(x), x, 2.0 * x)
     + np.ldexp(x, 3) + np.i0(x), 3, -2, 2),
    ("rot90", lambda x: np.concatenate([np.rot90(x.reshape(2, 3)).ravel(), np.rot90(x.reshape(2, 3), 2).ravel(),
                                        np.rot90(x.reshape(2, 3), -1).ravel() ** 2]), 6, -2, 2),
]
OFFSETS = np.concatenate([[0], np.cumsum([r[2] for r in ROWS])])
B = 4
X = np.empty((B, OFFSETS[-1]))
_rng = np.random.default_rng(3)
for (_, _, k, lo, hi), o in zip(ROWS, OFFSETS):
    X[:, o: o + k] = _rng.uniform(lo, hi, size=(B, k))
RUNS = {"scalar": {"min_array": None}, "tensor": {"min_array": 1}}


def fused(x):
    return np.concatenate([np.ravel(fn(x[o: o + k])) for (_, fn, k, *_), o in zip(ROWS, OFFSETS)])


OUT = np.concatenate([[0], np.cumsum([np.size(fn(X[0, o: o + k])) for (_, fn, k, *_), o in zip(ROWS, OFFSETS)])])


@functools.cache
def jac(backend, mode, run):
    with symjac.tensor_policy(**RUNS[run]):
        return symjac.jacobian(fused, mode=mode, backend=backend)


@functools.cache
def evaluated(backend, mode, run):
    return jac(backend, mode, run)(X)


def central(i, x):
    _, fn, k, *_ = ROWS[i]
    cols = []
    for j in range(k):
        e = np.zeros(k)
        e[j] = h = 1e-6
        cols.append((np.ravel(fn(x + e)) - np.ravel(fn(x - e))) / (2 * h))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("i", range(len(ROWS)), ids=[r[0] for r in ROWS])
def test_rows_against_central_differences(i, backend, mode, run):
    if backend == "numba-parallel" and run == "tensor":
        pytest.skip("the numba backend's tensor run covers the same loops")
    if backend != "numpy" and mode == "rev" and run == "scalar":
        # 30 s of Numba compile for the unrolled table's reverse sweep: the Numba printer's forms are the
        # forward run's (scalar) and the reverse run's (tensor); NumPy checks this graph
        pytest.skip("reverse mode on Numba: checked in the tensor run")
    J = evaluated(backend, mode, run)
    o, k = OFFSETS[i], ROWS[i][2]
    block = J[:, OUT[i]: OUT[i + 1], o: o + k]
    for b in range(B):
        np.testing.assert_allclose(block[b], central(i, X[b, o: o + k]), rtol=1e-6, atol=1e-7)
    others = np.delete(J[:, OUT[i]: OUT[i + 1]], np.s_[o: o + k], axis=2)
    assert not np.any(others)  # the row reads only its own slice


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("run", RUNS)
def test_values_against_numpy(backend, run):
    with symjac.tensor_policy(**RUNS[run]):
        k = symjac.compile(fused, backend=backend)
    np.testing.assert_allclose(k(X), np.stack([fused(x) for x in X]), rtol=1e-13, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6) | st.sampled_from([np.inf, -np.inf, np.nan, 0.0, -0.0]), max_size=40))
def test_sorting_network_sorts(values):
    row = list(values)
    for i, j in sorting_network(len(row)):
        a, b = row[i], row[j]
        if not a <= b and b == b:  # NumPy's order: NaN last
            row[i], row[j] = b, a
    np.testing.assert_array_equal(np.array(row), np.sort(np.array(values)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sort_and_nan_to_num_on_nan_and_infinities(backend):
    def f(x):
        return np.concatenate([np.sort(x), np.nan_to_num(x), np.nan_to_num(x, nan=5.0, posinf=1.0, neginf=-2.0)])

    x = np.array([[np.nan, 1.0, -np.inf, 0.5, np.inf], [3.0, np.nan, np.inf, -1.0, 2.0]])  # one NaN a row: equal values share no order
    k = symjac.compile(f, backend=backend)
    np.testing.assert_array_equal(k(x), np.stack([f(r) for r in x]))
    J = symjac.jacobian(f, backend=backend)(x)
    n = x.shape[1]
    for b in range(2):  # the sort's rows follow the values (NaN last); nan_to_num's are 1 where finite
        order = np.argsort(x[b], kind="stable")
        np.testing.assert_array_equal(J[b, :n], np.eye(n)[order])
        np.testing.assert_array_equal(J[b, n:2 * n], np.diag(np.isfinite(x[b]) * 1.0))
        np.testing.assert_array_equal(J[b, 2 * n:], np.diag(np.isfinite(x[b]) * 1.0))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_nan_to_num_bound_is_the_kernels_dtype(backend):
    k = symjac.compile(lambda x: np.nan_to_num(x * 2.0), backend=backend)
    out = k(np.array([[np.inf, -np.inf, np.nan, 1.5]], dtype=np.float32))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[np.finfo(np.float32).max, -np.finfo(np.float32).max, 0.0, 3.0]])


def test_errors_name_the_argument():
    with pytest.raises(symjac.UnsupportedOperationError, match="num"):
        symjac.jacobian(lambda x: np.linspace(x[0], x[1], x[2]))(X[:, :3])
    with pytest.raises(symjac.UnsupportedOperationError, match="spacings"):
        symjac.jacobian(lambda x: np.gradient(x, x))(X[:, :3])
    with pytest.raises(ValueError, match="kth"):
        symjac.jacobian(lambda x: np.partition(x, 5))(X[:, :3])
    with pytest.raises(symjac.UnsupportedOperationError, match="order"):
        symjac.jacobian(lambda x: np.sort(x, order="a"))(X[:, :3])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_nan_and_zero_division_as_numpy(backend):
    def f(x):
        return np.concatenate([np.atleast_1d(np.median(x)), np.percentile(x, [20.0]),
                               np.interp(x, [0.0, 1.0, 2.0], [1.0, 3.0, 2.0]), x // x[0], np.nanmax(x[None], axis=1),
                               np.atleast_1d(np.nanmean(x)), np.where(np.signbit(x), 1.0, 0.0)])

    x = np.array([[0.0, np.nan, 1.5, -2.0], [-0.0, 0.5, np.inf, 2.0], [3.0, 2.0, 1.0, -np.inf]])
    with np.errstate(all="ignore"):
        want = np.stack([f(r) for r in x])
        np.testing.assert_array_equal(symjac.compile(f, backend=backend)(x), want)


def test_ldexp_never_overflows_in_between():
    f = lambda x: np.array([np.ldexp(x[0], 1100), np.ldexp(x[1], -1100), np.ldexp(x[2], 1024)])  # noqa: E731
    x = np.array([[1e-300, 2.0 ** 1000, 0.75]])
    np.testing.assert_array_equal(symjac.compile(f, backend="numpy")(x)[0], f(x[0]))
