"""gradient, hessian, divergence and laplacian: values against independent
oracles, JAX's shape conventions, composition, and the forward Laplacian's
savings over a Hessian trace."""

import numpy as np
import pytest

import symjac

rng = np.random.default_rng(11)


def energy(x):
    return np.sum(np.sin(x) * x[::-1]) + x[0] ** 3 * np.exp(x[1])


def field(x):
    return np.array([x[0] * x[1] ** 2, np.sin(x[1]) * x[2], np.tanh(x[0] + x[2])])


def cs_grad(f, x):
    return np.array([f(x + 1e-30j * e).imag / 1e-30 for e in np.eye(len(x))])


def test_gradient_matches_complex_step_and_shapes():
    x = rng.normal(size=(4, 3))
    g = symjac.gradient(energy, backend="numpy")(x)
    assert g.shape == (4, 3)
    for b in range(4):
        np.testing.assert_allclose(g[b], cs_grad(energy, x[b]), rtol=1e-13)
    gx, gy = symjac.gradient(lambda x, y: np.sum(x * y ** 2), argnums=(0, 1), backend="numpy")(x, x + 1)
    np.testing.assert_allclose(gx, (x + 1) ** 2)
    np.testing.assert_allclose(gy, 2 * x * (x + 1))
    with pytest.raises(ValueError, match="scalar per sample"):
        symjac.gradient(lambda x: x * 2, backend="numpy")(x)


