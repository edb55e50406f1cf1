"""Structural tensor ops: values that stay arrays in the graph and loops in
the kernel.

Scalar nodes are unrolled into one statement each; a dense layer of width 64
would be hundreds of thousands of them.  The ops here keep such work whole:
a node has a static per-sample ``shape``, elementwise ops apply to whole
tensors (`symjac.ir.make` with tensor arguments), and

- ``pack`` (scalars -> tensor) and ``elem`` (tensor -> one scalar) join the
  two worlds, so small work around a tensor is still unrolled and simplified;
- ``bcast`` (broadcast in dims), ``tsum`` (sum over axes), ``reshape`` and
  ``transpose`` are linear maps of one tensor; ``tmax``/``tmin`` (extremes
  over axes) are piecewise linear;
- ``tconst`` is a constant tensor the model captured (a hidden kernel input).

Every op's derivative is another of these ops (a linear op's JVP is the op on
the tangent, its VJP its transpose), so second derivatives need nothing more.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ir import OpDef, ZERO, constant_value, intern, make, register, tconst, tconst_of
from symjac.ops.define import deflinear, deftensor

__all__ = ["tconst", "constant_value", "pack", "elem", "bcast", "broadcast_to", "fit", "tsum", "textreme",
           "extreme_weights", "reshape", "transpose"]


# -- captured constants ----------------------------------------------------------

register(OpDef("input", 0, None, kind="leaf", cost=0, doc="an argument's element (attr: trace id, argument, index)"))
register(OpDef("const", 0, None, kind="leaf", cost=0, doc="a float constant (attr: its value)"))
register(OpDef("iconst", 0, lambda values, key: constant_value(tconst_of(key)), kind="leaf", cost=0,
               differentiable=False, dtype="int", doc="constant int64 positions (a gather's index), a hidden argument"))
register(OpDef("tconst", 0, lambda values, key: constant_value(tconst_of(key)), kind="leaf", cost=0,
               differentiable=False,
               doc="a constant tensor, passed to the kernel as a hidden argument"))


# -- pack and elem -------------------------------------------------------------------

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


deflinear("pack", -1, evaluate=lambda v, shape: np.array([np.asarray(a, dtype=float)[()] for a in v]).reshape(shape),
          build=lambda args, shape: pack(args, shape), cost=lambda node: 0,
          transpose=lambda node, g: [elem(g, i) for i in range(len(node.args))],
          structure=lambda node, m: (np.array([m]), np.array([0])),
          doc="scalars -> tensor (attr: shape)")
deflinear("elem", 1, evaluate=lambda v, i: np.asarray(v[0]).reshape(-1)[i],
          build=lambda args, i: elem(args[0], i), cost=lambda node: 0,
          transpose=lambda node, g: [pack([g if i == node.attr else ZERO
                                           for i in range(math.prod(node.args[0].shape))], node.args[0].shape)],
          transpose_many=lambda t, entries: pack([entries.get(i, ZERO) for i in range(math.prod(t.shape))], t.shape),
          structure=lambda node, m: (np.array([0]), np.array([node.attr])),
          doc="one scalar of a tensor (attr: flat index)")


# -- broadcasting ----------------------------------------------------------------------

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


def _bcast_eval(v, attr):
    shape, dims = attr
    a = np.asarray(v[0], dtype=float)
    expanded = a.reshape(tuple(shape[i] if i in dims else 1 for i in range(len(shape))))
    return np.broadcast_to(expanded, shape).copy()


def _flat_positions(t):
    """0, 1, 2... in the shape of ``t``."""
    return np.arange(math.prod(t.shape), dtype=np.int64).reshape(t.shape)


def _gathered(node, sources):
    """The structure of an op whose entry i is argument entry ``sources.flat[i]``."""
    cols = np.asarray(sources, dtype=np.int64).reshape(-1)
    return np.arange(cols.size), cols


def _reduced(node, m):
    """The structure of a reduction: every entry on the result entry it lands in."""
    a = node.args[0]
    kept = _kept(node)
    out = np.arange(max(1, math.prod(node.shape)), dtype=np.int64).reshape(
        tuple(a.shape[i] if i in kept else 1 for i in range(len(a.shape))))
    return np.broadcast_to(out, a.shape).reshape(-1), np.arange(math.prod(a.shape))


def _extreme_structure(node, m):
    """Which entry attains the extreme depends on the values: all are
    structural, weighted by `extreme_weights`."""
    rows, cols = _reduced(node, m)
    return rows, cols, (extreme_weights(node), cols)


def _kept(node):
    """The axes of a reduction's input that survive it."""
    return tuple(i for i in range(len(node.args[0].shape)) if i not in node.attr)


