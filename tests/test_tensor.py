"""Tensor ops: contractions, convolutions and elementwise maps that stay whole.

Derivatives against complex-step and finite differences on small random
layers, the looped kernels against the unrolled scalar ones, conv2d against a
plain NumPy reference, and bounds on the size of kernels for wide layers.
"""

import re

import numpy as np
import pytest

import symjac
from symjac.testing import check_jacobian

rng = np.random.default_rng(5)

W1 = rng.normal(size=(16, 4)) / 2
B1 = rng.normal(size=16) * 0.1
W2 = rng.normal(size=(16, 16)) / 4
W3 = rng.normal(size=(2, 16)) / 4


def mlp(x, W1, b1, W2, W3):
    h = np.tanh(W1 @ x + b1)
    h = np.sin(W2 @ h) * h
    return W3 @ h + np.sum(h ** 2) / 10


MLP_ARGS = (W1, B1, W2, W3)
MLP_AXES = (0, None, None, None, None)


def tensor_ops(graph):
    return {n.op for n in graph.nodes() if n.shape or n.op in ("einsum", "elem", "tsum")}


def conv_reference(x, w, stride, pads):
    """Direct 7-loop cross-correlation, independent of symjac's code."""
    (pt, pb), (pl, pr) = pads
    H, W, ci = x.shape
    kh, kw, _, co = w.shape
    ho, wo = (H + pt + pb - kh) // stride + 1, (W + pl + pr - kw) // stride + 1
    out = np.zeros((ho, wo, co))
    for oy in range(ho):
        for ox in range(wo):
            for dy in range(kh):
                for dx in range(kw):
                    y, xx = oy * stride + dy - pt, ox * stride + dx - pl
                    if 0 <= y < H and 0 <= xx < W:
                        out[oy, ox] += x[y, xx] @ w[dy, dx]
    return out


# -- tracing keeps tensors whole ------------------------------------------------------

def test_matmul_on_weights_traces_to_tensor_ops():
    g = symjac.trace(mlp, (4,), *[w.shape for w in MLP_ARGS])
    ops = tensor_ops(g)
    assert "einsum" in ops and "tanh" in ops
    assert len(g) < 40  # 16x16 unrolled would be hundreds of operations
    x = rng.normal(size=4)
    np.testing.assert_allclose(g(x, *MLP_ARGS), mlp(x, *MLP_ARGS), rtol=1e-14)


def test_small_constant_matrices_stay_scalar():
    # a rotation matrix of constants and symbols simplifies better unrolled
    def rot(x):
        c, s = np.cos(x[0]), np.sin(x[0])
        R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return R @ R @ x
    assert not tensor_ops(symjac.trace(rot, (3,))) - {"elem"}


# -- derivatives of tensor ops against oracles ---------------------------------------------

@pytest.mark.parametrize("argnum", [0, 1, 2, 3])
def test_mlp_jacobian_against_complex_step(argnum):
    x = rng.normal(size=4)
    check_jacobian(mlp, x, *MLP_ARGS, argnum=argnum, complex_step=True)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", [(3, 10), (10, 4)]),
    ("ijk,kl->lji", [(2, 3, 10), (10, 4)]),
    ("i,i->", [(40,), (40,)]),
    ("ij,ij->i", [(4, 16), (4, 16)]),
    ("ij,k->ijk", [(5, 8), (3,)]),
])
def test_einsum_derivatives_against_complex_step(spec, shapes):
    a, b = (rng.normal(size=s) for s in shapes)

    def f(a, b):
        return np.tanh(np.einsum(spec, a, b))
    with symjac.tensor_policy(min_work=1, min_operand=1):
        g = symjac.trace(f, a.shape, b.shape)
        assert "einsum" in tensor_ops(g) or len(a.shape) + len(b.shape) == len(spec.split("->")[1])
        check_jacobian(f, a, b, argnum=0, complex_step=True)
        check_jacobian(f, a, b, argnum=1, complex_step=True)


