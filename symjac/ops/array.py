"""NumPy's array functions as tensor ops.

Two structural primitives carry them:

- ``view``: an affine gather, ``out[i] = a.flat[offset + sum_k i_k strides_k]``
  (strides may be negative or zero): slices with steps, flips, diagonals;
  its transpose ``embed`` adds a tensor into zeros of a given shape at such
  positions (``np.diag`` of a vector, the cotangent of a slice);
- ``cumsum`` along one axis (forwards or backwards: each is the other's
  transpose).

``np.flip``, ``np.roll``, ``np.diff``, ``np.trace``, ``np.diag``,
``np.diagonal``, ``np.cumsum`` are built from these; ``np.outer`` and
``np.kron`` are contractions (``einsum``); ``np.tril``/``np.triu`` select
with a constant mask (``where``, so an infinity above the diagonal still
gives 0).  The builders run when an argument is a tensor; arrays of scalars
go through NumPy's own code, unrolled.  Index maps are a handful of
integers: a kernel's size does not grow with the arrays.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from symjac.ir import Node, NotTensorizable, constant_value, defunction, iconst, intern, lookup, make, tconst, to_node
from symjac.ops.contract import einsum
from symjac.ops.define import deflinear, deftensor
from symjac.ops.tensor import bcast, reshape, tsum

__all__ = ["view", "embed", "concat", "gather", "scatter", "take", "place", "positions_of", "cumsum", "flip", "roll", "diff",
           "diagonal", "trace", "diag", "tril", "triu", "outer", "kron"]


def _c_strides(shape):
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(out[::-1])


def indices(offset, strides, shape):
    """The flat positions an affine map reads, as an int array of ``shape``."""
    idx = np.full(tuple(shape), offset, dtype=np.int64)
    for k, (st, n) in enumerate(zip(strides, shape)):
        idx += (np.arange(n, dtype=np.int64) * st).reshape((1,) * k + (n,) + (1,) * (len(shape) - k - 1))
    return idx


def _check_map(offset, strides, shape, size, what):
    if len(strides) != len(shape):
        raise ValueError(f"{what}: {len(strides)} strides for shape {shape}")
    if math.prod(shape):
        lo = offset + sum(min(0, st * (n - 1)) for st, n in zip(strides, shape))
        hi = offset + sum(max(0, st * (n - 1)) for st, n in zip(strides, shape))
        if lo < 0 or hi >= size:
            raise IndexError(f"{what}: positions {lo}..{hi} fall outside a tensor of {size} entries")


def view(a, offset, strides, shape):
    """``out[i...] = a.flat[offset + sum_k i_k strides_k]``, of ``shape``."""
    offset, strides, shape = int(offset), tuple(int(s) for s in strides), tuple(int(d) for d in shape)
    _check_map(offset, strides, shape, math.prod(a.shape), "view")
    if shape == a.shape and offset == 0 and strides == _c_strides(shape):
        return a
    if a.op == "gather" and a.args[1].op == "iconst":  # a view of a gather is one gather
        return take(a.args[0], constant_value(a.args[1]).reshape(-1)[indices(offset, strides, shape)])
    if a.op == "view" and math.prod(shape):  # a view of a view is one view when the map stays affine
        off0, st0, sh0 = a.attr
        flat = indices(offset, strides, shape)  # positions in the inner view's flat order
        src = np.full(flat.shape, off0, dtype=np.int64)
        for m, st in zip(np.unravel_index(flat, sh0), st0):
            src += m * st
        new = _affine(src)
        if new is not None:
            return view(a.args[0], *new, shape)
    return intern("view", (a,), (offset, strides, shape), a.kind, shape)


def _affine(positions):
    """(offset, strides) when ``positions`` is an affine function of its indices."""
    offset = int(positions.flat[0])
    strides = []
    for k in range(positions.ndim):
        if positions.shape[k] < 2:
            strides.append(0)
            continue
        idx = [0] * positions.ndim
        idx[k] = 1
        strides.append(int(positions[tuple(idx)]) - offset)
    if np.array_equal(indices(offset, strides, positions.shape), positions):
        return offset, tuple(strides)
    return None


def embed(g, shape, offset, strides):
    """A tensor of ``shape``, zero but for ``g`` added at the positions
    ``offset + sum_k i_k strides_k`` (the transpose of `view`)."""
    shape, offset, strides = tuple(int(d) for d in shape), int(offset), tuple(int(s) for s in strides)
    _check_map(offset, strides, g.shape, math.prod(shape), "embed")
    if g.shape == shape and offset == 0 and strides == _c_strides(shape):
        return g
    return intern("embed", (g,), (shape, offset, strides), g.kind, shape)


def _view_eval(values, attr):
    offset, strides, shape = attr
    return np.asarray(values[0]).reshape(-1)[indices(offset, strides, shape)]


def _embed_eval(values, attr):
    shape, offset, strides = attr
    g = np.asarray(values[0])
    out = np.zeros(math.prod(shape), dtype=np.result_type(g, float))
    np.add.at(out, indices(offset, strides, g.shape).reshape(-1), g.reshape(-1))
    return out.reshape(shape)


def positions_of(a, key):
    """(result node or None, flat positions) of ``a[key]`` for a constant NumPy
    index ``key``: a view when the positions are affine, else a gather."""
    pos = np.arange(math.prod(a.shape), dtype=np.int64).reshape(a.shape)[key]
    return take(a, pos), pos


def take(a, positions):
    """``a.flat[positions]`` (an int array of any shape): an affine view when it
    can be one, a gather otherwise, one element for a 0-d position."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.ndim == 0:
        return lookup("elem").build((a,), int(positions))
    if positions.size and (positions.min() < 0 or positions.max() >= math.prod(a.shape)):
        raise IndexError("take: positions out of range")
    affine = _affine(positions) if positions.size else (0, (0,) * positions.ndim)
    if affine is not None:
        return view(a, affine[0], affine[1], positions.shape)
    return gather(a, iconst(positions))


