"""Contractions on traced arrays: ``@``, ``np.dot``, ``np.einsum`` (every form:
implicit output, ``...``, three or more operands, the sublist form),
``np.tensordot``, ``np.inner``, ``np.linalg.multi_dot``.

A contraction becomes one ``einsum`` tensor op when an operand already is a
tensor, or when it is worth a loop (see `symjac.tensor_policy`); otherwise
it is unrolled into scalars.  The zeros of a constant operand are structural,
as in ``scipy.sparse``: unrolled, one product per nonzero; as a tensor op, a
mostly-zero constant (at least a tenth zeros) is a gather-multiply-scatter
over its nonzeros (also when the other operand is a few scalars but the
products number at least ``min_array``: ``H @ [1, T, T**2, ...]`` of 50
species stays one op, so the kernel does not grow with the species).  Either way ``S @ v`` costs ``nnz(S)``, in values and in
derivatives, and an infinity in ``v`` does not turn the skipped products into
NaN.  (A mostly-dense constant held as a tensor is a dense loop, with IEEE
products, as NumPy's.)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from symjac.errors import UnsupportedOperationError
from symjac.frontend.policy import policy
from symjac.frontend.traced import (TracedArray, _nodes, constant_values, dense_constant, from_tensor, implements,
                                    implements_ufunc, is_tensor, stays_whole, tensor_of, unwrap, wrap)
from symjac.ir import ZERO, const, iconst, make
from symjac.ops import array as aops, contract, tensor as tops

__all__ = []


def _variable_count(x):
    if is_tensor(x):
        return x.size
    if dense_constant(x) is not None:
        return x.size
    if isinstance(x, TracedArray) or (isinstance(x, np.ndarray) and x.dtype == object):
        return sum(1 for n in _nodes(x).ravel() if n.op != "const")
    return 0


def _worth_tensor(sizes, a, b):
    if is_tensor(a) or is_tensor(b):
        return True
    if policy()["min_work"] is None:
        return False
    if math.prod(sizes.values()) < policy()["min_work"]:
        return False
    if _sparse_constant(a) or _sparse_constant(b):
        return False  # unrolled, its zeros drop out, and the Jacobian keeps its sparsity
    return max(_variable_count(a), _variable_count(b)) >= policy()["min_operand"]


def _many_products(c, sub, sizes):
    """True when a mostly-zero constant ``c`` (subscripts ``sub``) makes at least
    ``min_array`` products: unrolled, that is a statement per product, a kernel
    that grows with the arrays (a 50-species mechanism's NASA-7 enthalpies,
    ``H @ [1, T, ..., T^4]``, were 1,400 of its statements); whole, it is one
    gather, multiply and scatter-add over the nonzeros."""
    n = policy()["min_array"]
    if n is None:
        return False
    vals = constant_values(_nodes(c))
    free = math.prod(d for ch, d in sizes.items() if ch not in sub)
    return np.count_nonzero(vals) * free >= max(n, 1)


def _sparse_constant(x):
    if isinstance(x, TracedArray):
        x = x._nodes if x.tensor is None else None
    vals = constant_values(x)
    return vals is not None and vals.size > 0 and np.count_nonzero(vals) < 0.9 * vals.size


def _einsum2(spec, a, b, fallback):
    """Two-operand contraction with explicit subscripts, as a tensor op when worth it."""
    sa, sb, out = contract.parse_subscripts(spec)
    sizes = {}
    for sub, x in ((sa, a), (sb, b)):
        shape = np.shape(x) if not isinstance(x, TracedArray) else x.shape
        if len(sub) != len(shape) or len(set(sub)) != len(sub):
            return fallback()
        for ch, d in zip(sub, shape):
            if sizes.setdefault(ch, d) != d:
                return fallback()
    for m, (c, x) in enumerate(((a, b), (b, a))):
        if _sparse_constant(c) and (is_tensor(x) or stays_whole([x]) or _many_products(c, sa if m == 0 else sb,
                                                                                        sizes)):
            subs = (sa, sb) if m == 0 else (sb, sa)
            return from_tensor(_sparse_contraction(subs[0], subs[1], out, constant_values(_nodes(c)), tensor_of(x),
                                                   sizes))
    if not _worth_tensor(sizes, a, b):
        for m, (c, x) in enumerate(((a, b), (b, a))):
            vals = constant_values(_nodes(c)) if not is_tensor(c) else None
            if vals is not None and not is_tensor(x) and 0 < np.count_nonzero(vals) < vals.size:
                subs = (sa, sb) if m == 0 else (sb, sa)
                return TracedArray(_sparse_unrolled(subs[0], subs[1], out, vals, _nodes(x), sizes))
        return fallback()
    return from_tensor(contract.einsum(spec, tensor_of(a), tensor_of(b)))


def _sparse_unrolled(sc, sx, out, c, x, sizes):
    """``einsum(sc,sx->out)`` of a constant ``c`` and scalar nodes ``x``, one product
    per nonzero of ``c`` (its zeros are structural, as in ``scipy.sparse``: they
    cost nothing, and ``0 * inf`` is not formed); each output entry sums its
    products in NumPy's order."""
    nz = np.nonzero(c)
    coords = dict(zip(sc, nz))
    free = [ch for ch in dict.fromkeys(sx + out) if ch not in coords]
    grid = list(np.ndindex(*[sizes[ch] for ch in free]))
    sums = {}
    for t, v in enumerate(c[nz]):
        weight = const(float(v))
        at = {ch: int(idx[t]) for ch, idx in coords.items()}
        for g in grid:
            at.update(zip(free, g))
            term = make("mul", weight, x[tuple(at[ch] for ch in sx)])
            key = tuple(at[ch] for ch in out)
            prev = sums.get(key)
            sums[key] = term if prev is None else make("add", prev, term)
    result = np.empty(tuple(sizes[ch] for ch in out), dtype=object)
    result[...] = ZERO
    for key, node in sums.items():
        result[key] = node
    return result


