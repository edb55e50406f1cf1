"""NumPy functions on traced arrays: reductions, ``np.where``, clipping, norms,
shape functions, and array creation with ``like=``.

Each implementation is registered with `implements` for the NumPy functions
it stands for; functions whose own object-dtype code traces correctly
(``np.concatenate``, ``np.stack``...) are listed with `passthrough`.
Reductions keep a tensor whole (``tsum``, ``tmax``/``tmin``); on elements
they build the scalar sums.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from symjac.errors import TracerBoolError, UnsupportedOperationError
from symjac.frontend.linalg import nuclear_norm
from symjac.frontend.traced import (TracedArray, _nodes, from_tensor, implements, implements_ufunc, is_tensor,
                                    map_tensor, passthrough, scalar_array, stays_whole, tensor_of, wrap)
from symjac.ir import const, make
from symjac.ops import tensor as tops

__all__ = []


def _keep(t, shape, axes, keepdims):
    """A reduction's result with the reduced axes kept as size 1 when asked."""
    return tops.reshape(t, tuple(1 if i in axes else d for i, d in enumerate(shape))) if keepdims else t


def _axes_of(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def _whole(a):
    """True when a reduction of ``a`` stays one tensor op (a tensor, or an array
    the policy keeps whole)."""
    return is_tensor(a) or stays_whole([a])


def _sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    if dtype is not None or out is not None or where is not True:
        _passthrough_error(np.sum, dtype, out, {"where": where})
    if not _whole(a):
        kw = {} if initial is None else {"initial": initial}
        return wrap(np.sum(_nodes(a), axis=axis, keepdims=keepdims, **kw))
    axes = _axes_of(axis, a.ndim)
    r = from_tensor(_keep(tops.tsum(tensor_of(a), axes), a.shape, axes, keepdims))
    return r if initial is None else r + initial


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, where=True):
    if dtype is not None or out is not None or where is not True:
        _passthrough_error(np.mean, dtype, out, {"where": where})
    if not _whole(a):
        return wrap(np.mean(_nodes(a), axis=axis, keepdims=keepdims))
    count = math.prod(a.shape[i] for i in _axes_of(axis, a.ndim))
    return _sum(a, axis=axis, keepdims=keepdims) / float(count)


def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True, mean=None, correction=None):
    """np.var as traced arithmetic: the mean of squared deviations, over n - ddof."""
    if dtype is not None or out is not None or where is not True or mean is not None or correction is not None:
        extra = {"where": where} if where is not True else {"mean": mean} if mean is not None else \
            {"correction": correction} if correction is not None else {}
        _passthrough_error(np.var, dtype, out, extra)
    shape = np.shape(_nodes(a)) if not is_tensor(a) else a.shape
    count = math.prod(shape[i] for i in _axes_of(axis, len(shape)))
    d = a - _mean(a, axis=axis, keepdims=True)
    return _sum(d * d, axis=axis, keepdims=keepdims) / float(count - ddof)


def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True, mean=None, correction=None):
    return np.sqrt(_var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean, correction=correction))


def _passthrough_error(func, dtype, out, kw):
    bad = "dtype" if dtype is not None else "out" if out is not None else next(iter(kw))
    raise UnsupportedOperationError(
        f"np.{func.__name__}(..., {bad}=...) on traced arrays: traced values are computed in the "
        "kernel's dtype; drop the argument (use np.where to mask)")


