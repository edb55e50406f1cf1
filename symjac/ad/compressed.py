"""Jacobians of array programs at the array level: compressed forward mode.

The structural pattern of the outputs (`symjac.ad.pattern`) is coloured by
columns; one forward sweep pushes one tangent per colour (a handful of
array-level JVPs, whatever the number of variables), seeded at an input
block by the constant indicator of the colour's columns.  The structural
nonzeros are then one gather from the stacked colour tangents.  The graph
this builds has a size set by the model's code and the number of colours,
never by the length of its arrays.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ad.pattern import build_op, color_columns, propagate, take_flat
from symjac.ad.sweeps import depends, seeded_forward
from symjac.ir import ONE, ZERO, tconst, toposort

__all__ = ["is_array_program", "compressed_jacobian", "OutputJacobian"]


class OutputJacobian:
    """One output's Jacobian: ``values`` (a node of shape (nnz,), or None when
    nnz is 0) holds the entries at flat output ``rows`` and variable ``cols``,
    sorted row-major."""

    __slots__ = ("values", "rows", "cols")

    def __init__(self, values, rows, cols):
        self.values, self.rows, self.cols = values, rows, cols


def _walk(roots, variables):
    """(order, dependence, input blocks): the nodes reachable from ``roots``
    with packs of variables (an argument seen as one tensor) not looked into,
    the nodes that depend on a variable, and those packs."""
    pos = {v.id for v in variables}
    blocks = []

    def is_block(node):
        if node.op == "pack" and all(a.id in pos for a in node.args):
            blocks.append(node)
            return True
        return False

    order = toposort(roots, opaque=is_block)
    return order, depends(order, list(variables) + blocks), blocks


def is_array_program(roots, variables, min_size=1):
    """The walk of the program (for `compressed_jacobian`) when it works on
    whole arrays: a tensor of at least ``min_size`` entries depends on the
    variables, and tensor entries outnumber scalar operations (so its
    Jacobian is taken at the array level); else None."""
    walk = _walk(roots, variables)
    order, dep, _ = walk
    entries = scalars = largest = 0
    for node in order:
        if node.id in dep and node.args:
            size = math.prod(node.shape)
            entries, largest = (entries + size, max(largest, size)) if node.shape else (entries, largest)
            scalars += not node.shape
    # mostly scalar code (tensors only here and there) keeps the scalar sweeps
    return walk if largest >= min_size and entries >= scalars else None


def compressed_jacobian(outputs, variables, walk=None):
    """Per output (a tensor node, or a list of scalar nodes), its `OutputJacobian`
    with respect to the scalar ``variables``; and the number of colours.
    ``walk`` is `is_array_program`'s, for the same roots."""
    flat_roots = [n for o in outputs for n in (o if isinstance(o, list) else [o])]
    from scipy import sparse  # loaded on first use: `import symjac` stays light

    order, dep, blocks = walk if walk is not None else _walk(flat_roots, variables)
    pos = {v.id: j for j, v in enumerate(variables)}
    n = len(variables)
    pat = propagate(order, variables, dep)

    def pattern_of(node):
        p = pat(node)
        size = max(1, math.prod(node.shape))
        return p if p is not None else sparse.csr_matrix((size, n), dtype=bool)

    patterns = []
    for o in outputs:
        if isinstance(o, list):
            patterns.append(sparse.vstack([pattern_of(e) for e in o], format="csr") if o else
                            sparse.csr_matrix((0, n), dtype=bool))
        else:
            patterns.append(pattern_of(o))
    full = sparse.vstack(patterns, format="csr") if patterns else sparse.csr_matrix((0, n), dtype=bool)
    colors, ncolors = color_columns(full)

    seeds = {}
    for j, v in enumerate(variables):
        if v.id in dep:  # a variable read other than through its input block
            seeds[v.id] = {int(colors[j]): ONE}
    for blk in blocks:
        c_of = colors[[pos[a.id] for a in blk.args]].reshape(blk.shape)
        seeds[blk.id] = {int(c): tconst((c_of == c).astype(np.float64)) for c in np.unique(c_of)}
    tan = seeded_forward(order, seeds, dep)

    results = []
    for o, p in zip(outputs, patterns):
        p = sparse.csr_matrix(p)
        p.sort_indices()
        rows = np.repeat(np.arange(p.shape[0], dtype=np.int64), np.diff(p.indptr))
        cols = p.indices.astype(np.int64)
        if not cols.size:
            results.append(OutputJacobian(None, rows, cols))
            continue
        if isinstance(o, list):  # a few scalars: their tangents, entry by entry
            items = [(tan.get(o[r].id) or {}).get(int(colors[c]), ZERO) for r, c in zip(rows, cols)]
            values = build_op("pack", items, (len(items),))
        else:
            m = max(1, math.prod(o.shape))
            t = tan.get(o.id) or {}
            used = sorted({int(c) for c in colors[cols]})
            slot = {c: k for k, c in enumerate(used)}
            parts = []
            for c in used:  # the colours' tangents, flat, one after another
                tc = t.get(c)
                tc = build_op("reshape", [tc], (m,)) if tc is not None and tc.shape else \
                    build_op("bcast", [tc if tc is not None else ZERO], ((m,), ()))
                parts.append(tc)
            stacked = parts[0] if len(parts) == 1 else build_op("concat", parts, 0)
            where = np.array([slot[int(c)] for c in colors[cols]], dtype=np.int64) * m + rows \
                if len(used) > 1 else rows
            values = take_flat(stacked, where)
            if not values.shape:  # one nonzero: still a 1-D tensor of values
                values = build_op("bcast", [values], ((1,), ()))
        results.append(OutputJacobian(values, rows, cols))
    return results, ncolors