def _sparse_contraction(sc, sx, out, c, x, sizes):
    """``einsum(sc,sx->out)`` of a mostly-zero constant ``c`` and a tensor ``x``
    as gather, multiply, scatter-add over the constant's nonzeros: the work and
    the Jacobian's pattern are the sparse ones."""
    nz = np.nonzero(c)
    coords = dict(zip(sc, nz))
    free = [ch for ch in dict.fromkeys(sx + out) if ch not in coords]
    grids = np.indices([sizes[ch] for ch in free]).reshape(len(free), -1) if free else np.zeros((0, 1), np.int64)
    n_terms, n_free = nz[0].size if nz else 1, grids.shape[1]

    def flat(sub):
        pos, stride = np.zeros((n_terms, n_free), dtype=np.int64), 1
        for ch in reversed(sub):
            idx = coords[ch][:, None] if ch in coords else grids[free.index(ch)][None, :]
            pos = pos + idx * stride
            stride *= sizes[ch]
        return pos.reshape(-1)

    weights = np.broadcast_to(c[nz][:, None], (n_terms, n_free)).reshape(-1).astype(np.float64)
    terms = make("mul", tops.tconst(weights), aops.take(tops.reshape(x, (math.prod(x.shape),)), flat(sx)))
    shape = tuple(sizes[ch] for ch in out)
    return aops.scatter(terms, iconst(flat(out)), shape)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _matmul(a, b):
    da, db = np.ndim(a) if not isinstance(a, TracedArray) else a.ndim, \
        np.ndim(b) if not isinstance(b, TracedArray) else b.ndim
    if da == 0 or db == 0:
        return wrap(np.matmul(_nodes(a), _nodes(b)))
    if da > 2 or db > 2:  # stacks of matrices: the stack axes as einsum indices
        batch = max(da, db) - 2
        stack = _LETTERS[5: 5 + batch]
        sa = (stack[batch - (da - 2):] if da > 2 else "") + ("ij" if da >= 2 else "j")
        sb = (stack[batch - (db - 2):] if db > 2 else "") + ("jk" if db >= 2 else "j")
        out = stack + ("i" if da >= 2 else "") + ("k" if db >= 2 else "")
        return _einsum(f"{sa},{sb}->{out}", a, b)
    sa = "ij"[2 - da:]
    sb = "jk"[: db]
    out = sa[:-1] + sb[1:]
    return _einsum2(f"{sa},{sb}->{out}", a, b, lambda: wrap(np.matmul(_nodes(a), _nodes(b))))


def _dot(a, b, out=None):
    if out is not None:
        raise UnsupportedOperationError("np.dot(..., out=...) on traced arrays")
    da, db = (x.ndim if isinstance(x, TracedArray) else np.ndim(x) for x in (a, b))
    if da <= 2 and db <= 2 and da and db:
        return _matmul(a, b)
    return wrap(np.dot(_nodes(a), _nodes(b)))