deflinear("bcast", 1, evaluate=_bcast_eval, cost=lambda node: 0,
          build=lambda args, attr: fit(args[0], attr[0]) if not args[0].shape else bcast(args[0], *attr),
          transpose=lambda node, g: [tsum(g, [i for i in range(len(node.attr[0])) if i not in node.attr[1]])],
          structure=lambda node, m: _gathered(node, _bcast_eval([_flat_positions(node.args[0])], node.attr)),
          doc="broadcast along new axes (attr: shape, dims of the argument's axes)")


# -- reductions ----------------------------------------------------------------------------

def _reduction(a, axes):
    """(normalized axes, result shape), or the result itself when no axis is reduced."""
    axes = tuple(sorted({int(x) % len(a.shape) for x in axes})) if a.shape else ()
    if not axes:
        return a
    shape = tuple(d for i, d in enumerate(a.shape) if i not in axes)
    if all(a.shape[i] == 1 for i in axes):
        return reshape(a, shape)
    return axes, shape


def tsum(a, axes):
    """Sum of ``a`` over ``axes``."""
    r = _reduction(a, axes)
    if not isinstance(r, tuple):
        return r
    axes, shape = r
    if not shape and a.op == "pack":
        acc = a.args[0]
        for it in a.args[1:]:
            acc = make("add", acc, it)
        return acc
    return intern("tsum", (a,), axes, a.kind, shape)


def textreme(op, a, axes):
    """``op`` ("tmax" or "tmin") of ``a`` over ``axes``; NaN propagates."""
    r = _reduction(a, axes)
    if not isinstance(r, tuple):
        return r
    axes, shape = r
    return intern(op, (a,), axes, a.kind, shape)


def extreme_weights(node):
    """d node / d a as weights on a: 1/(number of ties) where a equals the extreme."""
    a = node.args[0]
    hit = make("where", make("eq", a, bcast(node, a.shape, _kept(node))), 1.0, 0.0)
    return make("div", hit, bcast(tsum(hit, node.attr), a.shape, _kept(node)))


deflinear("tsum", 1, evaluate=lambda v, axes: np.sum(v[0], axis=axes), build=lambda args, axes: tsum(args[0], axes),
          cost=lambda node: math.prod(node.args[0].shape),
          transpose=lambda node, g: [bcast(g, node.args[0].shape, _kept(node))],
          structure=_reduced, doc="sum over axes (attr: axes)")

for _op, _fn in (("tmax", np.max), ("tmin", np.min)):
    # piecewise linear: the derivative is the weighted sum of the tangent over the
    # entries that attain the extreme (ties split evenly, as np.maximum's), and the
    # second derivative is zero wherever it exists
    deftensor(_op, 1, evaluate=(lambda fn: lambda v, axes: fn(v[0], axis=axes))(_fn),
              build=(lambda op: lambda args, axes: textreme(op, args[0], axes))(_op),
              cost=lambda node: math.prod(node.args[0].shape), linearity="linear",
              jvp=lambda node, ts: None if ts[0] is None else tsum(make("mul", ts[0], extreme_weights(node)),
                                                                   node.attr),
              transpose=lambda node, g: [make("mul", bcast(g, node.args[0].shape, _kept(node)),
                                              extreme_weights(node))],
              structure=_extreme_structure,
              doc="maximum (minimum) over axes (attr: axes)")


# -- reshapes and transposes -------------------------------------------------------------------

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


deflinear("reshape", 1, evaluate=lambda v, shape: np.reshape(v[0], shape),
          build=lambda args, shape: reshape(args[0], shape), cost=lambda node: 0,
          transpose=lambda node, g: [reshape(g, node.args[0].shape)],
          structure=lambda node, m: _gathered(node, _flat_positions(node)), doc="C-order reshape (attr: shape)")
deflinear("transpose", 1, evaluate=lambda v, perm: np.transpose(v[0], perm),
          build=lambda args, perm: transpose(args[0], perm), cost=lambda node: 0,
          transpose=lambda node, g: [transpose(g, tuple(np.argsort(node.attr)))],
          structure=lambda node, m: _gathered(node, np.transpose(_flat_positions(node.args[0]), node.attr)),
          doc="axis permutation (attr: perm)")
