"""Neural-network layers on traced arrays: `conv2d`, `dense`, `relu`, `tanh`,
`softmax`, `logsumexp`.

Each works on a per-sample `TracedArray` (inside `symjac.jacobian`,
`symjac.compile`, ...) and on a batched array inside `symjac.dlfeval`, where
the batch axis must be the first or the last (MATLAB's "SSCB" and "CB"
layouts put it last).  Convolutions and dense layers are tensor ops: the
kernel runs them as loops over runtime weight arrays, whatever their size.
Layouts follow JAX and TensorFlow: images are channels-last ``(H, W, C)`` per
sample, convolution filters ``(kh, kw, C_in, C_out)``.
"""

from __future__ import annotations

import numpy as np

from symjac.frontend.batched import BatchedArray, Reduced
from symjac.frontend.traced import TracedArray, _nodes, from_tensor, is_tensor, tensor_of
from symjac.ir import make
from symjac.ops import contract, tensor as tops

__all__ = ["conv2d", "dense", "relu", "tanh", "softmax", "logsumexp", "stop_gradient"]


def _per(x, what, name):
    """(per-sample TracedArray, batch position or None, batch size) of ``x``."""
    if isinstance(x, BatchedArray):
        if x.bpos not in (None, 0, x.ndim - 1):
            raise ValueError(f"{what}: the batch axis of {name} must be its first or last axis, got axis {x.bpos}")
        return x.per, x.bpos, x.batch
    if isinstance(x, TracedArray):
        return x, None, None
    if isinstance(x, Reduced):
        raise ValueError(f"{what}: {name} is a value reduced over the batch (a loss); layers apply to "
                         "per-sample data or to shared weights")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: {name} must be a real array, got dtype {arr.dtype}")
    return TracedArray(_nodes(arr.astype(float))), None, None


def _is_traced(v):
    return isinstance(v, (TracedArray, BatchedArray)) or (isinstance(v, np.ndarray) and v.dtype == object)


def _conv2d_numeric(x, w, b, stride, padding):
    """conv2d on plain (real or complex) arrays, e.g. for complex-step checks."""
    if x.ndim != 3 or w.ndim != 4 or x.shape[2] != w.shape[2]:
        raise ValueError(f"conv2d: x of shape (H, W, C_in) and w of shape (kh, kw, C_in, C_out) needed, "
                         f"got {x.shape} and {w.shape}")
    pads = contract.conv_padding(padding, x.shape[0], x.shape[1], w.shape[0], w.shape[1], stride)
    if b is not None and np.shape(b) != (w.shape[3],):
        raise ValueError(f"conv2d: b must have shape ({w.shape[3]},), got {np.shape(b)}")
    out = contract.conv_reference(x, w, stride, pads)
    return out if b is None else out + np.asarray(b)


def _shared(x, what, name):
    per, bpos, _ = _per(x, what, name)
    if bpos is not None:
        raise ValueError(f"{what}: {name} must be shared by all samples (batch_axis None), got a batched array")
    return per


def _rebatch(per, bpos, batch, ndim_in):
    """Wrap a per-sample result; a last batch axis stays last."""
    if batch is None:
        return per
    if bpos is None:
        return BatchedArray(per, None, batch)
    return BatchedArray(per, 0 if bpos == 0 else per.ndim, batch)


