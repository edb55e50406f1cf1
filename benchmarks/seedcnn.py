"""seedcnn benchmark: per-observation Jacobian of a small CNN (MATLAB ``dljacobian`` documentation example).

Per observation an image x (16, 16, 3), channels last: a 3x3 convolution with
64 filters, stride 1, padding "same" (zero padding 1 on each side), weights
Wc (3, 3, 3, 64) (HWIO, as in JAX/TensorFlow) plus bias bc (64,); ReLU; a
fully connected layer on the C-order flattened (16, 16, 64) activations, Wf
(16384, 5) plus bf (5,); softmax over the 5 outputs.  The Jacobian of Y (5,)
with respect to x is (5, 16, 16, 3) per observation.  The weights are shared
by every observation (normal, scaled by 1/sqrt(fan_in), seeded); X is uniform
in [-1, 1].

symjac sees the MATLAB "SSCB" layout: X (16, 16, 3, B), batch last, through
``symjac.dlfeval(model, X, Wc, bc, Wf, bf, batch_axis=(-1, None, None, None, None))``
with ``model`` written with ``symjac.nn`` and returning ``symjac.dljacobian(Y, X, 0)``
(5, 16, 16, 3, B).  If ``symjac.nn`` (or a layer used here) is missing, that
row is reported as skipped and the others still run.

The correctness reference is plain NumPy, analytic (softmax Jacobian times
Wf^T times the ReLU mask, through the transposed convolution): every row is
compared with it.  The peers (JAX ``jit(vmap(jacrev))`` / ``jit(vmap(jacfwd))``
on NHWC, ``torch.func`` ``vmap(jacrev)`` on NCHW) get their input in their
own layout, converted once before the clock starts, and return the Jacobian
batch first; as in the other benchmarks, moving it to the (5, 16, 16, 3, B)
layout happens in the untimed comparison only.  Timed: one call on the
whole batch (JAX until ``block_until_ready``).

Run:  python -m benchmarks.seedcnn [--quick] [--repeats N] [-B N] [--methods a,b]
"""

from __future__ import annotations

import math
import os
import sys
from types import SimpleNamespace

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common
from benchmarks.common import Method, Runner, Skip

common.setup_env()  # fresh SYMJAC_CACHE_DIR before symjac is imported anywhere

NAME = "seedcnn"
TITLE = "seedcnn: conv 3x3x64 (same) + ReLU + dense 5 + softmax on 16x16x3 images, dY/dX per observation"
DEFAULT_B = 128
QUICK_B = 16
H, W, C_IN, C_OUT, K, N_OUT = 16, 16, 3, 64, 3, 5
N_HIDDEN = H * W * C_OUT  # 16384
SEED = 11
BATCH_AXIS = (-1, None, None, None, None)  # X batched (last axis), the weights shared


# -- the model in plain NumPy -------------------------------------------------------

