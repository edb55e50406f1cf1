"""Tensor ops: values that stay arrays in the graph and loops in the kernel.

Scalar nodes are unrolled into one statement each; a dense layer of width 64
or a convolution would be hundreds of thousands of them.  The ops here keep
such work whole: a node has a static per-sample ``shape``, elementwise ops
(`symjac.simplify.make` with tensor arguments) apply to whole tensors, and

- ``pack`` (scalars -> tensor) and ``elem`` (tensor -> one scalar) join the
  two worlds, so small work around a tensor is still unrolled and simplified;
- ``bcast`` (broadcast in dims), ``tsum`` (sum over axes), ``reshape`` and
  ``transpose`` are linear maps of one tensor;
- ``einsum`` (a contraction of two tensors with explicit subscripts) and the
  2-D convolution ``conv2d`` with its two transposes ``conv2d_bx`` (the
  input gradient) and ``conv2d_bw`` (the filter gradient) are bilinear.

Every op's derivative is another of these ops: a linear op's JVP is the op
applied to the tangent and its VJP is its transpose; a bilinear op's JVP is
the sum over its arguments, so second derivatives (the forward Laplacian,
Hessians, the gradient of a loss on a Laplacian) need nothing more.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from symjac.graph import intern
from symjac.simplify import BUILDERS, ZERO, make

__all__ = ["tconst", "constant_value", "pack", "elem", "bcast", "broadcast_to", "fit", "tsum", "textreme", "extreme_weights", "reshape", "transpose", "einsum",
           "conv2d", "conv2d_bx", "conv2d_bw", "conv_padding", "conv_reference", "TENSOR_OPS", "LINEAR", "BILINEAR",
           "linear_apply", "transpose_rule", "evaluate_tensor", "tensor_cost", "is_tensor_op"]

LINEAR = {"pack", "elem", "bcast", "tsum", "reshape", "transpose"}  # linear in all args jointly
# max/min over axes: piecewise linear, derivative sum(t * weights) with the weights
# splitting ties evenly (as the elementwise maximum does), built from comparisons
EXTREME = {"tmax", "tmin"}
BILINEAR = {"einsum", "conv2d", "conv2d_bx", "conv2d_bw"}  # linear in each argument
TENSOR_OPS = LINEAR | BILINEAR | EXTREME | {"tconst"}


_CONSTANTS: dict = {}  # (shape, digest) -> read-only float64 array


def tconst(array):
    """A constant tensor (weights captured by the model): a hidden kernel argument,
    not thousands of literals in the source."""
    a = np.array(array, dtype=np.float64, order="C")
    a.flags.writeable = False
    key = (a.shape, hashlib.sha1(a.tobytes()).hexdigest())
    _CONSTANTS.setdefault(key, a)
    return intern("tconst", (), key, "float", a.shape)


def constant_value(node):
    return _CONSTANTS[node.attr]


def is_tensor_op(op):
    return op in TENSOR_OPS


# -- linear ops of one tensor ---------------------------------------------------

def pack(items, shape):
    """The tensor of ``shape`` whose flat (C-order) entries are the scalar ``items``."""
    shape = tuple(int(d) for d in shape)
    items = tuple(items)
    if len(items) != math.prod(shape):
        raise ValueError(f"pack: {len(items)} items for shape {shape}")
    if any(it.shape for it in items):
        raise ValueError("pack: items must be scalars")
    if shape == ():
        return items[0]
    first = items[0]
    if first.op == "elem" and first.attr == 0 and math.prod(first.args[0].shape) == len(items):
        t = first.args[0]
        if all(it.op == "elem" and it.args[0] is t and it.attr == i for i, it in enumerate(items)):
            return reshape(t, shape)
    return intern("pack", items, shape, "float", shape)


def elem(t, index):
    """The scalar at flat (C-order) ``index`` of tensor ``t``."""
    if not t.shape:
        return t
    index = int(index)
    if not 0 <= index < math.prod(t.shape):
        raise IndexError(f"elem: index {index} out of range for shape {t.shape}")
    if t.op == "pack":
        return t.args[index]
    if t.op == "bcast" and not t.args[0].shape:
        return t.args[0]
    return intern("elem", (t,), index, t.kind, ())


def bcast(a, shape, dims=None):
    """Broadcast ``a`` to ``shape``: axis i of ``a`` becomes axis ``dims[i]``
    (increasing; default: the trailing axes, as NumPy aligns them).  Every
    axis of ``a`` must have its full size (squeeze size-1 axes first)."""
    shape = tuple(int(d) for d in shape)
    dims = tuple(range(len(shape) - len(a.shape), len(shape))) if dims is None else tuple(dims)
    if len(dims) != len(a.shape) or any(a.shape[i] != shape[d] for i, d in enumerate(dims)) \
            or list(dims) != sorted(set(dims)):
        raise ValueError(f"bcast: cannot broadcast shape {a.shape} to {shape} along dims {dims}")
    if a.shape == shape:
        return a
    return intern("bcast", (a,), (shape, dims), a.kind, shape)


def broadcast_to(a, shape):
    """NumPy broadcasting of ``a`` (size-1 axes allowed) to ``shape``."""
    shape = tuple(shape)
    if a.shape == shape:
        return a
    lead = len(shape) - len(a.shape)
    if lead < 0:
        raise ValueError(f"cannot broadcast shape {a.shape} to {shape}")
    keep = [i for i, d in enumerate(a.shape) if not (d == 1 and shape[lead + i] != 1)]
    for i, d in enumerate(a.shape):
        if d != 1 and d != shape[lead + i]:
            raise ValueError(f"cannot broadcast shape {a.shape} to {shape}")
    squeezed = reshape(a, tuple(a.shape[i] for i in keep)) if len(keep) != len(a.shape) else a
    return bcast(squeezed, shape, tuple(lead + i for i in keep))


def fit(t, shape):
    """``t`` as a node of ``shape`` (a scalar is broadcast)."""
    if t.shape == tuple(shape):
        return t
    return bcast(t, shape, None) if not t.shape else broadcast_to(t, shape)


def tsum(a, axes):
    """Sum of ``a`` over ``axes``."""
    axes = tuple(sorted({int(x) % len(a.shape) for x in axes})) if a.shape else ()
    if not axes:
        return a
    shape = tuple(d for i, d in enumerate(a.shape) if i not in axes)
    if all(a.shape[i] == 1 for i in axes):
        return reshape(a, shape)
    if not shape and a.op == "pack":
        acc = a.args[0]
        for it in a.args[1:]:
            acc = make("add", acc, it)
        return acc
    return intern("tsum", (a,), axes, a.kind, shape)


def textreme(op, a, axes):
    """``op`` ("tmax" or "tmin") of ``a`` over ``axes``; NaN propagates."""
    axes = tuple(sorted({int(x) % len(a.shape) for x in axes})) if a.shape else ()
    if not axes:
        return a
    shape = tuple(d for i, d in enumerate(a.shape) if i not in axes)
    if all(a.shape[i] == 1 for i in axes):
        return reshape(a, shape)
    return intern(op, (a,), axes, a.kind, shape)


def extreme_weights(node):
    """d node / d a as weights on a: 1/(number of ties) where a equals the extreme."""
    a = node.args[0]
    kept = tuple(i for i in range(len(a.shape)) if i not in node.attr)
    hit = make("where", make("eq", a, bcast(node, a.shape, kept)), 1.0, 0.0)
    return make("div", hit, bcast(tsum(hit, node.attr), a.shape, kept))


def reshape(a, shape):
    """``a`` with a new shape of the same size (C order); a reshape of a reshape is one."""
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != math.prod(a.shape):
        raise ValueError(f"reshape: cannot reshape {a.shape} to {shape}")
    if shape == a.shape:
        return a
    if not a.shape:
        return bcast(a, shape) if math.prod(shape) == 1 else a
    if not shape:
        return elem(a, 0)
    if a.op == "reshape":
        return reshape(a.args[0], shape)
    if a.op == "pack":
        return pack(a.args, shape)
    return intern("reshape", (a,), shape, a.kind, shape)


def transpose(a, perm):
    """``a`` with its axes permuted (axis i of the result is axis ``perm[i]`` of ``a``)."""
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(len(a.shape))):
        raise ValueError(f"transpose: {perm} is not a permutation of the axes of shape {a.shape}")
    if perm == tuple(range(len(perm))):
        return a
    nontrivial = [p for p in perm if a.shape[p] != 1]
    if nontrivial == sorted(nontrivial):  # only size-1 axes move: a reshape
        return reshape(a, tuple(a.shape[p] for p in perm))
    if a.op == "transpose":
        inner = a.attr
        return transpose(a.args[0], tuple(inner[p] for p in perm))
    return intern("transpose", (a,), perm, a.kind, tuple(a.shape[p] for p in perm))


# -- bilinear ops ------------------------------------------------------------------

def _parse(spec):
    ins, out = spec.split("->")
    sa, sb = ins.split(",")
    return sa, sb, out


_CANON = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY"


def einsum(spec, a, b):
    """The contraction ``np.einsum(spec, a, b)`` with explicit subscripts, no
    repeated index within an operand; indices of one operand that appear
    nowhere else are summed first."""
    spec = spec.replace(" ", "")
    if spec.count("->") != 1 or spec.count(",") != 1 or \
            not all(ch.isascii() and ch.isalpha() for ch in spec.replace("->", "").replace(",", "")):
        raise ValueError(f"einsum: subscripts must be 'ab,bc->ac' with ASCII letters, got {spec!r}")
    sa, sb, out = _parse(spec)
    for s, t, what in ((sa, a, "first"), (sb, b, "second")):
        if len(s) != len(t.shape) or len(set(s)) != len(s):
            raise ValueError(f"einsum {spec!r}: subscripts {s!r} do not fit the {what} operand of shape {t.shape}")
    # a transposed operand is read in place: its subscripts move instead
    if a.op == "transpose":
        sa, a = "".join(sorted(sa, key=lambda ch: a.attr[sa.index(ch)])), a.args[0]
    if b.op == "transpose":
        sb, b = "".join(sorted(sb, key=lambda ch: b.attr[sb.index(ch)])), b.args[0]
    sizes = {}
    for s, t in ((sa, a), (sb, b)):
        for ch, d in zip(s, t.shape):
            if sizes.setdefault(ch, d) != d:
                raise ValueError(f"einsum {spec!r}: index {ch!r} has sizes {sizes[ch]} and {d}")
    if len(set(out)) != len(out) or any(ch not in sizes for ch in out):
        raise ValueError(f"einsum {spec!r}: bad output subscripts")
    # indices only one operand has, and the output lacks: sum them away first
    lone_a = [i for i, ch in enumerate(sa) if ch not in sb and ch not in out]
    if lone_a:
        a, sa = tsum(a, lone_a), "".join(ch for i, ch in enumerate(sa) if i not in lone_a)
    lone_b = [i for i, ch in enumerate(sb) if ch not in sa and ch not in out]
    if lone_b:
        b, sb = tsum(b, lone_b), "".join(ch for i, ch in enumerate(sb) if i not in lone_b)
    if not sa or not sb:  # a scalar factor: elementwise
        scalar, other, so = (a, b, sb) if not sa else (b, a, sa)
        prod = make("mul", scalar, other)
        keep = [i for i, ch in enumerate(so) if ch in out]
        summed = tsum(prod, [i for i in range(len(so)) if i not in keep]) if len(keep) < len(so) else prod
        sk = "".join(so[i] for i in keep)
        return transpose(summed, tuple(sk.index(ch) for ch in out)) if sk != out else summed
    big, small, sbig, ssmall = (a, b, sa, sb) if len(sa) >= len(sb) else (b, a, sb, sa)
    if sbig == out and set(ssmall) <= set(sbig):  # a broadcasting product: elementwise
        dims = tuple(out.index(ch) for ch in ssmall)
        if list(dims) == sorted(dims):
            return make("mul", big, bcast(small, big.shape, dims))
    shape = tuple(sizes[ch] for ch in out)
    # canonical subscripts (a, b, c... by first appearance): equal contractions are one node,
    # and the printers only ever see these letters ('Z' stays free for the batch)
    names = {ch: _CANON[i] for i, ch in enumerate(dict.fromkeys(sa + sb + out))}
    canon = "".join(names[ch] for ch in sa) + "," + "".join(names[ch] for ch in sb) + "->" + \
        "".join(names[ch] for ch in out)
    return intern("einsum", (a, b), canon, "float", shape)


def conv_padding(padding, h, w, kh, kw, stride):
    """((top, bottom), (left, right)) for "valid", "same" (TensorFlow/JAX split) or explicit pads."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        pads = []
        for n, k in ((h, kh), (w, kw)):
            out = -(-n // stride)
            total = max((out - 1) * stride + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    try:
        pads = tuple(tuple(p) for p in padding)
        (t, b), (l, r) = pads
    except (TypeError, ValueError):
        raise ValueError(f"padding must be 'valid', 'same' or ((top, bottom), (left, right)), got {padding!r}") from None
    if not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in (t, b, l, r)):
        raise ValueError(f"padding must hold non-negative ints ((top, bottom), (left, right)), got {padding!r}")
    return ((int(t), int(b)), (int(l), int(r)))


def _conv_out(n, k, stride, pad):
    return (n + pad[0] + pad[1] - k) // stride + 1


def conv2d(x, w, stride, pads):
    """Cross-correlation of ``x`` (H, W, C_in) with ``w`` (kh, kw, C_in, C_out)."""
    if len(x.shape) != 3 or len(w.shape) != 4 or x.shape[2] != w.shape[2]:
        raise ValueError(f"conv2d: x of shape (H, W, C_in) and w of shape (kh, kw, C_in, C_out) needed, "
                         f"got {x.shape} and {w.shape}")
    (H, W, _), (kh, kw, _, co) = x.shape, w.shape
    ho, wo = _conv_out(H, kh, stride, pads[0]), _conv_out(W, kw, stride, pads[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: a {kh}x{kw} filter does not fit a {H}x{W} input with padding {pads}")
    return intern("conv2d", (x, w), (int(stride), tuple(map(tuple, pads))), "float", (ho, wo, co))


def conv2d_bx(g, w, stride, pads, hw):
    """The transpose of ``conv2d(., w)``: from an output cotangent ``g``
    (Ho, Wo, C_out) to the input's (H, W, C_in)."""
    return intern("conv2d_bx", (g, w), (int(stride), tuple(map(tuple, pads)), tuple(hw)), "float",
                  (hw[0], hw[1], w.shape[2]))


def conv2d_bw(x, g, stride, pads, khw):
    """The transpose of ``conv2d(x, .)``: the filter cotangent (kh, kw, C_in, C_out)."""
    return intern("conv2d_bw", (x, g), (int(stride), tuple(map(tuple, pads)), tuple(khw)), "float",
                  (khw[0], khw[1], x.shape[2], g.shape[2]))


BUILDERS.update({
    "pack": lambda args, attr: pack(args, attr),
    "elem": lambda args, attr: elem(args[0], attr),
    "bcast": lambda args, attr: fit(args[0], attr[0]) if not args[0].shape else bcast(args[0], *attr),
    "tsum": lambda args, attr: tsum(args[0], attr),
    "tmax": lambda args, attr: textreme("tmax", args[0], attr),
    "tmin": lambda args, attr: textreme("tmin", args[0], attr),
    "reshape": lambda args, attr: reshape(args[0], attr),
    "transpose": lambda args, attr: transpose(args[0], attr),
    "einsum": lambda args, attr: einsum(attr, *args),
    "conv2d": lambda args, attr: conv2d(args[0], args[1], *attr),
    "conv2d_bx": lambda args, attr: conv2d_bx(args[0], args[1], *attr),
    "conv2d_bw": lambda args, attr: conv2d_bw(args[0], args[1], *attr),
})


def linear_apply(node, args):
    """``node``'s op (same attribute) on new arguments; None arguments are zero.
    (For max/min: their derivative, the weighted sum, applied to ``args``.)"""
    if node.op in EXTREME:
        return None if args[0] is None else tsum(make("mul", args[0], extreme_weights(node)), node.attr)
    if node.op in BILINEAR:
        if any(a is None for a in args):
            return None
        return BUILDERS[node.op](args, node.attr)
    if all(a is None for a in args):
        return None
    if node.op == "pack":
        args = [ZERO if a is None else a for a in args]
    return BUILDERS[node.op](args, node.attr)


# -- transposes (reverse mode) ---------------------------------------------------

def transpose_rule(node, g):
    """Cotangents of ``node``'s arguments for the output cotangent ``g``."""
    op, attr = node.op, node.attr
    if op == "pack":
        return [elem(g, i) for i in range(len(node.args))]
    if op == "elem":
        t = node.args[0]
        n = math.prod(t.shape)
        return [pack([g if i == attr else ZERO for i in range(n)], t.shape)]
    if op == "bcast":
        shape, dims = attr
        return [tsum(g, [i for i in range(len(shape)) if i not in dims])]
    if op == "tsum":
        a = node.args[0]
        return [bcast(g, a.shape, tuple(i for i in range(len(a.shape)) if i not in attr))]
    if op in EXTREME:
        a = node.args[0]
        spread = bcast(g, a.shape, tuple(i for i in range(len(a.shape)) if i not in attr))
        return [make("mul", spread, extreme_weights(node))]
    if op == "reshape":
        return [reshape(g, node.args[0].shape)]
    if op == "transpose":
        return [transpose(g, tuple(np.argsort(attr)))]
    a, b = node.args
    if op == "einsum":
        sa, sb, out = _parse(attr)
        return [einsum(f"{out},{sb}->{sa}", g, b), einsum(f"{sa},{out}->{sb}", a, g)]
    stride, pads = attr[0], attr[1]
    if op == "conv2d":
        return [conv2d_bx(g, b, stride, pads, a.shape[:2]), conv2d_bw(a, g, stride, pads, b.shape[:2])]
    if op == "conv2d_bx":  # node = bx(a=g_out, b=w): <bx(a, w), c> = <a, conv(c, w)> = <w, bw(c, a)>
        return [conv2d(g, b, stride, pads), conv2d_bw(g, a, stride, pads, b.shape[:2])]
    if op == "conv2d_bw":  # node = bw(a=x, b=g_out): <bw(x, gg), c> = <x, bx(gg, c)> = <gg, conv(x, c)>
        return [conv2d_bx(b, g, stride, pads, a.shape[:2]), conv2d(a, g, stride, pads)]
    raise AssertionError(op)


# -- evaluation (the reference interpreter) --------------------------------------------

def conv_reference(x, w, stride, pads):
    xp = np.pad(x, (pads[0], pads[1], (0, 0)))
    kh, kw = w.shape[:2]
    ho = (xp.shape[0] - kh) // stride + 1
    wo = (xp.shape[1] - kw) // stride + 1
    out = np.zeros((ho, wo, w.shape[3]), dtype=np.result_type(x, w, float))  # complex too (complex step)
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride]
            out += patch @ w[dy, dx]
    return out


def _conv_bx_ref(g, w, stride, pads, hw):
    kh, kw = w.shape[:2]
    H, W = hw
    xp = np.zeros((H + pads[0][0] + pads[0][1], W + pads[1][0] + pads[1][1], w.shape[2]))
    ho, wo = g.shape[:2]
    for dy in range(kh):
        for dx in range(kw):
            xp[dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride] += g @ w[dy, dx].T
    return xp[pads[0][0]: pads[0][0] + H, pads[1][0]: pads[1][0] + W]


def _conv_bw_ref(x, g, stride, pads, khw):
    kh, kw = khw
    xp = np.pad(x, (pads[0], pads[1], (0, 0)))
    ho, wo = g.shape[:2]
    out = np.zeros((kh, kw, x.shape[2], g.shape[2]))
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride]
            out[dy, dx] = np.einsum("hwi,hwo->io", patch, g)
    return out


def evaluate_tensor(node, args):
    """Value of tensor op ``node`` on float64 argument values (one sample)."""
    op, attr = node.op, node.attr
    if op == "tconst":
        return constant_value(node)
    if op == "pack":
        return np.array([np.asarray(a, dtype=float)[()] for a in args], dtype=float).reshape(attr)
    if op == "elem":
        return np.asarray(args[0]).reshape(-1)[attr]
    if op == "bcast":
        shape, dims = attr
        a = np.asarray(args[0], dtype=float)
        expanded = a.reshape(tuple(shape[i] if i in dims else 1 for i in range(len(shape))))
        return np.broadcast_to(expanded, shape).copy()
    if op == "tsum":
        return np.sum(args[0], axis=attr)
    if op in EXTREME:
        return (np.max if op == "tmax" else np.min)(args[0], axis=attr)
    if op == "reshape":
        return np.reshape(args[0], attr)
    if op == "transpose":
        return np.transpose(args[0], attr)
    if op == "einsum":
        return np.einsum(attr, *args)
    if op == "conv2d":
        return conv_reference(args[0], args[1], attr[0], attr[1])
    if op == "conv2d_bx":
        return _conv_bx_ref(args[0], args[1], *attr)
    if op == "conv2d_bw":
        return _conv_bw_ref(args[0], args[1], *attr)
    raise AssertionError(op)


def tensor_cost(node):
    """Flops of one evaluation of a tensor op (multiply-adds count 2)."""
    op = node.op
    if op in ("pack", "elem", "reshape", "transpose", "bcast", "tconst"):
        return 0
    if op == "tsum" or op in EXTREME:
        return math.prod(node.args[0].shape)
    if op == "einsum":
        sa, sb, out = _parse(node.attr)
        sizes = dict(zip(sa, node.args[0].shape)) | dict(zip(sb, node.args[1].shape))
        return 2 * math.prod(sizes.values())
    if op == "conv2d":
        return 2 * math.prod(node.shape) * math.prod(node.args[1].shape[:3])
    if op == "conv2d_bx":
        return 2 * math.prod(node.args[0].shape) * math.prod(node.args[1].shape[:3])
    if op == "conv2d_bw":
        return 2 * math.prod(node.args[1].shape) * math.prod(node.shape[:3])
    raise AssertionError(op)
