"""Bad input is rejected before any work, with a message that names the
argument, what was expected and the fix."""

import numpy as np
import pytest

import symjac
from symjac.errors import NumericArrayError, TracerBoolError, UnsupportedOperationError


def J(f, **kw):
    return symjac.jacobian(f, backend="numpy", **kw)


def test_if_on_traced_value_points_to_where():
    def f(x):
        if x[0] > 0:
            return x
        return -x

    with pytest.raises(TracerBoolError, match=r"np\.where"):
        J(f)(np.ones((2, 2)))


@pytest.mark.parametrize("conv", [float, int, bool])
def test_python_conversions_refused(conv):
    with pytest.raises(TracerBoolError, match=r"np\.where"):
        J(lambda x: conv(x[0]) * x)(np.ones((2, 2)))


def test_object_array_comparisons_refused_not_silently_false():
    with pytest.raises(TracerBoolError, match="=="):
        J(lambda x: np.where(np.asarray(x) == 0.3, x, 0.0))(np.ones((2, 2)))
    with pytest.raises(TracerBoolError, match=r"np\.stack"):
        J(lambda x: np.maximum(np.array([x[0], x[1]]), 0.0))(np.ones((2, 2)))


def test_assigning_into_numpy_zeros_explains_fix():
    def f(x):
        out = np.zeros(2)
        out[0] = x[0]
        return out

    with pytest.raises(NumericArrayError, match=r"np\.zeros\(n, like=y\)") as e:
        J(f)(np.ones((2, 2)))
    assert "control flow" not in str(e.value)


def test_unsupported_function_is_named():
    with pytest.raises(UnsupportedOperationError, match="histogram"):
        J(lambda x: np.histogram(x)[0] * x)(np.ones((2, 2)))
    with pytest.raises(UnsupportedOperationError, match="spacing"):
        J(lambda x: np.spacing(x))(np.ones((2, 2)))
    with pytest.raises(UnsupportedOperationError, match="argmax"):
        J(lambda x: x[np.argmax(x)])(np.ones((2, 2)))


def test_traced_index_refused():
    g = lambda x: x[x]  # noqa: E731
    with pytest.raises(UnsupportedOperationError, match="indexing with a traced value"):
        J(g)(np.ones((2, 2)))


def test_batch_size_mismatch_names_both_arguments():
    def f(x, k):
        return x * k

    with pytest.raises(ValueError, match=r"argument 1 \('k'\) has batch size 3 but argument 0 \('x'\) has 2"):
        J(f, in_axes=(0, 0))(np.ones((2, 2)), np.ones((3, 2)))


def test_per_sample_shape_differs_from_traced_kernel():
    k = symjac.compile(lambda x: x * 2.0, backend="numpy")
    k(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"per-sample shape \(4,\), but this kernel was traced for \(3,\)"):
        k(np.ones((2, 4)))


def test_transform_retraces_for_new_shapes():
    j = J(lambda x: x * 2.0)
    assert j(np.ones((2, 3))).shape == (2, 3, 3)
    assert j(np.ones((2, 4))).shape == (2, 4, 4)


@pytest.mark.parametrize("bad, what", [
    (np.array([["a", "b"]]), "real numeric"),
    (np.ones((2, 2), dtype=complex), "complex"),
    (np.array([[None, 1.0]], dtype=object), "real numeric"),
])
def test_non_numeric_arrays(bad, what):
    with pytest.raises(TypeError, match=what):
        J(lambda x: x * 2.0)(bad)


def test_argnums_validation():
    f = lambda x, y: x * y  # noqa: E731
    with pytest.raises(ValueError, match="argnums entry 2 is out of range"):
        J(f, argnums=2)(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError, match="argnums must be"):
        symjac.jacobian(f, argnums="x")
    with pytest.raises(ValueError, match="repeated"):
        symjac.jacobian(f, argnums=(0, 0))


def test_in_axes_validation():
    f = lambda x, y: x * y  # noqa: E731
    with pytest.raises(ValueError, match="in_axes has 3 entries"):
        J(f, in_axes=(0, 0, 0))(np.ones((2, 2)), np.ones((2, 2)))
    one = J(f, in_axes=None)(np.ones(2), np.ones(2))  # no batched argument: one sample (as jax.jacfwd)
    assert one.shape == (2, 2)
    with pytest.raises(ValueError, match="only 1 dimension"):
        J(f, in_axes=(0, 1))(np.ones((2, 2)), np.ones(2))


def test_reduction_keywords_refused_clearly():
    with pytest.raises(UnsupportedOperationError, match="dtype="):
        J(lambda x: np.sum(x, dtype=np.float32))(np.ones((2, 2)))
    with pytest.raises(TypeError, match="in_axes must be"):
        J(lambda x, y: x * y, in_axes=True)(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError, match="entries must be int or None"):
        J(lambda x, y: x * y, in_axes=(0, True))(np.ones((2, 2)), np.ones((2, 2)))


def test_mode_and_backend_validation():
    with pytest.raises(ValueError, match="mode must be"):
        symjac.jacobian(lambda x: x, mode="forward")
    with pytest.raises(ValueError, match="backend must be one of"):
        symjac.jacobian(lambda x: x, backend="cuda-magic")
    with pytest.raises(TypeError, match="callable"):
        symjac.jacobian(3)


def test_out_and_slice_validation():
    j = J(lambda x: x * 2.0)
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"out\[0\] must have shape \(4, 2, 2\) and dtype float64"):
        j(x, out=np.empty((4, 2, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        j(x, out=np.empty((4, 2, 2, 2))[..., 0])
    with pytest.raises(ValueError, match="start <= stop"):
        j(x, start=3, stop=2)
    with pytest.raises(ValueError, match="batch size 4"):
        j(x, stop=5)


def test_out_buffer_is_not_touched_on_error():
    j = J(lambda x, y: x * y, in_axes=(0, 0))
    out = np.full((2, 2, 2), 7.0)
    with pytest.raises(ValueError):
        j(np.ones((2, 2)), np.ones((3, 2)), out=out)
    assert (out == 7.0).all()


def test_complex_constant_in_model():
    with pytest.raises(TypeError, match="complex constant"):
        J(lambda x: x * 1j)(np.ones((2, 2)))