def _moveaxis(a, source, destination):
    if not is_tensor(a):
        return wrap(np.moveaxis(_nodes(a), source, destination))
    n = a.ndim
    src = [x % n for x in (source if isinstance(source, (tuple, list)) else (source,))]
    dst = [x % n for x in (destination if isinstance(destination, (tuple, list)) else (destination,))]
    if len(src) != len(dst):
        raise ValueError("np.moveaxis: source and destination need the same number of axes")
    order = [i for i in range(n) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return a.transpose(order)


def _expand_dims(a, axis):
    if not is_tensor(a):
        return wrap(np.expand_dims(_nodes(a), axis))
    return a.reshape(np.expand_dims(np.empty(a.shape, dtype=np.bool_), axis).shape)


# -- array functions with their own code ------------------------------------

def _reduce_nodes(a, op, axis, keepdims, what):
    arr = _nodes(a)
    if arr.size == 0:
        raise ValueError(f"{what} of an empty traced array has no identity")
    axes = tuple(range(arr.ndim)) if axis is None else tuple(
        ax % arr.ndim for ax in (axis if isinstance(axis, tuple) else (axis,)))
    keep = [ax for ax in range(arr.ndim) if ax not in axes]
    moved = np.transpose(arr, keep + list(axes))
    flat = moved.reshape(moved.shape[: len(keep)] + (-1,))
    out = np.empty(flat.shape[:-1], dtype=object)
    for idx in np.ndindex(out.shape):
        row = flat[idx]
        acc = row[0]
        for e in row[1:]:
            acc = make(op, acc, e)
        out[idx] = acc
    if keepdims:
        out = out.reshape(tuple(1 if ax in axes else n for ax, n in enumerate(arr.shape)))
    return TracedArray(out)


def _extreme(op, a, axis, out, keepdims, initial, where):
    if out is not None or where is not True:
        raise UnsupportedOperationError(f"np.{op}(..., out=/where=) on traced arrays; use np.where to mask")
    if _whole(a):
        axes = _axes_of(axis, a.ndim)
        r = from_tensor(_keep(tops.textreme("t" + op, tensor_of(a), axes), a.shape, axes, keepdims))
        return r if initial is None else (np.maximum if op == "max" else np.minimum)(r, initial)
    r = _reduce_nodes(a, op, axis, keepdims, op)
    return r if initial is None else (np.maximum if op == "max" else np.minimum)(r, initial)


def _max(a, axis=None, out=None, keepdims=False, initial=None, where=True):
    return _extreme("max", a, axis, out, keepdims, initial, where)


def _min(a, axis=None, out=None, keepdims=False, initial=None, where=True):
    return _extreme("min", a, axis, out, keepdims, initial, where)


def _where(condition, x=None, y=None):
    if x is None or y is None:
        raise UnsupportedOperationError(
            "np.where(condition) with one argument returns data-dependent indices and cannot be "
            "traced; use np.where(condition, a, b)")
    if any(is_tensor(v) for v in (condition, x, y)):
        return map_tensor(lambda ci, ai, bi: make("where", ci, ai, bi), (condition, x, y))
    c, a, b = _nodes(condition), _nodes(x), _nodes(y)
    result = np.frompyfunc(lambda ci, ai, bi: make("where", ci, ai, bi), 3, 1)(c, a, b)
    return wrap(result if isinstance(result, np.ndarray) else scalar_array(result))


def _clip(a, a_min=None, a_max=None, out=None, **kw):
    r = a
    if a_min is not None:
        r = np.maximum(r, a_min)
    if a_max is not None:
        r = np.minimum(r, a_max)
    return r if isinstance(r, TracedArray) else TracedArray(_nodes(r))


def _norm(x, ord=None, axis=None, keepdims=False):
    arr = x if isinstance(x, TracedArray) else TracedArray(_nodes(x))
    if axis is None:
        axis = tuple(range(arr.ndim)) if arr.ndim == 2 else None
        if arr.ndim > 2 and ord is not None:
            raise UnsupportedOperationError("np.linalg.norm with ord= needs a 1-D or 2-D array or axis=")
    matrix = isinstance(axis, tuple) and len(axis) == 2
    if matrix:
        r, c = (a % arr.ndim for a in axis)
        if ord in (None, "fro"):
            return np.sqrt(np.sum(arr * arr, axis=axis, keepdims=keepdims))
        if ord in (1, -1, np.inf, -np.inf):
            summed, other = (c, r) if ord in (1, -1) else (r, c)   # 1: max column sum; inf: max row sum
            sums = np.sum(np.abs(arr), axis=other, keepdims=True)
            pick = _max if ord in (1, np.inf) else _min
            out = pick(sums, axis=summed, keepdims=True)
            return out if keepdims else np.squeeze(out, axis=tuple(sorted((r, c))))
        if ord == "nuc":
            return nuclear_norm(arr, (r, c), keepdims)
        raise UnsupportedOperationError(f"np.linalg.norm of a matrix with ord={ord!r} (singular values) "
                                        "is not supported; use ord=None/'fro', 'nuc', 1, -1, inf or -inf")
    if ord == "fro":
        raise ValueError("np.linalg.norm: ord='fro' needs a matrix (2-D or a 2-axis axis=)")
    if ord in (None, 2):
        return np.sqrt(np.sum(arr * arr, axis=axis, keepdims=keepdims))
    if ord == 1:
        return np.sum(np.abs(arr), axis=axis, keepdims=keepdims)
    if ord == np.inf:
        return _max(np.abs(arr), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return _min(np.abs(arr), axis=axis, keepdims=keepdims)
    if isinstance(ord, numbers.Real) and ord > 0:
        p = float(ord)
        return np.sum(np.abs(arr) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)
    raise UnsupportedOperationError(f"np.linalg.norm with ord={ord!r} is not supported")


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None):
    shp = np.shape(a) if shape is None else shape
    if isinstance(a, TracedArray) and shape is None and a.ndim and (is_tensor(a) or stays_whole([a])):
        return TracedArray(tensor=tops.fit(const(float(fill_value)), a.shape))  # a tensor stays a tensor
    out = np.empty(shp, dtype=object)
    out[...] = const(float(fill_value))
    return TracedArray(out)


def _creation_dtype(dtype, func):
    if dtype is not None and np.dtype(dtype).kind not in "biuf":
        raise UnsupportedOperationError(f"np.{func}(..., dtype={np.dtype(dtype)}, like=...): traced arrays "
                                        "hold real numbers")


def _filled(shape, fill_value, dtype=None, func="full"):
    """np.zeros/ones/empty/full(..., like=traced): an array of constant (or traced) nodes."""
    _creation_dtype(dtype, func)
    out = np.empty(shape, dtype=object)
    out[...] = np.broadcast_to(_nodes(fill_value), out.shape)
    return TracedArray(out)


def _array_like(obj, dtype=None, *args, ndmin=0, **kwargs):
    """np.array/np.asarray(obj, like=traced): the values of ``obj`` as traced nodes."""
    _creation_dtype(dtype, "array")
    arr = _nodes(obj)
    return TracedArray(arr.reshape((1,) * (ndmin - arr.ndim) + arr.shape) if arr.ndim < ndmin else arr)


def _constant_like(func):
    """A creation function of constants (np.arange, np.eye, ...) called with like=traced."""
    return lambda *args, **kwargs: TracedArray(_nodes(func(*args, **kwargs)))


def _array_equal_error(*args, **kwargs):
    raise TracerBoolError("np.array_equal/np.allclose (a Python bool)")


implements(np.max, np.amax)(_max)
implements(np.min, np.amin)(_min)
implements(np.where)(_where)
implements(np.clip)(_clip)
implements(np.linalg.norm)(_norm)
implements(np.sum)(_sum)
implements(np.mean)(_mean)
implements(np.var)(_var)
implements(np.std)(_std)
implements(np.moveaxis)(_moveaxis)
implements(np.expand_dims)(_expand_dims)
implements(np.array_equal, np.allclose)(_array_equal_error)
implements(np.full_like)(_full_like)
for _f, _v in ((np.zeros_like, 0.0), (np.ones_like, 1.0), (np.empty_like, 0.0)):
    implements(_f)((lambda v: lambda a, dtype=None, order="K", subok=True, shape=None: _full_like(a, v, shape=shape))(_v))
# with like=traced: np.zeros(n, like=y) is the traced counterpart of np.zeros(n)
implements(np.zeros)(lambda shape, dtype=None, order="C", **kw: _filled(shape, 0.0, dtype, "zeros"))
implements(np.empty)(lambda shape, dtype=None, order="C", **kw: _filled(shape, 0.0, dtype, "empty"))
implements(np.ones)(lambda shape, dtype=None, order="C", **kw: _filled(shape, 1.0, dtype, "ones"))
implements(np.full)(lambda shape, fill_value, dtype=None, order="C", **kw: _filled(shape, fill_value, dtype))
implements(np.array, np.asarray, np.asanyarray)(_array_like)
implements(np.arange)(_constant_like(np.arange))
implements(np.eye)(_constant_like(np.eye))
implements(np.identity)(_constant_like(np.identity))


def _as_traced(a):
    return a if isinstance(a, TracedArray) else TracedArray(_nodes(a))


implements(np.reshape)(lambda a, shape=None, order="C", **kw: _as_traced(a).reshape(kw.get("newshape", shape),
                                                                                     order=order))
implements(np.transpose)(lambda a, axes=None: _as_traced(a).transpose(*(() if axes is None else (axes,))))
implements(np.ravel)(lambda a, order="C": _as_traced(a).ravel(order))
implements(np.squeeze)(lambda a, axis=None: _as_traced(a).squeeze(axis))
implements(np.swapaxes)(lambda a, x, y: _as_traced(a).swapaxes(x, y))

implements_ufunc("add", "reduce")(lambda a, axis, keepdims: _sum(a, axis=axis, keepdims=keepdims))
implements_ufunc("multiply", "reduce")(lambda a, axis, keepdims: wrap(np.prod(_nodes(a), axis=axis,
                                                                              keepdims=keepdims)))
implements_ufunc("maximum", "reduce")(lambda a, axis, keepdims: _max(a, axis, keepdims=keepdims))
implements_ufunc("minimum", "reduce")(lambda a, axis, keepdims: _min(a, axis, keepdims=keepdims))



passthrough(
    np.concatenate, np.stack, np.hstack, np.vstack, np.dstack, np.column_stack, np.atleast_1d,
    np.atleast_2d, np.atleast_3d, np.broadcast_to, np.broadcast_arrays, np.flip, np.fliplr,
    np.flipud, np.roll, np.tile, np.repeat, np.diag, np.diagonal, np.trace, np.tril, np.triu,
    np.cross, np.vdot, np.outer, np.kron, np.prod, np.cumsum, np.cumprod, np.take, np.append, np.split,
    np.array_split, np.copy, np.diff, np.shape, np.ndim, np.size, np.real, np.conjugate, np.block, np.pad,
    np.insert, np.delete, np.polyval, np.linalg.matrix_power, np.result_type, getattr(np, "trapezoid", None),
)
