"""Sparse forward mode at the array level: Jacobians as blocks.

The Jacobian of a node with respect to the variables is held as a few
*blocks*, each a triple (rows, cols, values): int arrays of flat positions
known at compile time and a 1-D tensor node of values, entry k adding
``values[k]`` at ``(rows[k], cols[k])``.  An op maps each block of an
argument through its local Jacobian (`symjac.ad.pattern.local_jacobian`):
the positions are joined on index arrays, vectorized, at compile time, and
the values become a gather of the block's values times a gather of the op's
local weights (an elementwise op's partial, a contraction's other operand; a
selection or a sum needs no multiply).  A view, a concatenation or a roll
therefore costs nothing at run time, and constant values (a stencil's
coefficients) fold while the graph is built.  An elementwise op of an
argument of its own shape only multiplies its partial into the block's
*scale* (one factor per entry of the array, applied to the values when
another op needs them), so a chain of elementwise ops costs the array's
size per op, not the block's.  Products that land on one position (through
a contraction or a sum) are summed there by one scatter-add when they
outnumber the positions (`REDUCE_AT`).  Blocks with the same positions are
merged; the output's structural pattern is the union of its blocks'
positions and its values one scatter-add.  Every number of entries is the
Jacobian's own: no colour, no tangent of a whole array per seed, no
unrolled statement.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ad.compressed import OutputJacobian
from symjac.ad.pattern import build_op, local_jacobian, take_flat
from symjac.ad.rules import differentiable, uses_partials
from symjac.ir import const, constant_value, iconst, intern, lookup, make, tconst

__all__ = ["block_jacobian", "MAX_BLOCKS"]

MAX_BLOCKS = 24  # more blocks on one node are joined into one (bounds the graph on any program)
# A block through a contraction or a sum holds one entry per product, many at the same position
# (wdot = nu @ q: 20,749 products for 2,601 positions in the 50-species mechanism).  When they
# outnumber the positions by this factor, one scatter-add sums them, so every later op works on
# the positions (with the scales below, the mechanism's flops a sample: 252k -> 123k; RESULTS.md).
REDUCE_AT = 2.0


class _Block:
    """Entries ``(rows[k], cols[k])`` of value ``vals[k]``, times ``scale[rows[k]]``
    when ``scale`` (a node of one entry per row of the node) is set."""

    __slots__ = ("rows", "cols", "vals", "scale")

    def __init__(self, rows, cols, vals, scale=None):
        self.rows, self.cols, self.vals, self.scale = rows, cols, vals, scale

    def key(self):
        return hash((self.rows.tobytes(), self.cols.tobytes()))


def _constant(values):
    """A constant node for a 1-D array of values (a scalar for one entry)."""
    return const(float(values[0])) if values.size == 1 else tconst(values)


def _ones(k):
    return _constant(np.ones(k))


def _join(vals):
    """One 1-D node of the values of several blocks (scalars packed together)."""
    parts, scalars = [], []
    for v in vals:
        if v.shape:
            if scalars:
                parts.append(build_op("pack", scalars, (len(scalars),)))
                scalars = []
            parts.append(v)
        else:
            scalars.append(v)
    if scalars:
        parts.append(build_op("pack", scalars, (len(scalars),)))
    return parts[0] if len(parts) == 1 else build_op("concat", parts, 0)


def _is_ones(vals):
    v = constant_value(vals)
    return v is not None and bool(np.all(v == 1.0))


def _scaled(block, rule, size):
    """The block of an elementwise node of ``size`` entries from ``block`` of an
    argument of the same shape, when its partial is a full diagonal: the same
    positions and values, the partial multiplied into the block's scale.  A
    chain of elementwise ops then costs one multiply per entry of the array
    per op, not one per entry of the block (a falloff rate's 14 ops on a
    27-entry array whose block has 1,176 entries); the values are multiplied
    once, when an op needs them (`_materialized`).  None when not such a case."""
    r, c, weight = rule
    if weight is None or r.size != size or not np.array_equal(r, c) or not np.array_equal(r, np.arange(size)):
        return None
    W, widx = weight
    w = take_flat(W, widx)
    return _Block(block.rows, block.cols, block.vals, w if block.scale is None else make("mul", block.scale, w))


def _through_jvp(block, node, m, rule):
    """The block of an elementwise node whose derivative is its own JVP, not a
    product with a partial (``where``: a selection), from ``block`` of argument
    ``m``: the values moved to the node's entries, then the JVP applied to them
    on the arguments gathered there.  A product with a 0/1 partial made
    ``inf * 0 = NaN`` where the branch not taken has an infinite derivative
    (``np.where(x > 0.5, np.sqrt(x) * x, x * x)`` at x = 0), where the
    selection, like the scalar sweeps, gives the taken branch's value."""
    moved = _compose(block, (rule[0], rule[1], None))
    if moved is None:
        return None
    args = tuple(take_flat(a, moved.rows) if a.shape else a for a in node.args)
    info = lookup(node.op)
    shape = (moved.rows.size,) if any(a.shape for a in args) else ()
    at = intern(node.op, args, None, info.dtype, shape)  # not simplified: the JVP reads its arguments
    vals = info.jvp(at, [moved.vals if i == m else None for i in range(len(args))])
    return None if vals is None else _block(moved.rows, moved.cols, vals)