def test_hessian_against_differences_of_the_gradient():
    x = rng.normal(size=(3, 3))
    H = symjac.hessian(energy, backend="numpy")(x)
    assert H.shape == (3, 3, 3)
    for b in range(3):
        # central differences of the complex-step gradient
        fd = np.stack([(cs_grad(energy, x[b] + 1e-6 * e) - cs_grad(energy, x[b] - 1e-6 * e)) / 2e-6
                       for e in np.eye(3)], axis=1)
        np.testing.assert_allclose(H[b], fd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(H, np.swapaxes(H, 1, 2), rtol=1e-13)
    (hxx, hxy), (hyx, hyy) = symjac.hessian(lambda x, y: np.sum(x ** 2 * y), argnums=(0, 1), backend="numpy")(x, x)
    assert hxx.shape == hxy.shape == hyx.shape == hyy.shape == (3, 3, 3)
    np.testing.assert_allclose(hxy, np.swapaxes(hyx, 1, 2))


def test_divergence_is_the_jacobian_trace():
    x = rng.normal(size=(5, 3))
    div = symjac.divergence(field, backend="numpy")(x)
    J = symjac.jacobian(field, backend="numpy")(x)
    assert div.shape == (5,)
    np.testing.assert_allclose(div, np.trace(J, axis1=1, axis2=2), rtol=1e-14)
    A = rng.normal(size=(2, 2, 2))
    divA = symjac.divergence(lambda a: a ** 2 * a[0, 1], backend="numpy")(A)
    JA = symjac.jacobian(lambda a: a ** 2 * a[0, 1], backend="numpy")(A).reshape(2, 4, 4)
    np.testing.assert_allclose(divA, np.trace(JA, axis1=1, axis2=2))
    with pytest.raises(ValueError, match="shaped like argument 0"):
        symjac.divergence(lambda x: x[:2], backend="numpy")(x)


def test_divergence_kernel_builds_only_the_diagonal():
    def wide(x):  # off-diagonal entries 2 x_j sin(x_i) are n^2 products the divergence never needs
        return np.sin(x) * np.sum(x ** 2)

    k_div = symjac.divergence(wide, backend="numpy").kernel_for(np.ones((1, 8)))
    k_jac = symjac.jacobian(wide, backend="numpy").kernel_for(np.ones((1, 8)))
    assert k_div.stats["dag_ops"] < k_jac.stats["dag_ops"]


@pytest.mark.parametrize("f, n", [(energy, 3), (lambda x: field(x) * x[0], 3),
                                  (lambda x: np.where(x[0] > 0, np.sum(x ** 4), np.prod(np.cos(x))), 4)])
def test_laplacian_equals_hessian_trace(f, n):
    x = rng.normal(size=(6, n))
    L = symjac.laplacian(f, backend="numpy")(x)
    H = symjac.hessian(f, backend="numpy")(x)
    np.testing.assert_allclose(L, np.trace(H, axis1=-2, axis2=-1), rtol=1e-12, atol=1e-12)
    h = 1e-4
    x0 = x[0]
    fd = sum((np.asarray(f(x0 + h * e)) - 2 * np.asarray(f(x0)) + np.asarray(f(x0 - h * e))) / h ** 2
             for e in np.eye(n))
    np.testing.assert_allclose(L[0], fd, rtol=1e-5, atol=1e-5)


def mlp(x, W1, b1, W2, b2, w3):
    h = np.tanh(W1 @ x + b1)
    h = np.tanh(W2 @ h + b2)
    return w3 @ h


def mlp_weights(width=6, n_in=2):
    return [rng.normal(size=(width, n_in)) / np.sqrt(n_in), rng.normal(size=width) * 0.1,
            rng.normal(size=(width, width)) / np.sqrt(width), rng.normal(size=width) * 0.1,
            rng.normal(size=width) / np.sqrt(width)]


def test_laplacian_of_a_network_with_shared_weights_and_its_weight_gradient():
    W = mlp_weights()
    axes = (0,) + (None,) * len(W)
    x = rng.normal(size=(5, 2))
    lap = symjac.laplacian(mlp, in_axes=axes, backend="numpy")
    L = lap(x, *W)
    H = symjac.hessian(mlp, in_axes=axes, backend="numpy")(x, *W)
    np.testing.assert_allclose(L, np.trace(H, axis1=1, axis2=2), rtol=1e-12, atol=1e-12)

    # PINN-style: the residual's Laplacian differentiated with respect to a weight
    # (the transforms compose), against central differences of the whole thing
    dL_dw3 = symjac.jacobian(lambda x, *w: symjac.laplacian(mlp)(x, *w), argnums=5, in_axes=axes,
                             backend="numpy")(x, *W)
    assert dL_dw3.shape == (5, 6)
    for j in range(6):
        e = np.zeros(6)
        e[j] = 1e-6
        plus = lap(x, *W[:4], W[4] + e)
        minus = lap(x, *W[:4], W[4] - e)
        np.testing.assert_allclose(dL_dw3[:, j], (plus - minus) / 2e-6, rtol=1e-6, atol=1e-7)


def quartic(x):  # a 20-input scalar function coupling every pair of inputs
    s = np.sum(np.sin(x) * np.arange(1.0, 21.0))
    return np.tanh(s) * np.sum(x ** 2) + np.exp(0.1 * np.sum(x))


def hessian_trace(f):
    return lambda x, *rest: np.trace(symjac.hessian(f)(x, *rest))


def flops(f, *shapes, axes=None):
    axes = axes or [0] * len(shapes)
    return symjac.compile(f, backend="numpy").specialize(list(shapes), axes).stats["flops_per_sample"]


def test_forward_laplacian_costs_less_than_a_hessian_trace():
    lap_flops = flops(lambda x: symjac.laplacian(quartic)(x), (20,))
    trace_flops = flops(hessian_trace(quartic), (20,))
    assert lap_flops < trace_flops
    x = rng.normal(size=(3, 20))
    np.testing.assert_allclose(symjac.laplacian(quartic, backend="numpy")(x),
                               symjac.compile(hessian_trace(quartic), backend="numpy")(x), rtol=1e-12)
    W = mlp_weights(width=8, n_in=3)
    shapes = [(3,)] + [w.shape for w in W]
    axes = [0] + [None] * len(W)
    assert flops(lambda x, *w: symjac.laplacian(mlp)(x, *w), *shapes, axes=axes) < \
        flops(hessian_trace(mlp), *shapes, axes=axes)