def place(v, positions, shape, *, own=False):
    """Zeros of ``shape`` with ``v`` (1-D) at the distinct flat ``positions``:
    an affine embed when it can be one, a scatter otherwise.

    ``own``: nothing else reads ``v``.  A scatter's pairs (and its base) are
    then added straight at the placed positions, one scatter instead of a
    scatter and a placement (a kernel's pass over ``v`` saved); when ``v``
    has other readers that would scatter its pairs twice."""
    positions = np.asarray(positions, dtype=np.int64)
    if own and v.op == "scatter" and all(i.op == "iconst" for _, i in _pairs(v)):
        base = _base(v)
        pairs = ([(base, iconst(positions))] if base is not None else []) + \
            [(g, iconst(positions[constant_value(i)])) for g, i in _pairs(v)]
        return scatter(*pairs[0], shape, *(x for pair in pairs[1:] for x in pair))
    affine = _affine(positions) if positions.size else None
    if affine is not None:
        return embed(v, shape, affine[0], affine[1])
    return scatter(v, iconst(positions), shape)


def placed(node):
    """(values, positions) when ``node`` is zeros with values added at constant
    flat positions (an embed, or a scatter without a base whose indices are
    constants): ``values`` is a 1-D tensor of the sums at the sorted distinct
    ``positions``, the inverse of `place`; None otherwise."""
    if node.op == "embed" and len(node.args[0].shape) == 1:
        _, offset, strides = node.attr
        pos = offset + strides[0] * np.arange(node.args[0].shape[0], dtype=np.int64)
        return (node.args[0], pos) if pos.size < 2 or strides[0] > 0 else None
    if node.op != "scatter" or _base(node) is not None or any(i.op != "iconst" for _, i in _pairs(node)):
        return None
    pairs = [(g, constant_value(i).reshape(g.shape).astype(np.int64)) for g, i in _pairs(node)]
    if len(pairs) == 1 and pairs[0][1].ndim == 1 and np.all(np.diff(pairs[0][1]) > 0):
        return pairs[0]  # already the values at sorted distinct positions
    pos = np.unique(np.concatenate([i.reshape(-1) for _, i in pairs]))
    at = [(g, np.searchsorted(pos, i)) for g, i in pairs]
    # a first pair at every position in order (a base that `place` made a pair) is the base again: added
    # first, as a pair would be, without an index table
    i0 = at[0][1]
    base = at.pop(0)[0] if i0.shape == pos.shape and np.array_equal(i0, np.arange(pos.size)) else None
    if not at:
        return base, pos
    more = (x for g, i in at[1:] for x in (g, iconst(i)))
    return scatter(at[0][0], iconst(at[0][1]), (pos.size,), *more, base=base), pos


