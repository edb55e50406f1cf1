"""Derivatives where the function has a kink or meets 0 and NaN: the conventions
the README states (issue 15), on the NumPy and Numba backends."""

import numpy as np
import pytest

import symjac

NAN, INF = np.nan, np.inf


def grad(f, points, backend):
    return symjac.gradient(f, backend=backend)(np.array(points, dtype=float))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_power_at_zero_follows_jax(backend):
    g = grad(lambda v: v[0] ** v[1], [[0.0, 2.0], [0.0, 0.5], [0.0, 0.0], [0.0, -1.0], [2.0, 3.0]], backend)
    want = [[0.0, 0.0], [INF, 0.0], [NAN, 0.0], [-INF, NAN], [12.0, 8.0 * np.log(2.0)]]
    np.testing.assert_allclose(g, want, rtol=1e-15)  # NaN and inf compared as such


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_hypot_abs_maximum_minimum_at_their_kinks(backend):
    np.testing.assert_array_equal(grad(lambda v: np.hypot(v[0], v[1]), [[0.0, 0.0]], backend), [[0.0, 0.0]])
    np.testing.assert_array_equal(grad(lambda v: np.abs(v[0]) + 0 * v[1], [[0.0, 1.0]], backend), [[0.0, 0.0]])
    pts = [[NAN, 1.0], [1.0, NAN], [1.0, 1.0], [2.0, 1.0]]
    np.testing.assert_array_equal(grad(lambda v: np.maximum(v[0], v[1]), pts, backend),
                                  [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])  # the NaN is the value
    np.testing.assert_array_equal(grad(lambda v: np.minimum(v[0], v[1]), pts, backend),
                                  [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.0, 1.0]])
