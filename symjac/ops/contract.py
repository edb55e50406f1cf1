"""Contractions and convolutions: the bilinear tensor ops.

``einsum`` contracts two tensors with explicit subscripts (every ``@``,
``np.dot``, ``np.einsum``, ``np.tensordot`` of worthwhile size lands here);
``conv2d`` is the channels-last 2-D cross-correlation, and ``conv2d_bx``
(the input gradient) and ``conv2d_bw`` (the filter gradient) are its two
transposes.  Each is linear in each argument: its JVP has one term per
argument, its transpose rule gives reverse mode, and its forward-Laplacian
step is B(La, b) + B(a, Lb) + 2 sum_i B(d_i a, d_i b).
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ir import constant_value, intern, make
from symjac.ops.define import defbilinear
from symjac.ops.tensor import bcast, transpose, tsum

__all__ = ["einsum", "conv2d", "conv2d_bx", "conv2d_bw", "conv_padding", "conv_reference", "parse_subscripts"]


def parse_subscripts(spec):
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
    sa, sb, out = parse_subscripts(spec)
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


def _einsum_transpose(node, g):
    a, b = node.args
    sa, sb, out = parse_subscripts(node.attr)
    return [einsum(f"{out},{sb}->{sa}", g, b), einsum(f"{sa},{out}->{sb}", a, g)]


def _einsum_structure(node, m):
    """Which result entries an entry of argument ``m`` reaches, with the other
    operand's entry as the weight: every term of the contraction, less those
    where the other operand is a constant zero."""
    subs = parse_subscripts(node.attr)
    mine, other, out = subs[m], subs[1 - m], subs[2]
    sizes = dict(zip(subs[0], node.args[0].shape)) | dict(zip(subs[1], node.args[1].shape))
    value = constant_value(node.args[1 - m])
    letters = list(dict.fromkeys(out + mine + other))
    grids = np.indices([sizes[c] for c in letters], sparse=True) if letters else []

    def flat(sub):
        pos, stride = np.zeros((1,) * len(letters), dtype=np.int64), 1
        for c in reversed(sub):
            pos = pos + grids[letters.index(c)] * stride
            stride *= sizes[c]
        return pos

    shape = tuple(sizes[c] for c in letters)
    rows, cols = np.broadcast_to(flat(out), shape).reshape(-1), np.broadcast_to(flat(mine), shape).reshape(-1)
    weight = np.broadcast_to(flat(other), shape).reshape(-1)  # each term's entry of the other operand
    if value is not None:
        keep = np.asarray(value).reshape(-1)[weight] != 0
        rows, cols, weight = rows[keep], cols[keep], weight[keep]
    return rows, cols, (node.args[1 - m], weight)


def _einsum_cost(node):
    sa, sb, out = parse_subscripts(node.attr)
    sizes = dict(zip(sa, node.args[0].shape)) | dict(zip(sb, node.args[1].shape))
    return 2 * math.prod(sizes.values())


defbilinear("einsum", evaluate=lambda v, spec: np.einsum(spec, *v), build=lambda args, spec: einsum(spec, *args),
            cost=_einsum_cost, transpose=_einsum_transpose, structure=_einsum_structure,
            doc="two-operand contraction (attr: canonical subscripts 'ab,bc->ac')")


def _conv_attr(attr):
    return attr[0], attr[1]


# node = conv2d(x, w): <conv(x, w), c> = <x, bx(c, w)> = <w, bw(x, c)>
defbilinear("conv2d", evaluate=lambda v, attr: conv_reference(v[0], v[1], *attr),
            build=lambda args, attr: conv2d(args[0], args[1], *attr),
            cost=lambda node: 2 * math.prod(node.shape) * math.prod(node.args[1].shape[:3]),
            transpose=lambda node, g: [conv2d_bx(g, node.args[1], *_conv_attr(node.attr), node.args[0].shape[:2]),
                                       conv2d_bw(node.args[0], g, *_conv_attr(node.attr), node.args[1].shape[:2])],
            doc="channels-last cross-correlation (attr: stride, pads)")
# node = bx(a=g_out, b=w): <bx(a, w), c> = <a, conv(c, w)> = <w, bw(c, a)>
defbilinear("conv2d_bx", evaluate=lambda v, attr: _conv_bx_ref(v[0], v[1], *attr),
            build=lambda args, attr: conv2d_bx(args[0], args[1], *attr),
            cost=lambda node: 2 * math.prod(node.args[0].shape) * math.prod(node.args[1].shape[:3]),
            transpose=lambda node, g: [conv2d(g, node.args[1], *_conv_attr(node.attr)),
                                       conv2d_bw(g, node.args[0], *_conv_attr(node.attr), node.args[1].shape[:2])],
            doc="conv2d's transpose in its input (attr: stride, pads, (H, W))")
# node = bw(a=x, b=g_out): <bw(x, gg), c> = <x, bx(gg, c)> = <gg, conv(x, c)>
defbilinear("conv2d_bw", evaluate=lambda v, attr: _conv_bw_ref(v[0], v[1], *attr),
            build=lambda args, attr: conv2d_bw(args[0], args[1], *attr),
            cost=lambda node: 2 * math.prod(node.args[1].shape) * math.prod(node.shape[:3]),
            transpose=lambda node, g: [conv2d_bx(node.args[1], g, *_conv_attr(node.attr), node.args[0].shape[:2]),
                                       conv2d(node.args[0], g, *_conv_attr(node.attr))],
            doc="conv2d's transpose in its filters (attr: stride, pads, (kh, kw))")