def gather(t, idx):
    """``out[j...] = t.flat[idx[j...]]`` for an ``iconst`` index ``idx``; a
    gather or view of a gather or view is one gather (or view) of the source."""
    if t.op in ("gather", "view") and idx.op == "iconst":
        inner = constant_value(t.args[1]).reshape(-1) if t.op == "gather" else indices(*t.attr).reshape(-1)
        return take(t.args[0], inner[constant_value(idx)])
    return intern("gather", (t, idx), None, t.kind, idx.shape)


def scatter(g, idx, shape, *more, base=None):
    """Zeros of ``shape`` (or ``base``, a tensor of ``shape``) with ``g[j...]``
    added at the flat positions ``idx[j...]`` (repeated positions add up): the
    transpose of `gather`.  ``more`` holds further (values, positions) pairs
    added into the same result."""
    shape = tuple(int(d) for d in shape)
    pairs = [(g, idx)] + [(more[k], more[k + 1]) for k in range(0, len(more), 2)]
    args = tuple(x for v, i in pairs for x in (v, i) if math.prod(v.shape))
    if base is not None:
        if base.shape != shape:
            raise ValueError(f"scatter: a base of shape {base.shape} for a result of shape {shape}")
        return intern("scatter", (base,) + args, shape, base.kind, shape) if args else base
    if not args:
        args = (g, idx)
    return intern("scatter", args, shape, g.kind, shape)


def _base(node):
    """The tensor a scatter adds into (its first argument when it has an odd
    number of them), or None for zeros."""
    return node.args[0] if len(node.args) % 2 else None


def _pairs(node):
    off = len(node.args) % 2
    return [(node.args[k], node.args[k + 1]) for k in range(off, len(node.args), 2)]


def _rebuild_scatter(args, shape):
    if len(args) % 2:
        return scatter(*args[1:3], shape, *args[3:], base=args[0])
    return scatter(*args[:2], shape, *args[2:])


def _scatter_jvp(node, tangents):
    off = len(node.args) % 2
    more = []
    for k, (v, i) in enumerate(_pairs(node)):
        if tangents[off + 2 * k] is not None:
            more += [tangents[off + 2 * k], i]
    base = tangents[0] if off else None
    if not more:
        return base
    return scatter(more[0], more[1], node.shape, *more[2:], base=base)


def _scatter_transpose(node, g):
    return ([g] if len(node.args) % 2 else []) + [x for _, i in _pairs(node) for x in (gather(g, i), None)]


def _scatter_structure(node, m):
    off = len(node.args) % 2
    if off and m == 0:
        ids = _ids(node)
        return ids, ids
    if (m - off) % 2:
        return None
    return constant_value(node.args[m + 1]).reshape(-1), _ids(node.args[m])


def _ids(t):
    return np.arange(math.prod(t.shape), dtype=np.int64)


def _selection_structure(rows_of, cols_of):
    """Structure of an op that moves argument 0's entries (rows: result
    entries, cols: argument entries); the other arguments are constants."""
    return lambda node, m: (rows_of(node).reshape(-1), cols_of(node).reshape(-1)) if m == 0 else None


def _cumsum_structure(node, m):
    """Entry j along the axis depends on entries 0..j (reverse: j..n-1)."""
    axis, reverse = node.attr
    shape = node.shape
    n = shape[axis]
    i_out, i_in = np.tril_indices(n) if not reverse else np.triu_indices(n)
    ids = _ids(node).reshape(shape)
    others = np.moveaxis(ids, axis, -1)[..., 0].reshape(-1, 1)  # flat position of index 0 along the axis
    stride = math.prod(shape[axis + 1:])
    return (others + i_out * stride).reshape(-1), (others + i_in * stride).reshape(-1)


def _gather_eval(values, attr):
    return np.asarray(values[0]).reshape(-1)[np.asarray(values[1])]