def _einsum(*operands, optimize=False, **kwargs):
    fallback = lambda: wrap(np.einsum(*unwrap(operands), **unwrap(kwargs)))  # noqa: E731
    if kwargs or not operands:
        return fallback()
    if not isinstance(operands[0], str):  # the sublist form einsum(a, [0, 1], b, [1], [0])
        try:
            operands = _sublists_to_string(operands)
        except (TypeError, ValueError, IndexError):
            return fallback()
    spec, arrays = operands[0].replace(" ", ""), operands[1:]
    ins = spec.split("->")[0].split(",")
    if len(ins) != len(arrays) or not all(ch.isascii() and (ch.isalpha() or ch in ",->.") for ch in spec):
        return fallback()  # NumPy's own error message
    if "->" not in spec:  # NumPy's implicit output: indices seen once, sorted
        letters = spec.replace(",", "").replace(".", "")
        spec += "->" + ("..." if "..." in spec else "") + \
            "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    if "." in spec:
        spec = _expand_ellipsis(spec, arrays)
        if spec is None:
            return fallback()
    if len(arrays) == 1:
        return fallback()
    ins, out = spec.split("->")
    ins = ins.split(",")
    acc, sub = arrays[0], ins[0]
    for k in range(1, len(arrays)):  # left to right, keeping the indices still needed
        later = set(out) | set("".join(ins[k + 1:]))
        keep = "".join(dict.fromkeys(ch for ch in sub + ins[k] if ch in later))
        step = f"{sub},{ins[k]}->{keep if k < len(arrays) - 1 else out}"
        a, b = acc, arrays[k]
        acc = _einsum2(step, a, b, lambda: wrap(np.einsum(step, _nodes(a), _nodes(b))))
        sub = keep
    return acc


def _sublists_to_string(operands):
    body, out = (operands[:-1], operands[-1]) if len(operands) % 2 == 1 else (operands, None)
    arrays, subs = body[0::2], body[1::2]
    letter = lambda i: "..." if i is Ellipsis else _LETTERS[i]  # noqa: E731
    spec = ",".join("".join(letter(i) for i in sub) for sub in subs)
    if out is not None:
        spec += "->" + "".join(letter(i) for i in out)
    return (spec, *arrays)


def _expand_ellipsis(spec, arrays):
    """Explicit letters for '...' (the broadcast axes must agree exactly)."""
    ins, out = spec.split("->")
    ins = ins.split(",")
    free = [ch for ch in _LETTERS if ch not in spec]
    widths = []
    for sub, x in zip(ins, arrays):
        nd = x.ndim if isinstance(x, TracedArray) else np.ndim(x)
        widths.append(nd - len(sub.replace("...", "")) if "..." in sub else 0)
    n = max(widths, default=0)
    if n > len(free) or any(w < 0 for w in widths):
        return None
    shapes = [(x.shape if isinstance(x, TracedArray) else np.shape(x)) for x in arrays]
    dims = {}
    for sub, w, shape in zip(ins, widths, shapes):
        if "..." in sub:
            for j, d in enumerate(shape[sub.index("..."): sub.index("...") + w]):
                if dims.setdefault(n - w + j, d) != d:
                    return None  # broadcasting over '...': leave it to NumPy
    ell = [free[j] for j in range(n)]
    ins = [s.replace("...", "".join(ell[n - w:])) for s, w in zip(ins, widths)]
    return ",".join(ins) + "->" + out.replace("...", "".join(ell))


def _inner(a, b):
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return wrap(np.inner(_nodes(a), _nodes(b)))
    return _tensordot(a, b, axes=([-1], [-1]))


def _multi_dot(arrays, *, out=None):
    if out is not None:
        raise UnsupportedOperationError("np.linalg.multi_dot(..., out=...) on traced arrays")
    acc = arrays[0]
    for x in arrays[1:]:
        acc = _dot(acc, x)
    return acc


def _tensordot(a, b, axes=2):
    da, db = (x.ndim if isinstance(x, TracedArray) else np.ndim(x) for x in (a, b))
    if isinstance(axes, numbers.Integral):
        ax_a, ax_b = list(range(da - axes, da)), list(range(axes))
    else:
        ax_a, ax_b = ([x] if isinstance(x, numbers.Integral) else list(x) for x in axes)
    ax_a, ax_b = [x % da for x in ax_a], [x % db for x in ax_b]
    if da + db > len(_LETTERS):
        return wrap(np.tensordot(_nodes(a), _nodes(b), axes))
    sa = list(_LETTERS[:da])
    sb = list(_LETTERS[da: da + db])
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    out = [c for i, c in enumerate(sa) if i not in ax_a] + [c for j, c in enumerate(sb) if j not in ax_b]
    spec = f"{''.join(sa)},{''.join(sb)}->{''.join(out)}"
    return _einsum2(spec, a, b, lambda: wrap(np.tensordot(_nodes(a), _nodes(b), axes)))


implements(np.dot)(_dot)
implements(np.matmul)(_matmul)
implements(np.einsum)(_einsum)
implements(np.tensordot)(_tensordot)
implements(np.inner)(_inner)
implements(np.linalg.multi_dot)(_multi_dot)
implements_ufunc("matmul")(lambda *inputs: _matmul(*inputs) if len(inputs) == 2 else
                           wrap(np.matmul(*[_nodes(x) for x in inputs])))
for _name in ("vecdot", "matvec", "vecmat"):  # (NumPy 2.2 and later for the last two)
    if hasattr(np, _name):
        implements_ufunc(_name)((lambda fn: lambda *inputs: wrap(fn(*[_nodes(x) for x in inputs])))(getattr(np, _name)))