def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _conv_geometry(size, k, s, padding):
    """(output size, pad before, pad after) along one spatial axis (TensorFlow/JAX rules)."""
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    if padding == "same":
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, total // 2, total - total // 2
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def _conv_batched(x, w, b, stride, padding):
    """Cross-correlation of ``x`` (N, H, W, C) with ``w`` (kh, kw, C, O): (N, Ho, Wo, O)."""
    (sh, sw), (kh, kw) = _pair(stride), w.shape[:2]
    ho, ph0, ph1 = _conv_geometry(x.shape[1], kh, sh, padding)
    wo, pw0, pw1 = _conv_geometry(x.shape[2], kw, sw, padding)
    xp = np.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))
    out = np.zeros(x.shape[:1] + (ho, wo, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += xp[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :] @ w[i, j]
    return out if b is None else out + b


def _conv_transpose_batched(g, w, in_hw, stride, padding):
    """The adjoint of `_conv_batched` in ``x``: ``g`` (N, Ho, Wo, O) -> (N, H, W, C)."""
    (sh, sw), (kh, kw) = _pair(stride), w.shape[:2]
    ho, ph0, ph1 = _conv_geometry(in_hw[0], kh, sh, padding)
    wo, pw0, pw1 = _conv_geometry(in_hw[1], kw, sw, padding)
    xp = np.zeros((g.shape[0], in_hw[0] + ph0 + ph1, in_hw[1] + pw0 + pw1, w.shape[2]))
    for i in range(kh):
        for j in range(kw):
            xp[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :] += g @ w[i, j].T
    return xp[:, ph0:ph0 + in_hw[0], pw0:pw0 + in_hw[1], :]


def conv2d_np(x_hwc, w, b=None, stride=1, padding="valid"):
    """Plain NumPy 2-D convolution of one image ``x_hwc`` (H, W, C) with ``w``
    (kh, kw, C, O) and bias ``b`` (O,) or None: (Ho, Wo, O), cross-correlation as in
    JAX/TensorFlow.  ``padding`` "valid" or "same" (output ceil(H / stride), pad_total =
    max((out - 1) * stride + k - H, 0), pad_before = pad_total // 2)."""
    return _conv_batched(np.asarray(x_hwc, dtype=float)[None], w, b, stride, padding)[0]


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _forward_parts(X_sscb, Wc, bc, Wf, bf):
    """Batch-first pre-activations A (B, 16, 16, 64) and outputs Y (B, 5)."""
    A = _conv_batched(np.moveaxis(X_sscb, -1, 0), Wc, bc, 1, "same")
    z = np.maximum(A, 0.0).reshape(A.shape[0], -1) @ Wf + bf
    return A, _softmax_rows(z)


def forward_np(X_sscb, Wc, bc, Wf, bf):
    """The network on X (16, 16, 3, B) in plain NumPy: Y (5, B) ("CB")."""
    return _forward_parts(X_sscb, Wc, bc, Wf, bf)[1].T


def _jacobian_batch_first(p):
    """dY/dx per observation, batch first: (B, 5, 16, 16, 3)."""
    A, Y = _forward_parts(p.X, p.Wc, p.bc, p.Wf, p.bf)
    S = Y[:, :, None] * (np.eye(N_OUT) - Y[:, None, :])  # softmax Jacobian (B, 5, 5)
    G = (S @ p.Wf.T).reshape(p.B, N_OUT, H, W, C_OUT) * (A > 0)[:, None]  # dY/dA
    Jx = _conv_transpose_batched(G.reshape((-1,) + G.shape[2:]), p.Wc, (H, W), 1, "same")
    return Jx.reshape(p.B, N_OUT, H, W, C_IN)


def reference_jacobian(problem):
    """The analytic Jacobian in MATLAB layout: (5, 16, 16, 3, B)."""
    return np.moveaxis(_jacobian_batch_first(problem), 0, -1)


# -- problem --------------------------------------------------------------------

def make_weights(seed=SEED):
    """Wc (3, 3, 3, 64), bc (64,), Wf (16384, 5), bf (5,): normal / sqrt(fan_in)."""
    rng = np.random.default_rng(seed)
    fan_c, fan_f = K * K * C_IN, N_HIDDEN
    Wc = rng.normal(size=(K, K, C_IN, C_OUT)) / math.sqrt(fan_c)
    bc = rng.normal(size=C_OUT) / math.sqrt(fan_c)
    Wf = rng.normal(size=(N_HIDDEN, N_OUT)) / math.sqrt(fan_f)
    bf = rng.normal(size=N_OUT) / math.sqrt(fan_f)
    return Wc, bc, Wf, bf


def make_problem(B, seed=0):
    rng = np.random.default_rng(2024 + seed)
    X = rng.uniform(-1.0, 1.0, (H, W, C_IN, B))  # "SSCB"
    Wc, bc, Wf, bf = make_weights()
    return SimpleNamespace(B=B, X=X, Wc=Wc, bc=bc, Wf=Wf, bf=bf)


def _dense_batch_first(J, idx):
    """Rows ``idx`` of a batch-first (B, 5, 16, 16, 3) Jacobian as (n, 5, 768)."""
    return np.asarray(J)[idx].reshape(len(idx), N_OUT, -1)


def _dense_sscb(J, idx):
    """Rows ``idx`` of a MATLAB-layout (5, 16, 16, 3, B) Jacobian as (n, 5, 768)."""
    return _dense_batch_first(np.moveaxis(np.asarray(J), -1, 0), idx)


def _numpy_ref(p):
    state = {}

    def run():
        state["res"] = reference_jacobian(p)

    return Runner(run, lambda idx: _dense_sscb(state["res"], idx))


# -- symjac ---------------------------------------------------------------------

_NN_NAMES = ("conv2d", "relu", "dense", "softmax")


def _symjac_nn():
    """``symjac.nn``, or `Skip` while it (or one of the layers used here) does not exist."""
    import symjac

    try:
        from symjac import nn
    except ImportError as e:
        raise Skip(f"symjac.nn not available yet ({e})") from None
    missing = [n for n in _NN_NAMES if not hasattr(nn, n)]
    if missing or not hasattr(symjac, "dlfeval"):
        raise Skip(f"symjac.nn lacks {', '.join(missing) or 'nothing'}"
                   f"{'' if hasattr(symjac, 'dlfeval') else '; symjac.dlfeval missing'}")
    return symjac, nn


def seedcnn_model(X, Wc, bc, Wf, bf):
    """The network as symjac sees it (inside ``symjac.dlfeval``): dY/dX, (5, 16, 16, 3, B)."""
    symjac, nn = _symjac_nn()
    h = nn.relu(nn.conv2d(X, Wc, bc, stride=1, padding="same"))
    Y = nn.softmax(nn.dense(h, Wf, bf), axis=0)
    return symjac.dljacobian(Y, X, 0)


def _preload_symjac():
    import numba  # noqa: F401  (library import is not part of the first call)

    _symjac_nn()


def _symjac(p, backend):
    symjac, _ = _symjac_nn()
    args = (p.X, p.Wc, p.bc, p.Wf, p.bf)
    state = {}

    def run():
        state["res"] = symjac.dlfeval(seedcnn_model, *args, batch_axis=BATCH_AXIS, backend=backend)

    run()  # the first call traces and compiles
    return Runner(run, lambda idx: _dense_sscb(state["res"], idx), info=_kernel_info(symjac))


def _kernel_info(symjac):
    """``Kernel.stats`` and source lines of the kernel `dlfeval` compiled for `seedcnn_model`
    (read from dlfeval's trace cache, a private detail: empty if that changes)."""
    try:
        kernels = [entry[0] for key, entry in symjac.dl._CACHE.items() if key[0] is seedcnn_model]
    except AttributeError:
        return {}
    if not kernels:
        return {}
    k = kernels[-1]
    st = k.stats
    return {"dag_ops": st["dag_ops"], "flops/sample": st["flops_per_sample"], "statements": st["statements"],
            "source lines": len(k.source.splitlines())}


# -- peers ----------------------------------------------------------------------

def _preload_jax():
    import jax

    jax.config.update("jax_enable_x64", True)


def _jax(p, mode):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    def f(x, Wc, bc, Wf, bf):  # one observation, x (16, 16, 3)
        h = jax.lax.conv_general_dilated(x[None], Wc, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))[0] + bc
        return jax.nn.softmax(jax.nn.relu(h).reshape(-1) @ Wf + bf)

    jac = {"jacrev": jax.jacrev, "jacfwd": jax.jacfwd}[mode]
    fn = jax.jit(jax.vmap(jac(f), in_axes=(0, None, None, None, None)))
    X = jnp.asarray(np.moveaxis(p.X, -1, 0))  # (B, 16, 16, 3), converted once
    Wts = [jnp.asarray(a) for a in (p.Wc, p.bc, p.Wf, p.bf)]
    state = {}

    def run():
        state["res"] = jax.block_until_ready(fn(X, *Wts))  # (B, 5, 16, 16, 3)

    return Runner(run, lambda idx: _dense_batch_first(state["res"], idx))


def _preload_torch():
    import torch
    import torch.func  # noqa: F401


def _torch(p):
    import torch
    import torch.nn.functional as F
    from torch.func import jacrev, vmap

    # NCHW throughout: conv weights OIHW, the dense weights' rows reordered from
    # (h, w, c) to torch's (c, h, w) flattening; both converted once, untimed.
    Wc = torch.from_numpy(np.ascontiguousarray(p.Wc.transpose(3, 2, 0, 1)))
    Wf = torch.from_numpy(np.ascontiguousarray(
        p.Wf.reshape(H, W, C_OUT, N_OUT).transpose(2, 0, 1, 3).reshape(N_HIDDEN, N_OUT)))
    bc, bf = torch.from_numpy(p.bc), torch.from_numpy(p.bf)

    def f(x):  # one observation, x (3, 16, 16)
        h = torch.relu(F.conv2d(x[None], Wc, bc, stride=1, padding=1))[0]
        return torch.softmax(h.reshape(-1) @ Wf + bf, dim=0)

    fn = vmap(jacrev(f))
    X = torch.from_numpy(np.ascontiguousarray(p.X.transpose(3, 2, 0, 1)))  # (B, 3, 16, 16)
    state = {}

    def run():
        with torch.no_grad():
            state["res"] = fn(X)  # (B, 5, 3, 16, 16)

    def dense(idx):  # (n, 5, 3, 16, 16) -> (n, 5, 16, 16, 3) -> (n, 5, 768)
        return state["res"].numpy()[idx].transpose(0, 1, 3, 4, 2).reshape(len(idx), N_OUT, -1)

    return Runner(run, dense, info={"torch_threads": torch.get_num_threads()})


# -- report -----------------------------------------------------------------------

def describe(p):
    n_w = sum(a.size for a in (p.Wc, p.bc, p.Wf, p.bf))
    conv_flops = 2 * H * W * C_OUT * K * K * C_IN
    return [
        (f"- network per observation: x ({H}, {W}, {C_IN}) -> conv {K}x{K}x{C_OUT} stride 1 'same' + ReLU "
         f"-> dense {N_HIDDEN} -> {N_OUT} -> softmax; {n_w} weights (seed {SEED}) shared by all observations"),
        (f"- Jacobian dY/dx per observation: {N_OUT} x {H * W * C_IN} (MATLAB layout "
         f"({N_OUT}, {H}, {W}, {C_IN}, B)); forward pass ~{conv_flops + 2 * N_HIDDEN * N_OUT} flops per observation"),
        ("- errors are against the analytic NumPy Jacobian (first row); peers take their input in their own "
         "layout (converted untimed) and return it batch first (moved for the comparison only, untimed)"),
    ]


def floor_shapes(p):
    return [("jacobian", (p.B, N_OUT * H * W * C_IN))]


def check_indices(B):
    return np.unique(np.linspace(0, B - 1, min(B, 257)).astype(np.int64))


METHODS = [
    Method("NumPy analytic (reference)", _numpy_ref, note="softmax Jac @ Wf^T * ReLU mask, transposed conv; "
           "allocates", key="numpy-ref", fresh_first_call=False),
    Method("symjac dlfeval (numba-parallel)", lambda p: _symjac(p, "numba-parallel"), _preload_symjac,
           "dlfeval + symjac.nn, MATLAB SSCB layout in and out; allocates", key="symjac"),
    Method("symjac dlfeval (numba, 1 thread)", lambda p: _symjac(p, "numba"), _preload_symjac,
           "as above, one thread", key="symjac-1t", default=False),
    Method("JAX jit(vmap(jacrev))", lambda p: _jax(p, "jacrev"), _preload_jax,
           "float64, NHWC in, (B, 5, 16, 16, 3) out; allocates", key="jax-jacrev", fresh_first_call=False),
    Method("JAX jit(vmap(jacfwd))", lambda p: _jax(p, "jacfwd"), _preload_jax,
           "float64, NHWC in, (B, 5, 16, 16, 3) out; allocates", key="jax-jacfwd", fresh_first_call=False),
    Method("torch.func vmap(jacrev)", _torch, _preload_torch,
           "float64, NCHW in, (B, 5, 3, 16, 16) out; allocates", key="torch-jacrev", fresh_first_call=False),
]

REFS = [("symjac", "symjac dlfeval (numba-parallel)")]

# The tensor-ops issue's targets: first call (trace, differentiate, generate, Numba
# compile, first evaluation; fresh process, empty cache) under 30 s, and throughput
# at least JAX jit(vmap(jacrev))'s (peer time / symjac time >= 1).
TARGETS = [
    ("faster", "symjac dlfeval (numba-parallel)", "JAX jit(vmap(jacrev))", 1.0),
    ("first", "symjac dlfeval (numba-parallel)", 30.0),
]


if __name__ == "__main__":
    common.main(sys.modules[__name__])