def _scatter_eval(values, shape):
    off = len(values) % 2
    out = np.zeros(math.prod(shape), dtype=np.result_type(*[np.asarray(v) for v in values[off::2]], float))
    if off:
        out = out + np.asarray(values[0]).reshape(-1)
    for g, idx in zip(values[off::2], values[off + 1::2]):
        np.add.at(out, np.asarray(idx).reshape(-1), np.asarray(g).reshape(-1))
    return out.reshape(shape)


deftensor("gather", 2, evaluate=_gather_eval, build=lambda args, attr: gather(*args),
          cost=lambda node: 0, linearity="linear",
          jvp=lambda node, ts: None if ts[0] is None else gather(ts[0], node.args[1]),
          transpose=lambda node, g: [scatter(g, node.args[1], node.args[0].shape), None],
          structure=_selection_structure(_ids, lambda node: constant_value(node.args[1])),
          doc="gather by constant positions (args: tensor, iconst positions)")
deftensor("scatter", -1, evaluate=_scatter_eval, build=_rebuild_scatter,
          cost=lambda node: sum(math.prod(v.shape) for v, _ in _pairs(node)), linearity="linear",
          jvp=_scatter_jvp, transpose=_scatter_transpose, structure=_scatter_structure,
          doc="scatter-add by constant positions into zeros, or into a base tensor (args: [base,] pairs of a "
              "tensor and its iconst positions; attr: shape)")


deflinear("view", 1, evaluate=_view_eval, build=lambda args, attr: view(args[0], *attr), cost=lambda node: 0,
          transpose=lambda node, g: [embed(g, node.args[0].shape, node.attr[0], node.attr[1])],
          structure=_selection_structure(_ids, lambda node: indices(*node.attr)),
          doc="affine gather (attr: offset, strides, shape)")
deflinear("embed", 1, evaluate=_embed_eval, build=lambda args, attr: embed(args[0], *attr),
          cost=lambda node: math.prod(node.args[0].shape),
          transpose=lambda node, g: [view(g, node.attr[1], node.attr[2], node.args[0].shape)],
          structure=_selection_structure(lambda node: indices(node.attr[1], node.attr[2], node.args[0].shape),
                                         lambda node: _ids(node.args[0])),
          doc="affine scatter-add into zeros (attr: shape, offset, strides)")


def cumsum(a, axis, reverse=False):
    """Running sums of ``a`` along ``axis`` (from the end when ``reverse``)."""
    axis = int(axis) % len(a.shape)
    if a.shape[axis] == 1:
        return a
    return intern("cumsum", (a,), (axis, bool(reverse)), a.kind, a.shape)


def _cumsum_eval(values, attr):
    axis, reverse = attr
    a = np.asarray(values[0])
    if not reverse:
        return np.cumsum(a, axis=axis)
    return np.flip(np.cumsum(np.flip(a, axis), axis=axis), axis)


deflinear("cumsum", 1, evaluate=_cumsum_eval, build=lambda args, attr: cumsum(args[0], *attr),
          cost=lambda node: math.prod(node.shape),
          transpose=lambda node, g: [cumsum(g, node.attr[0], not node.attr[1])],
          structure=_cumsum_structure, doc="running sums along an axis (attr: axis, reverse)")


# -- joining -----------------------------------------------------------------------------------

def concat(parts, axis):
    """``np.concatenate(parts, axis)`` of tensors (at least 1-d, equal but for ``axis``)."""
    parts = [p for p in parts if p.shape[axis] > 0] or list(parts[:1])
    parts = [q for p in parts for q in (p.args if p.op == "concat" and p.attr == axis else (p,))]  # one level
    if len(parts) == 1:
        return parts[0]
    shape = list(parts[0].shape)
    for p in parts[1:]:
        if len(p.shape) != len(shape) or any(d != e for k, (d, e) in enumerate(zip(p.shape, shape)) if k != axis):
            raise ValueError(f"concatenate: shapes {parts[0].shape} and {p.shape} differ off axis {axis}")
    shape[axis] = sum(p.shape[axis] for p in parts)
    return intern("concat", tuple(parts), int(axis), "float", tuple(shape))