def test_reductions_reshapes_transposes_and_broadcasts():
    W = rng.normal(size=(24, 6)) / 3
    bias = rng.normal(size=(4,))

    def f(x, W):
        t = (W @ x).reshape(2, 3, 4)                     # tensor reshape
        t = np.transpose(t, (2, 0, 1)) + bias[:, None, None]  # transpose, broadcast of a constant
        u = np.tanh(t).sum(axis=(1,)) * np.mean(t, axis=0, keepdims=True)[0, :1]
        v = np.tensordot(u, np.exp(t), axes=([0, 1], [0, 2]))
        return np.concatenate([v, np.expand_dims(np.moveaxis(t, 0, -1), 0).ravel()[:3]])

    x = rng.normal(size=6)
    g = symjac.trace(f, (6,), W.shape)
    assert {"einsum", "tsum", "transpose"} <= tensor_ops(g)
    np.testing.assert_allclose(g(x, W), f(x, W), rtol=1e-13)
    check_jacobian(f, x, W, argnum=0, complex_step=True)
    check_jacobian(f, x, W, argnum=1, complex_step=True)


def test_elements_of_a_tensor_gather_into_one_cotangent():
    W = rng.normal(size=(16, 5))

    def f(x, W):
        z = W @ x
        return np.array([z[3] * z[5] + z[0], np.sum(z[::2] ** 2)])
    x = rng.normal(size=5)
    check_jacobian(f, x, W, argnum=0, complex_step=True)
    check_jacobian(f, x, W, argnum=1, complex_step=True)


def test_second_derivatives_of_tensor_graphs():
    x = rng.normal(size=(3, 4))
    u = lambda x, *w: mlp(x, *w)[0]  # noqa: E731
    H = symjac.hessian(u, in_axes=MLP_AXES, backend="numpy")(x, *MLP_ARGS)
    g = symjac.gradient(u, in_axes=MLP_AXES, backend="numpy")
    h = 1e-5
    for b in range(3):
        for j in range(4):
            e = np.zeros(4)
            e[j] = h
            fd = (g(x[b:b + 1] + e, *MLP_ARGS) - g(x[b:b + 1] - e, *MLP_ARGS))[0] / (2 * h)
            np.testing.assert_allclose(H[b, j], fd, rtol=1e-6, atol=1e-8)
    lap = symjac.laplacian(u, in_axes=MLP_AXES, backend="numpy")(x, *MLP_ARGS)
    np.testing.assert_allclose(lap, np.trace(H, axis1=1, axis2=2), rtol=1e-12)