def conv2d(x, w, b=None, stride=1, padding="valid"):
    """2-D cross-correlation of channels-last images with filters ``w``.

    ``x``: one sample ``(H, W, C_in)`` (a batched array inside `dlfeval`:
    ``(H, W, C_in, B)`` "SSCB" or ``(B, H, W, C_in)``); ``w``: ``(kh, kw,
    C_in, C_out)``; ``b``: ``(C_out,)`` or None; ``stride``: a positive int;
    ``padding``: ``"valid"``, ``"same"`` (output ``ceil(H / stride)``, padding
    split as in TensorFlow and JAX) or ``((top, bottom), (left, right))``.

    >>> import numpy as np, symjac
    >>> f = lambda x, w: symjac.nn.conv2d(x, w, padding="same")
    >>> k = symjac.compile(f, in_axes=(0, None), backend="numpy")
    >>> k(np.ones((2, 4, 4, 1)), np.ones((3, 3, 1, 2)))[0, :, :, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    what = "conv2d"
    if isinstance(stride, (bool, np.bool_)) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"conv2d: stride must be a positive int, got {stride!r}")
    if not any(_is_traced(v) for v in (x, w, b)):
        return _conv2d_numeric(np.asarray(x), np.asarray(w), b, int(stride), padding)
    px, bpos, batch = _per(x, what, "x")
    pw = _shared(w, what, "w")
    if px.ndim != 3:
        raise ValueError(f"conv2d: x must hold (H, W, C_in) per sample, got per-sample shape {px.shape}")
    if pw.ndim != 4 or pw.shape[2] != px.shape[2]:
        raise ValueError(f"conv2d: w must have shape (kh, kw, C_in={px.shape[2]}, C_out), got {pw.shape}")
    H, W, _ = px.shape
    kh, kw = pw.shape[:2]
    pads = contract.conv_padding(padding, H, W, kh, kw, int(stride))
    t = contract.conv2d(tensor_of(px), tensor_of(pw), int(stride), pads)
    if b is not None:
        pb = _shared(b, what, "b")
        if pb.shape != (pw.shape[3],):
            raise ValueError(f"conv2d: b must have shape ({pw.shape[3]},), got {pb.shape}")
        t = make("add", t, tops.bcast(tensor_of(pb), t.shape, (2,)))
    return _rebatch(from_tensor(t), bpos, batch, 3)


def dense(x, w, b=None):
    """A fully connected layer: each sample's ``x``, flattened (C order), times
    ``w`` of shape ``(x.size per sample, n_out)``, plus ``b`` ``(n_out,)``.

    Inside `dlfeval` the result is ``(n_out, B)`` ("CB") when x's batch axis is
    last, ``(B, n_out)`` when it is first (MATLAB's ``fullyconnect`` with the
    transposed weight layout of JAX and TensorFlow).

    >>> import numpy as np, symjac
    >>> k = symjac.compile(lambda x, w: symjac.nn.dense(x, w), in_axes=(0, None), backend="numpy")
    >>> k(np.ones((1, 2, 2)), np.ones((4, 3)))
    array([[4., 4., 4.]])
    """
    if not any(_is_traced(v) for v in (x, w, b)):
        y = np.asarray(x).reshape(-1) @ np.asarray(w)
        return y if b is None else y + np.asarray(b)
    px, bpos, batch = _per(x, "dense", "x")
    pw = _shared(w, "dense", "w")
    flat = px.reshape(-1)
    if pw.ndim != 2 or pw.shape[0] != flat.shape[0]:
        raise ValueError(f"dense: w must have shape ({flat.shape[0]}, n_out) for x with {flat.shape[0]} "
                         f"entries per sample, got {pw.shape}")
    y = flat @ pw
    if b is not None:
        pb = _shared(b, "dense", "b")
        if pb.shape != (pw.shape[1],):
            raise ValueError(f"dense: b must have shape ({pw.shape[1]},), got {pb.shape}")
        y = y + pb
    return _rebatch(y, bpos, batch, px.ndim)


def relu(x):
    """``max(x, 0)`` elementwise (derivative 1/2 at 0, as JAX's maximum).

    >>> import numpy as np, symjac
    >>> symjac.nn.relu(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    return np.maximum(x, 0.0)


def tanh(x):
    """``np.tanh``, for symmetry with the other layers.

    >>> import numpy as np, symjac
    >>> symjac.nn.tanh(np.array([0.0]))
    array([0.])
    """
    return np.tanh(x)


def stop_gradient(x):
    """``x`` with a zero derivative (the identity for values).

    >>> import numpy as np, symjac
    >>> symjac.jacobian(lambda x: x * symjac.nn.stop_gradient(x), backend="numpy")(np.array([[3.0]]))
    array([[[3.]]])
    """
    if not _is_traced(x):
        return x
    if isinstance(x, BatchedArray):
        return BatchedArray(stop_gradient(x.per), x.bpos, x.batch)
    if is_tensor(x):
        return TracedArray(tensor=tops.fit(make("stop", x.tensor), x.shape))
    arr = _nodes(x)
    out = np.frompyfunc(lambda n: make("stop", n), 1, 1)(arr)
    return TracedArray(out if isinstance(out, np.ndarray) else np.asarray(out, dtype=object))


def _axes(x, axis):
    if axis is not None:
        return axis
    if isinstance(x, BatchedArray) and x.bpos is not None:
        return tuple(a for a in range(x.ndim) if a != x.bpos)
    return None


def softmax(x, axis=None):
    """``exp(x) / sum(exp(x))`` over ``axis`` (None: every per-sample axis),
    shifted by the maximum for range; the shift carries no derivative (the
    result does not depend on it).

    >>> import numpy as np, symjac
    >>> symjac.compile(lambda x: symjac.nn.softmax(x), backend="numpy")(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    axis = _axes(x, axis)
    z = x - stop_gradient(np.max(x, axis=axis, keepdims=True))
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(x, axis=None, keepdims=False):
    """``log(sum(exp(x)))`` over ``axis`` (None: every per-sample axis), computed
    without overflow.

    >>> import numpy as np, symjac
    >>> symjac.compile(lambda x: symjac.nn.logsumexp(x), backend="numpy")(np.array([[1000.0, 1000.0]]))
    array([1000.69314718])
    """
    axis = _axes(x, axis)
    m = stop_gradient(np.max(x, axis=axis, keepdims=True))
    r = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return r if keepdims else np.squeeze(r, axis=axis)