def _concat_offsets(node):
    axis = node.attr
    return np.cumsum([0] + [a.shape[axis] for a in node.args])


def _concat_structure(node, m):
    lo, hi = _concat_offsets(node)[m: m + 2]
    return _slice_positions(node.shape, node.attr, lo, hi).reshape(-1), _ids(node.args[m])


def _slice_positions(shape, axis, lo, hi):
    ids = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    return ids[(slice(None),) * axis + (slice(lo, hi),)]


deflinear("concat", -1, evaluate=lambda v, axis: np.concatenate([np.asarray(x) for x in v], axis=axis),
          build=lambda args, axis: concat(args, axis), cost=lambda node: 0,
          transpose=lambda node, g: [_slice_along(g, node.attr, lo, hi) for lo, hi in
                                     zip(_concat_offsets(node)[:-1], _concat_offsets(node)[1:])],
          structure=_concat_structure, doc="concatenation along an axis (attr: axis)")


def _parts(arrays, what, ndmin=1):
    if isinstance(arrays, Node) or not isinstance(arrays, (list, tuple)) or not arrays:
        raise NotTensorizable(f"np.{what} of {type(arrays).__name__}")
    parts = [_operand(x) for x in arrays]
    for k, p in enumerate(parts):
        if len(p.shape) < ndmin:
            if ndmin == 1 and what != "concatenate":
                parts[k] = reshape(p, (1,) * (ndmin - len(p.shape)) + p.shape) if p.shape else bcast(p, (1,))
            else:
                raise NotTensorizable(f"np.{what}: a {len(p.shape)}-d part")  # NumPy's own error
    return parts