# -- conv2d ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, k, stride, padding", [
    ((7, 6, 2), (3, 3, 2, 4), 1, "valid"),
    ((7, 6, 2), (3, 3, 2, 4), 1, "same"),
    ((8, 7, 3), (3, 2, 3, 2), 2, "same"),
    ((9, 9, 1), (4, 4, 1, 3), 3, "valid"),
    ((5, 5, 2), (3, 3, 2, 2), 1, ((2, 0), (1, 1))),
])
def test_conv2d_against_numpy_reference(shape, k, stride, padding):
    x, w = rng.normal(size=(3,) + shape), rng.normal(size=k)
    b = rng.normal(size=k[3])
    pads = symjac.ops.conv_padding(padding, shape[0], shape[1], k[0], k[1], stride)
    ref = np.stack([conv_reference(xi, w, stride, pads) + b for xi in x])
    f = lambda x, w, b: symjac.nn.conv2d(x, w, b, stride=stride, padding=padding)  # noqa: E731
    got = symjac.compile(f, in_axes=(0, None, None), backend="numpy")(x, w, b)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f(x[0], w, b), ref[0], rtol=1e-12, atol=1e-12)  # plain arrays
    if padding == "same":
        assert ref.shape[1:3] == (-(-shape[0] // stride), -(-shape[1] // stride))
    # derivatives w.r.t. the image, the filters (the two transposed convolutions) and the bias
    for argnum in range(3):
        check_jacobian(lambda x, w, b: np.tanh(f(x, w, b)), x[0], w, b, argnum=argnum, complex_step=True)


def test_conv2d_second_derivatives():
    # derivatives of the input gradient exercise conv2d_bx's own rules (and conv2d_bw's)
    X, w = rng.normal(size=(2, 5, 5, 2)), rng.normal(size=(3, 3, 2, 2)) / 3

    def f(x, w):
        y = np.tanh(symjac.nn.conv2d(x, w, padding="same"))
        return np.sum(y * y)
    axes = (0, None)
    grad = symjac.gradient(f, in_axes=axes, backend="numpy")
    d_dw = symjac.jacobian(symjac.gradient(f, in_axes=axes), argnums=1, in_axes=axes, backend="numpy")(X, w)
    hess = symjac.hessian(f, in_axes=axes, backend="numpy")(X, w)
    assert d_dw.shape == (2, 5, 5, 2, 3, 3, 2, 2) and hess.shape == (2, 5, 5, 2, 5, 5, 2)
    h = 1e-5
    v = rng.normal(size=w.shape)
    fd = (grad(X, w + h * v) - grad(X, w - h * v)) / (2 * h)
    np.testing.assert_allclose(np.tensordot(d_dw, v, axes=4), fd, rtol=1e-6, atol=1e-8)
    vx = rng.normal(size=X.shape)
    fd = (grad(X + h * vx, w) - grad(X - h * vx, w)) / (2 * h)
    np.testing.assert_allclose(np.einsum("bijkpqr,bpqr->bijk", hess, vx), fd, rtol=1e-6, atol=1e-8)


# -- codegen: loops vs unrolled, backends, kernel size ----------------------------------------

@pytest.fixture(scope="module")
def mlp_kernels():
    fn = symjac.laplacian(lambda x, *w: mlp(x, *w)[1], in_axes=MLP_AXES)
    looped = {be: symjac.compile(fn, in_axes=MLP_AXES, backend=be) for be in ("numpy", "numba", "numba-parallel")}
    with symjac.tensor_policy(min_work=None):
        unrolled = symjac.compile(symjac.laplacian(lambda x, *w: mlp(x, *w)[1], in_axes=MLP_AXES),
                                  in_axes=MLP_AXES, backend="numpy")
        unrolled(np.zeros((1, 4)), *MLP_ARGS)
    return looped, unrolled


def test_looped_and_unrolled_kernels_agree(mlp_kernels):
    looped, unrolled = mlp_kernels
    x = rng.normal(size=(5000, 4))  # numba-parallel splits it over threads, with a ragged last tile
    ref = unrolled(x, *MLP_ARGS)
    for be, k in looped.items():
        np.testing.assert_allclose(k(x, *MLP_ARGS), ref, rtol=1e-11, atol=1e-12, err_msg=be)
    assert not tensor_ops(unrolled.graph) and "einsum" in tensor_ops(looped["numba"].graph)
    assert looped["numba"].stats["statements"] < unrolled.stats["statements"] / 5
    np.testing.assert_allclose(looped["numba"](x[:7].astype(np.float32), *[w.astype(np.float32) for w in MLP_ARGS]),
                               ref[:7], rtol=2e-4, atol=2e-5)


def test_kernel_size_is_bounded_for_wide_layers():
    width = 256
    Ws = [rng.normal(size=(width, 3)), rng.normal(size=(width, width)), rng.normal(size=width)]

    def u(x, A, B, c):
        return c @ np.tanh(B @ np.tanh(A @ x))
    fn = symjac.laplacian(u, in_axes=(0, None, None, None))
    k = symjac.compile(fn, in_axes=(0, None, None, None), backend="numba")
    x = rng.normal(size=(3, 3))
    lap = k(x, *Ws)
    assert len(k.source.splitlines()) < 400          # unrolled: ~1.5 million statements
    assert k.stats["statements"] < 100
    assert k.stats["flops_per_sample"] > 5 * width * width
    ref = symjac.compile(fn, in_axes=(0, None, None, None), backend="numpy")(x, *Ws)
    np.testing.assert_allclose(lap, ref, rtol=1e-10)


# -- nn layers -----------------------------------------------------------------------------------

def test_softmax_logsumexp_relu_values_and_derivatives():
    W = rng.normal(size=(9, 5))

    def f(x, W):
        z = W @ x
        return np.concatenate([symjac.nn.softmax(z), [symjac.nn.logsumexp(z)], symjac.nn.relu(z)])
    x = rng.normal(size=5)
    z = W @ x
    e = np.exp(z - z.max())
    ref = np.concatenate([e / e.sum(), [np.log(np.sum(np.exp(z)))], np.maximum(z, 0)])
    got = symjac.compile(f, in_axes=(0, None), backend="numpy")(x[None], W)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-13)
    check_jacobian(f, x, W, argnum=0)
    big = symjac.compile(lambda x: symjac.nn.logsumexp(x), backend="numpy")(np.full((1, 3), 800.0))
    np.testing.assert_allclose(big, 800.0 + np.log(3.0))


def small_cnn(X, Wc, bc, Wf, bf):
    h = symjac.nn.relu(symjac.nn.conv2d(X, Wc, bc, padding="same"))
    return symjac.nn.softmax(symjac.nn.dense(h, Wf, bf), axis=0)


CNN_W = (rng.normal(size=(3, 3, 2, 4)) / 4, rng.normal(size=4) * 0.1, rng.normal(size=(6 * 5 * 4, 3)) / 10,
         rng.normal(size=3) * 0.1)


def cnn_forward_np(X, Wc, bc, Wf, bf):
    out = []
    for b in range(X.shape[-1]):
        h = np.maximum(conv_reference(X[..., b], Wc, 1, ((1, 1), (1, 1))) + bc, 0)
        z = h.reshape(-1) @ Wf + bf
        e = np.exp(z - z.max())
        out.append(e / e.sum())
    return np.stack(out, axis=-1)


@pytest.mark.parametrize("backend", ["numpy", "numba-parallel"])
def test_dlfeval_cnn_jacobian_and_weight_gradient(backend):
    X = rng.uniform(-1, 1, size=(6, 5, 2, 3))  # "SSCB"
    T = np.eye(3)[:, [0, 2, 1]]

    def model(X, T, Wc, bc, Wf, bf):
        Y = small_cnn(X, Wc, bc, Wf, bf)
        loss = -np.sum(T * np.log(Y)) / 3
        return (Y, symjac.dljacobian(Y, X, 0), loss, *symjac.dlgradient(loss, Wc, Wf))

    Y, J, loss, gWc, gWf = symjac.dlfeval(model, X, T, *CNN_W, batch_axis=(-1, -1, None, None, None, None),
                                          backend=backend)
    np.testing.assert_allclose(Y, cnn_forward_np(X, *CNN_W), rtol=1e-12)
    assert J.shape == (3, 6, 5, 2, 3)
    h = 1e-6
    for (i, r, c, ch, b) in [(0, 0, 0, 0, 0), (2, 3, 4, 1, 2), (1, 5, 2, 0, 1)]:
        E = np.zeros_like(X)
        E[r, c, ch, b] = h
        fd = (cnn_forward_np(X + E, *CNN_W) - cnn_forward_np(X - E, *CNN_W))[i, b] / (2 * h)
        np.testing.assert_allclose(J[i, r, c, ch, b], fd, rtol=1e-6, atol=1e-9)

    def loss_of(Wc):
        return -np.sum(T * np.log(cnn_forward_np(X, Wc, *CNN_W[1:]))) / 3
    for idx in [(0, 0, 0, 0), (2, 1, 1, 3), (1, 2, 0, 2)]:
        E = np.zeros_like(CNN_W[0])
        E[idx] = h
        fd = (loss_of(CNN_W[0] + E) - loss_of(CNN_W[0] - E)) / (2 * h)
        np.testing.assert_allclose(gWc[idx], fd, rtol=1e-6, atol=1e-9)
    assert gWf.shape == CNN_W[2].shape


# -- errors ------------------------------------------------------------------------------------

def test_layer_errors_name_the_argument():
    x = np.zeros((1, 5, 5, 2))
    bad = [
        (lambda x: symjac.nn.conv2d(x, np.zeros((3, 3, 3, 4))), "w must have shape"),
        (lambda x: symjac.nn.conv2d(x, np.zeros((3, 3, 2, 4)), stride=0), "stride must be a positive int"),
        (lambda x: symjac.nn.conv2d(x, np.zeros((3, 3, 2, 4)), padding="full"), "padding must be"),
        (lambda x: symjac.nn.conv2d(x, np.zeros((3, 3, 2, 4)), np.zeros(3)), "b must have shape"),
        (lambda x: symjac.nn.conv2d(x[0], np.zeros((3, 3, 2, 4))), "x must hold"),
        (lambda x: symjac.nn.conv2d(x, np.zeros((7, 7, 2, 1))), "does not fit"),
        (lambda x: symjac.nn.dense(x, np.zeros((49, 2))), "w must have shape"),
    ]
    for fn, msg in bad:
        with pytest.raises(ValueError, match=msg):
            symjac.compile(fn, backend="numpy")(x)


def test_weight_gradients_reduced_over_threads_and_tiles():
    # B = 300: two threads of the parallel runner, each with a ragged last tile
    W, v = rng.normal(size=(40, 3)), rng.normal(size=40)
    X = rng.normal(size=(3, 300))

    def loss(X, W, v):
        L = np.mean((v @ np.tanh(W @ X)) ** 2) + 0.1 * np.sum(W * W)
        return (L, *symjac.dlgradient(L, W, v))

    def plain(W):
        return np.mean((v @ np.tanh(W @ X)) ** 2) + 0.1 * np.sum(W * W)
    ref = symjac.dlfeval(loss, X, W, v, batch_axis=(-1, None, None), backend="numpy")
    got = symjac.dlfeval(loss, X, W, v, batch_axis=(-1, None, None), backend="numba-parallel")
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    E = np.zeros_like(W)
    E[3, 1] = 1e-6
    np.testing.assert_allclose(ref[1][3, 1], (plain(W + E) - plain(W - E)) / 2e-6, rtol=1e-7)


def test_transposed_weights_stay_one_input_block():
    # MATLAB-style (n_out, n_in) weights used as W.T: read in place, not unrolled
    X, W = rng.normal(size=(48, 8)), rng.normal(size=(24, 48))
    got = symjac.dlfeval(lambda X, W: symjac.nn.dense(X, W.T), X, W, batch_axis=(-1, None), backend="numpy")
    np.testing.assert_allclose(got, W @ X, rtol=1e-13)
    k = symjac.compile(lambda x, A: np.tanh(np.einsum("ij,ijk->k", x, np.transpose(A, (1, 0, 2)))),
                       in_axes=(0, None), backend="numpy")
    x, A = rng.normal(size=(2, 6, 4)), rng.normal(size=(4, 6, 7))
    np.testing.assert_allclose(k(x, A), np.tanh(np.einsum("bij,jik->bk", x, A)), rtol=1e-13)
    ops = [n.op for n in k.graph.nodes()]
    assert "transpose" not in ops and ops.count("pack") == 2 and ops.count("input") == 24 + 168


def test_writes_through_views_of_tensor_values_reach_the_tensor():
    W, x = rng.normal(size=(16, 8)), rng.normal(size=8)

    def slice_view(x, W):
        h = W @ x
        v = h[2:5]
        v[0] = 0.0
        return np.tanh(h)

    def reshape_view(x, W):
        h = W @ x
        h.reshape(4, 4)[0, 1] = 5.0
        return np.tanh(h)

    def asarray_view(x, W):
        h = W @ x
        np.asarray(h)[3] = 0.0
        return np.tanh(h)
    for f in (slice_view, reshape_view, asarray_view):
        g = symjac.trace(f, x.shape, W.shape)
        np.testing.assert_allclose(g(x, W), f(x, W), rtol=1e-14, err_msg=f.__name__)


@pytest.mark.parametrize("name, f", [
    ("optimize=True", lambda x, W, V: np.einsum("ij,j->i", W, x, optimize=True)),
    ("ellipsis", lambda x, W, V: np.einsum("...ij,...j->...i", W, x)),
    ("three operands", lambda x, W, V: np.einsum("ij,jk,k->i", W, V, x)),
    ("sublists", lambda x, W, V: np.einsum(W, [1, 0], x, [0], [1])),
    ("inner", lambda x, W, V: np.inner(W, x)),
    ("multi_dot", lambda x, W, V: np.linalg.multi_dot([W, V, x])),
    ("stack of matrices", lambda x, W, V: (np.stack([W, V]) @ x).ravel()),
    ("letter Z", lambda x, W, V: np.einsum("Zj,j->Z", W, x)),
])
def test_contraction_forms_become_tensor_ops(name, f):
    W, V, x = rng.normal(size=(12, 12)), rng.normal(size=(12, 12)), rng.normal(size=(3, 12))
    k = symjac.compile(lambda x, W, V: np.tanh(f(x, W, V)), in_axes=(0, None, None), backend="numpy")
    ref = np.stack([np.tanh(f(xi, W, V)) for xi in x])
    np.testing.assert_allclose(k(x, W, V), ref, rtol=1e-13)
    assert "einsum" in tensor_ops(k.graph) and len(k.graph) < 60


def test_bad_subscripts_and_policies_are_refused():
    with pytest.raises(ValueError, match="subscripts must be letters"):
        symjac.trace(lambda x, W: np.einsum("a+,+->a", W, x), (12,), (12, 12))
    with pytest.raises(ValueError, match="min_work must be a non-negative int or None"):
        symjac.tensor_policy(min_work="a")
    with pytest.raises(ValueError, match="unroll_size must be a non-negative int"):
        symjac.tensor_policy(unroll_size=None)
    with pytest.raises(ValueError, match="padding must hold non-negative ints"):
        symjac.trace(lambda x, w: symjac.nn.conv2d(x, w, padding=((-1, 0), (0, 0))), (5, 5, 1), (3, 3, 1, 2))
    with pytest.raises(ValueError, match="b must have shape"):
        symjac.nn.conv2d(np.ones((5, 5, 1)), np.ones((3, 3, 1, 4)), np.ones((4, 1)))


def test_max_and_min_over_tensors_stay_tensor_ops():
    W = rng.normal(size=(16, 5))

    def f(x, W):
        h = np.tanh(W @ x).reshape(4, 4)
        return np.concatenate([np.max(h, axis=1), h.min(axis=0) * np.max(h), [np.linalg.norm(h)]])
    x = rng.normal(size=5)
    g = symjac.trace(f, (5,), W.shape)
    assert {"tmax", "tmin"} <= tensor_ops(g) and len(g) < 40
    np.testing.assert_allclose(g(x, W), f(x, W), rtol=1e-12)
    check_jacobian(f, x, W, argnum=0)  # central differences (the norm is not complex-analytic)
    check_jacobian(f, x, W, argnum=1)
    check_jacobian(lambda x, W: f(x, W)[:8], x, W, argnum=1, complex_step=True)
    # ties split the derivative evenly among the maxima, as JAX's max reduction does
    grad = symjac.gradient(lambda x, W: np.max(np.maximum(W @ x, 1.0)), in_axes=(0, None), backend="numpy")
    xs = np.zeros((1, 5))
    np.testing.assert_allclose(grad(xs, W), 0.0)
    Wt = np.zeros((16, 5))
    Wt[:4, 0] = 1.0  # four equal maxima, all depending on x[0]
    np.testing.assert_allclose(grad(np.full((1, 5), 2.0), Wt)[0, 0], 1.0)
    big = symjac.compile(lambda x, W: symjac.nn.softmax(W @ x), in_axes=(0, None), backend="numba")
    Wb = rng.normal(size=(512, 5))
    np.testing.assert_allclose(big(x[None], Wb)[0], np.exp(Wb @ x - (Wb @ x).max()) / np.exp(Wb @ x - (Wb @ x).max()).sum(),
                               rtol=1e-12)
    assert big.stats["statements"] < 30


def test_captured_dense_weights_are_hidden_arguments_not_literals():
    W, A = rng.normal(size=(64, 64)) / 8, rng.normal(size=(64, 3))

    def f(x):
        return np.sum(np.tanh(W @ np.tanh(A @ x)))
    k = symjac.compile(symjac.laplacian(f), backend="numba")
    x = rng.normal(size=(5, 3))
    ref = symjac.compile(symjac.laplacian(f), backend="numpy")(x)
    np.testing.assert_allclose(k(x), ref, rtol=1e-11)
    # W, A, and the tangents A @ e_j folded at trace time (constant): a hidden input, not 4,288 literals
    assert len(k.program.hidden_inputs) == 1 and len(k.source) < 20000  # one pool of the float constants
    assert sum(c.size for c in k.program.hidden_inputs) == 64 * 64 + 64 * 3 + 3 * 64 + 64
    check_jacobian(f, x[0], complex_step=True)
    # a mostly-zero constant (stoichiometry-like): against an array kept whole, a sparse product (a
    # gather, a multiply and a scatter-add over its nonzeros, never a dense loop); on scalars, unrolled,
    # where its zeros simplify away
    S = np.zeros((30, 80))
    S[rng.integers(0, 30, 80), np.arange(80)] = 1.0
    with symjac.tensor_policy(min_array=16):
        ops = tensor_ops(symjac.trace(lambda r: S @ r, (80,)))
    assert "scatter" in ops and "einsum" not in ops
    assert not tensor_ops(symjac.trace(lambda r: S @ r, (80,)))  # 80 entries: under the default min_array


def test_long_tiled_kernels_are_split_into_functions():
    # Numba's compile time grows faster than linearly with one function's size
    Ws = [rng.normal(size=(24, 3)) / 2] + [rng.normal(size=(24, 24)) / 5 for _ in range(5)] + [rng.normal(size=24) / 5]

    def u(x, *Ws):
        h = x
        for M in Ws[:-1]:
            h = np.tanh(M @ h)
        return Ws[-1] @ h
    ax = (0,) + (None,) * len(Ws)
    k = symjac.compile(symjac.laplacian(u, in_axes=ax), in_axes=ax, backend="numba")
    x = rng.normal(size=(70, 3))
    ref = symjac.compile(symjac.laplacian(u, in_axes=ax), in_axes=ax, backend="numpy")(x, *Ws)
    np.testing.assert_allclose(k(x, *Ws), ref, rtol=1e-11, atol=1e-13)
    assert k.source.count("def _part") >= 2
    # the parts read their tile buffers as rows of one pool, not as an argument each (a part took 100
    # arguments, and each call of it cost Numba seconds of typing), and read captured tables in place
    params = [m.group(1).split(", ") for m in re.finditer(r"def _part\d+\((.*?)\):", k.source)]
    assert "tp[" in k.source and "np.empty((" not in k.source  # no tile buffer of its own
    assert all(sum(re.fullmatch(r"t\d+", a) is not None for a in p) <= 6 for p in params), params  # shared values


def _functions(source):
    """(parameter count, line count) of each function in a kernel's source."""
    chunks = re.split(r"\n(?=@numba)", source)
    heads = [(re.search(r"def \w+\((.*?)\):", c), c) for c in chunks]
    return [(len(m.group(1).split(",")), len(c.splitlines())) for m, c in heads if m]


def test_long_scalar_blocks_packs_and_stores_are_split():
    # a scalar block, a pack or the stores of a tiled kernel in one function of thousands of lines (or of
    # hundreds of parameters) cost Numba minutes: a 300-reaction mechanism's Jacobian took 153 s, now 82 s
    from codegen.tiled import BLOCK_STATEMENTS, PART_LINES

    def g(x):  # a 300-entry pack of scalars, read by a tensor op
        v = np.stack([x[i % 20] * x[(i * 7 + 1) % 20] for i in range(300)])
        return np.sum(np.tanh(v) * np.arange(300.0))
    x = rng.normal(size=(9, 20))
    k = symjac.compile(g, backend="numba")
    np.testing.assert_allclose(k(x), [g(r) for r in x], rtol=1e-12)
    assert max(n for _, n in _functions(k.source)) <= BLOCK_STATEMENTS + 20
    # the pack, in pieces: its buffer (or, in a kernel split into parts, its rows of the pool) written by 2+
    assert sum(bool(re.search(r"\b(t0|tp)\[[^\n=]*\] = ", c)) for c in re.split(r"\n(?=@numba)", k.source)) >= 2

    def f(x):  # a small solve (a tensor op) among unrolled scalars, and a Jacobian of ~400 stored entries
        A = np.eye(3) * 4 + np.outer(x[:3], x[3:6]) * 0.1
        s = np.linalg.solve(A, x[6:9])
        return np.concatenate([np.sin(x) * s[0], np.cos(x) * s[1] + x[::-1] * s[2]])
    J = symjac.jacobian(f, backend="numba")
    got = J(x)
    program, source = J.kernel_for(x).program, J.kernel_for(x).source
    assert len(program.stores) > PART_LINES and program.has_tensors()  # the stores made in the scalar blocks
    assert re.search(r"e_(v\d+) = .*\n.*\n?\s+out0\[b, \d+\] = e_\1", source) and "sv[" in source
    assert max(p for p, _ in _functions(source)) <= 30
    assert max(n for _, n in _functions(source)) <= PART_LINES + 20
    np.testing.assert_allclose(got, symjac.jacobian(f, backend="numpy")(x), rtol=1e-13, atol=1e-15)
    h = 1e-6
    fd = np.stack([(f(x[0] + h * e) - f(x[0] - h * e)) / (2 * h) for e in np.eye(20)], axis=1)
    np.testing.assert_allclose(got[0], fd, rtol=1e-6, atol=1e-8)
