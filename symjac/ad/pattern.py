"""Structural sparsity of array programs, and the column colouring it allows.

The pattern of a node is a boolean sparse matrix (its flat entries x the
variables): entry (i, j) is set when entry i can depend on variable j.  It is
propagated through the graph op by op, each op contributing its local
Jacobian's structure as index arrays (`local_structure`): an elementwise op
a diagonal (masked where a constant partial is zero), a view, gather or
scatter a selection, a reduction or cumulative sum a block of ones, a
contraction with a constant the constant's nonzeros.  Every step is a sparse
matrix product on index arrays (SciPy's compiled kernels), never one Python
object per entry, so the work is linear in the pattern's size.

A column colouring of the outputs' pattern (no two columns of one colour
share a row) lets one forward sweep per colour compute every structural
nonzero (Curtis, Powell and Reid's compression): seed colour c with the
indicator of its columns, and entry (i, j) of the Jacobian is entry i of
colour ``color[j]``'s tangent.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ad.rules import differentiable, partials, uses_partials
from symjac.ir import ONE, ZERO, constant_value, iconst, lookup

__all__ = ["propagate", "local_structure", "local_jacobian", "color_columns", "dense_structure", "build_op",
           "take_flat"]


def _matrix(rows, cols, shape):
    """Boolean CSR matrix with ones at (rows, cols) (repeats merged)."""
    from scipy import sparse  # loaded on first use: `import symjac` stays light

    rows, cols = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(cols, dtype=np.int64).ravel()
    m = sparse.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=shape)
    m.sum_duplicates()
    return m


def dense_structure(node, m):
    """Every entry of ``node`` on every entry of argument ``m`` (the structure
    of an op that declares none: exact for dense ops, an upper bound else)."""
    n_out, n_in = max(1, math.prod(node.shape)), max(1, math.prod(node.args[m].shape))
    return np.repeat(np.arange(n_out), n_in), np.tile(np.arange(n_in), n_out)


def _elementwise_structure(node, m, part):
    """A diagonal (a scalar argument: a column) where the partial ``part`` can
    be nonzero: a constant partial's zeros are structural."""
    size = max(1, math.prod(node.shape))
    rows = np.arange(size)
    value = constant_value(part)
    if value is not None:
        rows = rows[np.broadcast_to(value, node.shape).reshape(-1) != 0]  # NaN counts as nonzero
    cols = rows if node.args[m].shape else np.zeros_like(rows)
    return rows, cols


def _elementwise_partials(node):
    if uses_partials(node):
        return partials(node)
    info = lookup(node.op)  # an op with its own JVP (where): the JVP of tangent 1 in one argument
    out = []
    for m in range(len(node.args)):
        t = info.jvp(node, [ONE if i == m else None for i in range(len(node.args))])
        out.append(ZERO if t is None else t)
    return out


def local_structure(node, m):
    """(rows, cols): the structural nonzeros of d node.flat / d args[m].flat, or
    None when the node does not depend on that argument."""
    info = lookup(node.op)
    if info.kind == "elementwise":
        part = _elementwise_partials(node)[m]
        return None if part is ZERO else _elementwise_structure(node, m, part)
    if info.structure is None:
        return dense_structure(node, m)
    s = info.structure(node, m)
    return None if s is None else s[:2]


def local_jacobian(node, m):
    """``(rows, cols, weight)``: the local Jacobian d node.flat / d args[m].flat,
    its entries at (rows, cols) with values 1 (``weight`` None) or
    ``W.flat[idx]`` (``weight = (W, idx)``); None when the node does not
    depend on the argument.  Raises LookupError for an op that declares no
    structure (its Jacobian is not known entry by entry)."""
    info = lookup(node.op)
    if info.kind == "elementwise":
        part = _elementwise_partials(node)[m]
        if part is ZERO:
            return None
        rows, cols = _elementwise_structure(node, m, part)
        return rows, cols, (part, rows if part.shape else np.zeros_like(rows))
    if info.structure is None:
        raise LookupError(node.op)
    s = info.structure(node, m)
    if s is None:
        return None
    return s if len(s) == 3 else (s[0], s[1], None)


