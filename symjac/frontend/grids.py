"""NumPy functions on grids of traced values: ``np.linspace`` with traced ends,
``np.gradient`` (finite differences of traced samples, on constant spacings or
coordinates) and ``np.rot90``.

Each is written with traced slicing, arithmetic and concatenation, so a
tensor stays a tensor and the derivatives come from those ops' rules.
"""

from __future__ import annotations

import numbers

import numpy as np

from symjac.errors import UnsupportedOperationError
from symjac.frontend.traced import TracedArray, _nodes, implements, is_traced

__all__ = []


def _as_traced(a):
    return a if isinstance(a, TracedArray) else TracedArray(_nodes(a))


def _linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    """np.linspace with traced ``start`` or ``stop``: ``start + i * step``, the last
    point ``stop`` itself when ``endpoint`` (NumPy's formula)."""
    if not isinstance(num, numbers.Integral) or isinstance(num, bool):
        raise UnsupportedOperationError(f"np.linspace(num=...) must be a Python int on traced arrays, got "
                                        f"{type(num).__name__}")
    if num < 0:
        raise ValueError(f"np.linspace: number of samples, {num}, must be non-negative.")
    if dtype is not None and np.dtype(dtype).kind not in "f":
        raise UnsupportedOperationError(f"np.linspace(..., dtype={np.dtype(dtype)}) on traced ends: traced "
                                        "values are real numbers in the kernel's dtype")
    start, stop = _as_traced(start), _as_traced(stop)
    shape = np.broadcast_shapes(start.shape, stop.shape)
    div = num - 1 if endpoint else num
    step = (stop - start) / float(div) if div > 0 else (stop - start) * np.nan
    if num == 0:
        y = TracedArray(np.empty((0,) + shape, dtype=object))
    else:
        i = np.arange(num, dtype=float).reshape((-1,) + (1,) * len(shape))
        y = start + i * step if div > 0 else start + i * (stop - start)
        y = np.broadcast_to(y, (num,) + shape)
        if endpoint and num > 1:
            y = np.concatenate([y[:-1], np.broadcast_to(stop, shape)[None]], axis=0)
    if axis != 0:
        y = np.moveaxis(y, 0, axis)
    return (y, step) if retstep else y


def _spacings(f, varargs, axes):
    """One spacing per axis: a float, or the coordinate differences (a 1-D float array)."""
    n = len(varargs)
    if n == 0:
        return [1.0] * len(axes)
    if n == 1 and np.ndim(varargs[0]) == 0:
        varargs = varargs * len(axes)
    elif n != len(axes):
        raise TypeError("np.gradient: invalid number of arguments (one spacing, or one per axis)")
    out = []
    for v, ax in zip(varargs, axes):
        if is_traced(v):
            raise UnsupportedOperationError("np.gradient with traced spacings or coordinates: give them as "
                                            "constants (the traced values are the samples f)")
        v = np.asarray(v, dtype=float)
        if v.ndim == 0:
            out.append(float(v))
            continue
        if v.ndim != 1 or len(v) != f.shape[ax]:
            raise ValueError("np.gradient: distances must be either scalars or 1d with the length of the "
                             "corresponding dimension")
        d = np.diff(v)
        out.append(float(d[0]) if np.all(d == d[0]) else d)
    return out


def _gradient_axis(f, ax, h, edge_order):
    """The finite-difference derivative of traced ``f`` along ``ax`` (NumPy's
    second-order interior formula, first- or second-order edges)."""
    n = f.shape[ax]
    if n < edge_order + 1:
        raise ValueError("Shape of array too small to calculate a numerical gradient, at least (edge_order + "
                         "1) elements are required.")

    def at(lo, hi=None):
        s = [slice(None)] * f.ndim
        s[ax] = slice(lo, hi) if hi is not None or lo is None else slice(lo, lo + 1 if lo != -1 else None)
        return f[tuple(s)]

    def col(c):  # coefficients along ax, broadcasting over the other axes
        return np.reshape(c, (-1,) + (1,) * (f.ndim - ax - 1)) if np.ndim(c) else c

    if np.ndim(h) == 0:
        interior = (at(2, n) - at(0, n - 2)) / (2.0 * h) if n > 2 else None
        if edge_order == 1:
            first, last = (at(1) - at(0)) / h, (at(-1) - at(-2)) / h
        else:
            first = (at(0) * -1.5 + at(1) * 2.0 - at(2) * 0.5) / h
            last = (at(-3) * 0.5 - at(-2) * 2.0 + at(-1) * 1.5) / h
    else:
        d1, d2 = h[:-1], h[1:]
        a, b, c = -d2 / (d1 * (d1 + d2)), (d2 - d1) / (d1 * d2), d1 / (d2 * (d1 + d2))
        interior = at(0, n - 2) * col(a) + at(1, n - 1) * col(b) + at(2, n) * col(c) if n > 2 else None
        if edge_order == 1:
            first, last = (at(1) - at(0)) / h[0], (at(-1) - at(-2)) / h[-1]
        else:
            d1, d2 = h[0], h[1]
            first = (at(0) * (-(2.0 * d1 + d2) / (d1 * (d1 + d2))) + at(1) * ((d1 + d2) / (d1 * d2))
                     + at(2) * (-d1 / (d2 * (d1 + d2))))
            d1, d2 = h[-2], h[-1]
            last = (at(-3) * (d2 / (d1 * (d1 + d2))) + at(-2) * (-(d2 + d1) / (d1 * d2))
                    + at(-1) * ((2.0 * d2 + d1) / (d2 * (d1 + d2))))
    parts = [first] + ([interior] if interior is not None else []) + [last]
    return np.concatenate(parts, axis=ax)


def _gradient(f, *varargs, axis=None, edge_order=1):
    """np.gradient of traced samples ``f``: one array per axis (a tuple for several)."""
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    f = _as_traced(f)
    if f.ndim == 0:
        raise ValueError("np.gradient needs an array of at least one dimension")
    axes = tuple(range(f.ndim)) if axis is None else tuple(
        a % f.ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    out = [_gradient_axis(f, ax, h, edge_order) for ax, h in zip(axes, _spacings(f, varargs, axes))]
    return out[0] if len(out) == 1 else tuple(out)


def _rot90(m, k=1, axes=(0, 1)):
    """np.rot90: flips and a transpose (NumPy's own steps), on the traced array."""
    m = _as_traced(m)
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError("len(axes) must be 2.")
    if m.ndim < 2:
        raise ValueError(f"np.rot90: axes={axes} out of range for a {m.ndim}-d array")
    a0, a1 = (a % m.ndim for a in axes)
    if a0 == a1:
        raise ValueError("Axes must be different.")
    k %= 4
    if k == 0:
        return m[...]
    if k == 2:
        return np.flip(np.flip(m, a0), a1)
    perm = list(range(m.ndim))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    return np.transpose(np.flip(m, a1), perm) if k == 1 else np.flip(np.transpose(m, perm), a1)


implements(np.linspace)(_linspace)
implements(np.gradient)(_gradient)
implements(np.rot90)(_rot90)