def _materialized(block, keep=False):
    """``block`` with its scale multiplied into its values; the zeros of
    constant values dropped, unless ``keep`` (the same positions: a merge adds
    values by position); None when nothing is left."""
    if block.scale is None:
        return block
    s = take_flat(block.scale, block.rows)
    vals = s if _is_ones(block.vals) else make("mul", block.vals, s)
    return _Block(block.rows, block.cols, vals) if keep else _block(block.rows, block.cols, vals)


def _block(rows, cols, vals):
    """The block (rows, cols, vals), the zeros of constant values dropped (they
    are structural); None when nothing is left."""
    value = constant_value(vals)
    if value is None:
        return _Block(rows, cols, vals)
    keep = np.broadcast_to(value, rows.shape) != 0
    if keep.all():
        return _Block(rows, cols, vals)
    if not keep.any():
        return None
    return _Block(rows[keep], cols[keep], _constant(np.broadcast_to(value, rows.shape)[keep]))


def _compose(block, rule):
    """The block of the node from ``block`` of its argument and the sorted rule."""
    block = _materialized(block)
    if block is None:
        return None
    r, c, weight = rule
    lo = np.searchsorted(c, block.rows, "left")
    hi = np.searchsorted(c, block.rows, "right")
    cnt = hi - lo
    total = int(cnt.sum())
    if not total:
        return None
    if total == block.rows.size and np.all(cnt == 1):
        i_idx, e_idx = np.arange(total), lo
    else:
        i_idx = np.repeat(np.arange(block.rows.size), cnt)
        starts = np.repeat(np.cumsum(cnt) - cnt, cnt)
        e_idx = lo[i_idx] + (np.arange(total) - starts)
    rows, cols = r[e_idx], block.cols[i_idx]
    vals = None if _is_ones(block.vals) else take_flat(block.vals, i_idx)
    if weight is not None:
        W, widx = weight
        w = take_flat(W, widx[e_idx])
        vals = w if vals is None else make("mul", vals, w)
    if vals is None:
        vals = _ones(total)
    if constant_value(vals) is not None:  # constant values: their zeros are structural
        return _block(rows, cols, vals)
    return _summed(rows, cols, vals)


