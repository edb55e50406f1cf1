"""SciPy's special functions on backend="cuda": the libdevice forms (erfinv,
erfcinv, ndtr, j0, j1, y0, y1, gamma, gammaln) and the generated digamma
against SciPy in float64 and float32, derivatives against the NumPy
backend, and the error naming a function that runs on the CPU only.  Run on
the simulator by `tests/test_cuda.py` (or on a GPU with ``pytest tests/cuda``).
"""

import numpy as np
import pytest
import scipy.special as sc

import symjac
from codegen.cuda import NoGpuError, cuda_ready


def _runnable():
    try:
        cuda_ready()
    except NoGpuError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _runnable(), reason="no GPU, and not on the simulator (NUMBA_ENABLE_CUDASIM=1)")


def model(x):
    return np.stack([sc.erfinv(x[0]), sc.erfcinv(x[0] + 1.0), sc.ndtr(x[1]), sc.j0(x[1]), sc.j1(x[1]),
                     sc.y0(x[1] + 1.0), sc.y1(x[1] + 1.0), sc.gamma(x[1] + 1.0), sc.gammaln(x[1] + 1.0),
                     sc.psi(x[1] + 1.0)])


X = np.array([[0.3, 0.7], [-0.5, 1.7], [0.9, -0.45], [-0.1, 4.5]])


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 2e-6)])
def test_values(dtype, rtol):
    got = symjac.compile(model, backend="cuda")(X.astype(dtype))
    assert got.dtype == dtype
    want = np.stack([model(x) for x in X.astype(dtype).astype(np.float64)])
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def test_first_derivatives():
    f = lambda x: model(x)[:-1]  # psi's derivative is polygamma: CPU only
    np.testing.assert_allclose(symjac.jacobian(f, backend="cuda")(X), symjac.jacobian(f, backend="numpy")(X),
                               rtol=1e-13, atol=1e-15)


def test_digamma_over_its_domain():
    xs = np.concatenate([np.linspace(-7.3, 40.0, 97), [0.0, -0.0, -2.0, np.inf, -np.inf, np.nan, 1e-300]])
    got = symjac.compile(lambda x: sc.psi(x[0]), backend="cuda")(xs[:, None])
    want = sc.psi(xs)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


def test_a_function_without_a_gpu_form_is_named():
    with pytest.raises(NotImplementedError, match="cuda backend cannot run scipy.special.iv"):
        symjac.compile(lambda x: sc.iv(1.5, x[0]), backend="cuda")(X)