def _concatenate_function(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _unused(out=out, dtype=dtype)
    parts = _parts(arrays, "concatenate")
    if axis is None:
        return concat([reshape(p, (math.prod(p.shape),)) for p in parts], 0)
    if len({len(p.shape) for p in parts}) != 1:
        raise NotTensorizable("parts of different ndim")
    return concat(parts, _axis(axis, len(parts[0].shape), "concatenate"))


def _stack_function(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _unused(out=out, dtype=dtype)
    parts = [_operand(x) for x in arrays] if isinstance(arrays, (list, tuple)) and arrays else None
    if parts is None or len({p.shape for p in parts}) != 1:
        raise NotTensorizable("np.stack of arrays of different shapes")
    nd = len(parts[0].shape) + 1
    ax = _axis(axis, nd, "stack")
    shape = parts[0].shape[:ax] + (1,) + parts[0].shape[ax:]
    return concat([reshape(p, shape) if p.shape else bcast(p, shape) for p in parts], ax)


def _hstack_function(tup, dtype=None, casting="same_kind"):
    _unused(dtype=dtype)
    parts = _parts(tup, "hstack")
    return concat(parts, 0 if len(parts[0].shape) == 1 else 1)


def _vstack_function(tup, dtype=None, casting="same_kind"):
    _unused(dtype=dtype)
    parts = [p if len(p.shape) >= 2 else reshape(p, (1, max(1, math.prod(p.shape)))) for p in _parts(tup, "vstack")]
    return concat(parts, 0)


def _append_function(arr, values, axis=None):
    a, v = _operand(arr), _operand(values)
    if axis is None:
        return concat([reshape(x, (math.prod(x.shape),)) if x.shape else bcast(x, (1,)) for x in (a, v)], 0)
    return _concatenate_function([a, v], axis)


def _split_function(ary, indices_or_sections, axis=0, _array=False):
    a = _operand(ary)
    if not a.shape:
        raise NotTensorizable("split of a scalar")
    ax = _axis(axis, len(a.shape), "split")
    n = a.shape[ax]
    if isinstance(indices_or_sections, numbers.Integral):
        k = int(indices_or_sections)
        if k <= 0 or (not _array and n % k):
            raise NotTensorizable("sections")  # NumPy's own error
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        bounds = list(np.cumsum([0] + sizes))
    else:
        bounds = [0] + [min(max(int(i) if i >= 0 else int(i) + n, 0), n) for i in indices_or_sections] + [n]
    return [_slice_along(a, ax, lo, max(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


for _function, _builder in ((np.concatenate, _concatenate_function), (np.stack, _stack_function),
                            (np.hstack, _hstack_function), (np.vstack, _vstack_function),
                            (np.append, _append_function), (np.split, _split_function),
                            (np.array_split, lambda a, s, axis=0: _split_function(a, s, axis, True))):
    defunction(_function, _builder)
del _function, _builder


# -- NumPy's array functions on tensors ------------------------------------------------------

def _axis(axis, ndim, what):
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        raise NotTensorizable(f"np.{what}: axis {axis!r}")  # NumPy's own code gives NumPy's error
    return int(axis) % ndim


def _int(v):
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise NotTensorizable(f"not an integer: {v!r}")
    return int(v)


def _operand(x):
    """A tensor (or scalar) node for an array argument: traced, a number, or a constant array."""
    if isinstance(x, Node):
        return x
    if isinstance(x, numbers.Real):
        return to_node(x)
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return tconst(x)
    raise NotTensorizable(f"argument of type {type(x).__name__}")


def _unused(**kwargs):
    """Arguments the tensor builders do not take (dtype=, out=...) must be absent."""
    if any(v is not None for v in kwargs.values()):
        raise NotTensorizable(", ".join(k for k, v in kwargs.items() if v is not None))


def _slice_along(a, axis, start, stop, step=1):
    """``a[..., start:stop:step, ...]`` on ``axis`` as a view."""
    rng = range(*slice(start, stop, step).indices(a.shape[axis]))
    st = _c_strides(a.shape)
    strides = tuple(s * step if k == axis else s for k, s in enumerate(st))
    shape = tuple(len(rng) if k == axis else d for k, d in enumerate(a.shape))
    offset = (rng.start if len(rng) else 0) * st[axis]
    return view(a, offset, strides, shape)


def flip(a, axis=None):
    """``np.flip`` on a tensor."""
    axes = list(range(len(a.shape))) if axis is None else \
        [_axis(x, len(a.shape), "flip") for x in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    if len(set(axes)) != len(axes):
        raise NotTensorizable("repeated axis")
    st = list(_c_strides(a.shape))
    offset = 0
    for k in axes:
        offset += (a.shape[k] - 1) * st[k]
        st[k] = -st[k]
    return view(a, offset, st, a.shape)


def roll(a, shift, axis=None):
    """``np.roll`` on a tensor: two slices put back at their new places.  Shifts
    and axes broadcast against each other, as in NumPy (shifts of one axis add)."""
    if axis is None:
        return reshape(roll(reshape(a, (math.prod(a.shape),)), shift, 0), a.shape)
    try:
        pairs = np.broadcast(np.asarray(shift), np.asarray(axis))
    except ValueError:
        raise NotTensorizable("shift and axis do not broadcast") from None
    total = {}
    for s, ax in pairs:
        ax = _axis(ax.item() if hasattr(ax, "item") else ax, len(a.shape), "roll")
        total[ax] = total.get(ax, 0) + _int(s.item() if hasattr(s, "item") else s)
    for ax, s in total.items():
        a = _roll_axis(a, s, ax)
    return a


def _roll_axis(a, shift, axis):
    n = a.shape[axis]
    s = shift % n if n else 0
    if s == 0:
        return a
    st = _c_strides(a.shape)
    tail, head = _slice_along(a, axis, n - s, n), _slice_along(a, axis, 0, n - s)
    return make("add", embed(tail, a.shape, 0, st), embed(head, a.shape, s * st[axis], st))


def diff(a, n=1, axis=-1, prepend=None, append=None):
    """``np.diff`` on a tensor (``prepend=``/``append=`` go through NumPy's code)."""
    _unused(prepend=prepend, append=append)
    axis = _axis(axis, len(a.shape), "diff")
    n = _int(n)
    if n < 0:
        raise NotTensorizable("negative order")
    for _ in range(n):
        m = a.shape[axis]
        a = make("sub", _slice_along(a, axis, 1, m), _slice_along(a, axis, 0, m - 1))
    return a


def diagonal(a, offset=0, axis1=0, axis2=1):
    """``np.diagonal``: the diagonal as the last axis, the other axes kept."""
    nd = len(a.shape)
    ax1, ax2 = _axis(axis1, nd, "diagonal"), _axis(axis2, nd, "diagonal")
    offset = _int(offset)
    if ax1 == ax2:
        raise NotTensorizable("axis1 == axis2")
    st = _c_strides(a.shape)
    n1, n2 = a.shape[ax1], a.shape[ax2]
    start1, start2 = (0, offset) if offset >= 0 else (-offset, 0)
    length = max(0, min(n1 - start1, n2 - start2))
    kept = [k for k in range(nd) if k not in (ax1, ax2)]
    shape = tuple(a.shape[k] for k in kept) + (length,)
    strides = tuple(st[k] for k in kept) + (st[ax1] + st[ax2],)
    return view(a, start1 * st[ax1] + start2 * st[ax2], strides, shape)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """``np.trace`` on a tensor."""
    _unused(dtype=dtype, out=out)
    d = diagonal(a, offset, axis1, axis2)
    return tsum(d, (len(d.shape) - 1,))


def diag(v, k=0):
    """``np.diag``: the k-th diagonal of a matrix, or a matrix with ``v`` on it."""
    k = _int(k)
    if len(v.shape) == 2:
        return diagonal(v, k)
    if len(v.shape) != 1:
        raise NotTensorizable("np.diag of a tensor that is not 1-D or 2-D")
    n = v.shape[0] + abs(k)
    return embed(v, (n, n), k if k >= 0 else -k * n, (n + 1,))


def _tri(m, k, lower):
    if len(m.shape) < 2:
        raise NotTensorizable("np.tril/np.triu of a 1-D tensor")
    k = _int(k)
    rows, cols = m.shape[-2:]
    mask = (np.tril if lower else np.triu)(np.ones((rows, cols)), k)
    nd = len(m.shape)
    return make("where", bcast(tconst(mask), m.shape, (nd - 2, nd - 1)), m, 0.0)


def tril(m, k=0):
    """``np.tril`` on a tensor (entries above the k-th diagonal are exactly 0)."""
    return _tri(m, k, True)


def triu(m, k=0):
    """``np.triu`` on a tensor."""
    return _tri(m, k, False)


def _flat(x):
    return reshape(x, (math.prod(x.shape),)) if len(x.shape) != 1 else x


def outer(a, b, out=None):
    """``np.outer``: both arguments flattened."""
    _unused(out=out)
    return einsum("i,j->ij", _flat(_operand(a)), _flat(_operand(b)))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def kron(a, b):
    """``np.kron``: the block product, as a contraction with interleaved axes."""
    a, b = _operand(a), _operand(b)
    nd = max(len(a.shape), len(b.shape), 1)
    a = reshape(a, (1,) * (nd - len(a.shape)) + a.shape)
    b = reshape(b, (1,) * (nd - len(b.shape)) + b.shape)
    sa, sb = _LETTERS[:nd], _LETTERS[nd: 2 * nd]
    out = "".join(x + y for x, y in zip(sa, sb))
    prod = einsum(f"{sa},{sb}->{out}", a, b)
    return reshape(prod, tuple(p * q for p, q in zip(a.shape, b.shape)))


def _tensor_first(builder):
    """The builder, for calls whose first argument is a traced tensor."""
    def build(a, *args, **kwargs):
        if not isinstance(a, Node):
            raise NotTensorizable("the array argument is not traced")
        return builder(a, *args, **kwargs)

    return build


def _cumsum_function(a, axis=None, dtype=None, out=None):
    _unused(dtype=dtype, out=out)
    if axis is None:
        return cumsum(reshape(a, (math.prod(a.shape),)), 0)
    return cumsum(a, _axis(axis, len(a.shape), "cumsum"))


for _function, _builder in ((np.flip, flip), (np.roll, roll), (np.diff, diff), (np.trace, trace),
                            (np.diag, diag), (np.diagonal, diagonal), (np.tril, tril), (np.triu, triu),
                            (np.outer, outer), (np.kron, kron), (np.cumsum, _cumsum_function),
                            (np.fliplr, lambda a: flip(a, 1)), (np.flipud, lambda a: flip(a, 0))):
    defunction(_function, _tensor_first(_builder))
del _function, _builder