def _summed(rows, cols, vals):
    """The block of entries (rows, cols, vals), its repeated positions summed
    by one scatter-add when they are `REDUCE_AT` times fewer than the entries."""
    if rows.size < 2:
        return _Block(rows, cols, vals)
    width = int(cols.max()) + 1
    uniq, slot = np.unique(rows * width + cols, return_inverse=True)
    if uniq.size * REDUCE_AT > rows.size:
        return _Block(rows, cols, vals)
    return _Block(uniq // width, uniq % width, build_op("scatter", [vals, iconst(slot.reshape(-1))], (uniq.size,)))


def _sorted_rule(rule):
    r, c, weight = rule
    r, c = np.asarray(r, dtype=np.int64).reshape(-1), np.asarray(c, dtype=np.int64).reshape(-1)
    if c.size > 1 and np.any(c[1:] < c[:-1]):
        order = np.argsort(c, kind="stable")
        r, c = r[order], c[order]
        if weight is not None:
            weight = (weight[0], np.asarray(weight[1]).reshape(-1)[order])
    elif weight is not None:
        weight = (weight[0], np.asarray(weight[1]).reshape(-1))
    return r, c, weight


def _merge(blocks):
    """Blocks with the same positions added (scales added when the values are
    the same node); too many joined into one."""
    out = {}
    for b in blocks:
        k = b.key()
        prev = out.get(k)
        if prev is None:
            out[k] = b
        elif prev.vals is b.vals and prev.scale is not None and b.scale is not None:
            out[k] = _Block(b.rows, b.cols, b.vals, make("add", prev.scale, b.scale))
        else:  # the same positions: their values added entry by entry
            out[k] = _Block(b.rows, b.cols, make("add", _materialized(prev, True).vals, _materialized(b, True).vals))
    blocks = list(out.values())
    if len(blocks) > MAX_BLOCKS:
        blocks = [b for b in map(_materialized, blocks) if b is not None]
        blocks = [_Block(np.concatenate([b.rows for b in blocks]), np.concatenate([b.cols for b in blocks]),
                         _join([b.vals for b in blocks]))]
    return blocks


def supported(order, dep):
    """True when every op the Jacobian goes through declares its local Jacobian."""
    for node in order:
        if node.id in dep and node.args and differentiable(node):
            info = lookup(node.op)
            if info.kind != "elementwise" and info.structure is None:
                return False
    return True


def block_jacobian(outputs, variables, walk):
    """Per output (a tensor node, or a list of scalar nodes), its `OutputJacobian`
    with respect to the scalar ``variables``, by sparse forward mode on blocks.
    ``walk`` is `symjac.ad.compressed.is_array_program`'s."""
    order, dep, input_blocks = walk
    pos = {v.id: j for j, v in enumerate(variables)}
    n = len(variables)
    is_input_block = {b.id for b in input_blocks}
    J = {}

    def of(a):
        if a.id in pos and a.id not in J:
            J[a.id] = [_Block(np.zeros(1, np.int64), np.array([pos[a.id]]), _ones(1))]
        return J.get(a.id)

    for node in order:
        if node.id not in dep or node.id in pos:
            continue
        size = max(1, math.prod(node.shape))
        if node.id in is_input_block:
            J[node.id] = [_Block(np.arange(size), np.array([pos[a.id] for a in node.args], np.int64), _ones(size))]
            continue
        if not differentiable(node):
            continue
        new = []
        elementwise = lookup(node.op).kind == "elementwise"
        own_jvp = elementwise and not uses_partials(node)
        for m, a in enumerate(node.args):
            ja = of(a)
            if not ja:
                continue
            rule = local_jacobian(node, m)
            if rule is None:
                continue
            rule = _sorted_rule(rule)
            for b in ja:
                if own_jvp:
                    nb = _through_jvp(b, node, m, rule)
                else:
                    nb = _scaled(b, rule, size) if elementwise and a.shape == node.shape else None
                    nb = nb if nb is not None else _compose(b, rule)
                if nb is not None:
                    new.append(nb)
        if new:
            J[node.id] = _merge(new)

    results = []
    for o in outputs:
        blocks = []
        for r, e in (enumerate(o) if isinstance(o, list) else [(0, o)]):
            for b in filter(None, map(_materialized, of(e) or [])):
                blocks.append(_Block(b.rows + r, b.cols, b.vals) if r else b)
        results.append(_assemble(blocks, n))
    return results


def _assemble(blocks, n):
    """An output's `OutputJacobian` from its blocks: the union of their
    positions, constant blocks summed now, the others scatter-added."""
    if not blocks:
        empty = np.zeros(0, np.int64)
        return OutputJacobian(None, empty, empty)
    keys = [b.rows * n + b.cols for b in blocks]
    uniq = np.sort(np.concatenate(keys))  # sorted unique keys: row-major, the CSR order
    uniq = uniq[np.concatenate([[True], uniq[1:] != uniq[:-1]])] if uniq.size else uniq
    nnz = uniq.size
    fixed = np.zeros(nnz)
    runtime = []
    for b, k in zip(blocks, keys):
        slots = np.searchsorted(uniq, k)
        value = constant_value(b.vals)
        if value is not None:
            np.add.at(fixed, slots, np.broadcast_to(value, k.shape))
        else:
            runtime.append((b.vals, slots))
    rows, cols = uniq // n, uniq % n
    if not runtime:
        return OutputJacobian(tconst(fixed), rows, cols)
    if len(runtime) == 1 and runtime[0][1].size == nnz and np.array_equal(runtime[0][1], np.arange(nnz)) \
            and runtime[0][0].shape:
        values = runtime[0][0]
    else:
        args = []  # the tensor blocks' values, and the scalar ones packed, each pair scattered into place
        scalars = [(v, sl) for v, sl in runtime if not v.shape]
        for v, sl in runtime:
            if v.shape:
                args += [v, iconst(sl)]
        if scalars:
            args += [build_op("pack", [v for v, _ in scalars], (len(scalars),)),
                     iconst(np.concatenate([sl for _, sl in scalars]))]
        if np.any(fixed != 0):  # the constant entries are the base the others are added into
            args = [tconst(fixed)] + args
        values = build_op("scatter", args, (nnz,))
        return OutputJacobian(values, rows, cols)
    if np.any(fixed != 0):
        values = make("add", values, tconst(fixed))
    return OutputJacobian(values, rows, cols)