def propagate(order, variables, depends):
    """The patterns (CSR, entries x len(variables)) of the nodes in ``order``
    that depend on a variable (``depends``: node id -> truthy), as a function
    of the node (None for a node that depends on none)."""
    pos = {v.id: j for j, v in enumerate(variables)}
    n = len(variables)
    pat = {}

    def of(a):  # a variable's pattern is made when something other than an input block asks
        if a.id in pos and a.id not in pat and a.id in depends:
            pat[a.id] = _matrix([0], [pos[a.id]], (1, n))
        return pat.get(a.id)

    for node in order:
        if node.id not in depends or node.id in pos:
            continue
        size = max(1, math.prod(node.shape))
        if node.op == "pack" and all(a.id in pos for a in node.args):  # an input block: no per-entry work
            pat[node.id] = _matrix(np.arange(size), [pos[a.id] for a in node.args], (size, n))
            continue
        acc = None
        for m, a in enumerate(node.args):
            pa = of(a)
            if pa is None or not differentiable(node):
                continue
            s = local_structure(node, m)
            if s is None:
                continue
            term = _matrix(s[0], s[1], (size, pa.shape[0])) @ pa
            acc = term if acc is None else acc + term
        if acc is not None and acc.nnz:
            acc.sum_duplicates()
            acc.sort_indices()
            pat[node.id] = acc
    return of


def build_op(op, args, attr):
    """The node of registered op ``op`` on ``args`` (the ops layer builds it)."""
    return lookup(op).build(tuple(args), attr)


def _flat(t):
    return t if len(t.shape) == 1 else build_op("reshape", [t], (max(1, math.prod(t.shape)),))


def take_flat(t, idx):
    """``t.flat[idx]``: a scalar node for one entry (a block of one entry stays
    scalar code), else a node of shape (len(idx),): the tensor itself, a
    broadcast, a view or a gather."""
    if idx.size == 1:
        return t if not t.shape else build_op("elem", [t], int(idx[0]))
    if not t.shape:
        return build_op("bcast", [t], ((idx.size,), ()))
    flat = _flat(t)
    n = flat.shape[0]
    if idx.size == n and np.array_equal(idx, np.arange(n)):
        return flat
    step = np.diff(idx)
    if np.all(step == step[0]):
        return build_op("view", [flat], (int(idx[0]), (int(step[0]),), (idx.size,)))
    return build_op("gather", [flat, iconst(idx)], None)


def color_columns(pattern):
    """A colouring of the columns of CSR ``pattern`` in which no two columns of
    one colour share a row (greedy, natural order: optimal for banded
    matrices).  Returns (colours int64 array, number of colours)."""
    from scipy import sparse

    pattern = sparse.csr_matrix(pattern)
    csc = pattern.tocsc()
    colors = _greedy(pattern.indptr.astype(np.int64), pattern.indices.astype(np.int64),
                     csc.indptr.astype(np.int64), csc.indices.astype(np.int64), pattern.shape[1])
    return colors, int(colors.max()) + 1 if colors.size else 0


def _greedy_python(r_ptr, r_idx, c_ptr, c_idx, n):
    colors = np.full(n, -1, dtype=np.int64)
    mark = np.full(n + 1, -1, dtype=np.int64)
    for j in range(n):
        for p in range(c_ptr[j], c_ptr[j + 1]):
            r = c_idx[p]
            for q in range(r_ptr[r], r_ptr[r + 1]):
                c = colors[r_idx[q]]
                if c >= 0:
                    mark[c] = j
        c = 0
        while mark[c] == j:
            c += 1
        colors[j] = c
    return colors


try:  # compiled once and cached on disk; NumPy-free Python loops otherwise
    import numba

    _greedy = numba.njit(cache=True, nogil=True)(_greedy_python)
except ImportError:  # pragma: no cover - numba is a dependency
    _greedy = _greedy_python
