"""More of NumPy on traced arrays, written with the traced functions already
there: order statistics (``median``, ``percentile``, ``quantile`` on the
sorting network), ``ptp``, ``average``, the NaN-ignoring reductions, ``any``
and ``all`` (traced booleans, for ``np.where``), ``isclose``, ``cov`` and
``corrcoef``, ``interp``, ``convolve`` and ``correlate``, ``meshgrid``,
``logspace``, ``take_along_axis``, ``vander`` and the ufuncs ``floor_divide``,
``signbit`` and ``ldexp`` (``divmod``, ``modf`` and ``frexp``, with two
outputs, are not traced: the error names them).

Derivatives come from the pieces: an order statistic follows the values the
sort put there (interpolated between two of them), ``interp`` is linear
between its knots, and the piecewise constant parts (``floor_divide``,
``signbit``) have derivative 0 wherever it exists.
"""

from __future__ import annotations

import numpy as np

from symjac.errors import UnsupportedOperationError
from symjac.frontend.functions import _axes_of, _reduce_nodes
from symjac.frontend.selection import _sort
from symjac.frontend.traced import TracedArray, _nodes, implements, is_traced
from symjac.ir import defufunc, defunction, make

__all__ = []


def _traced(a):
    return a if isinstance(a, TracedArray) else TracedArray(_nodes(a))


def _is_bool(a):
    nodes = _nodes(a)
    return nodes.size > 0 and all(n.kind == "bool" for n in nodes.flat)


# -- order statistics --------------------------------------------------------------------

def _quantile_of(a, q, axis, keepdims, method, what):
    """NumPy's quantile with ``method='linear'`` (or the step methods that pick
    one value): the sorted values along ``axis``, interpolated at ``q * (n - 1)``."""
    if is_traced(q):
        raise UnsupportedOperationError(f"np.{what} with a traced q: give the quantiles as constants")
    if method not in ("linear", "lower", "higher", "nearest", "midpoint"):
        raise UnsupportedOperationError(f"np.{what}(..., method={method!r}) on traced arrays: symjac has "
                                        "'linear', 'lower', 'higher', 'nearest' and 'midpoint'")
    a = _traced(a)
    kept = tuple(1 if axis is None or i in _axes_of(axis, a.ndim) else d for i, d in enumerate(a.shape))
    if axis is None:
        a, axis = a.reshape(-1), 0
    axes = _axes_of(axis, a.ndim)
    if len(axes) != 1:
        moved = np.moveaxis(a, axes, tuple(range(-len(axes), 0)))
        a = moved.reshape(moved.shape[: a.ndim - len(axes)] + (-1,))
        axes = (a.ndim - 1,)
    ax = axes[0]
    s = _sort(a, axis=ax)
    n = a.shape[ax]
    qs = np.asarray(q, dtype=float)
    if np.any((qs < 0) | (qs > 1)) or np.any(np.isnan(qs)):
        raise ValueError(f"np.{what}: quantiles must be in the range [0, 1]")

    def take(i):
        idx = [slice(None)] * s.ndim
        idx[ax] = i
        return s[tuple(idx)]

    has_nan = np.any(np.isnan(a), axis=ax)  # NumPy: a NaN in the slice gives NaN
    out = []
    for qi in qs.ravel():
        pos = qi * (n - 1)
        lo, hi = int(np.floor(pos)), min(int(np.floor(pos)) + 1, n - 1)
        frac = pos - lo
        if method == "lower" or (method == "linear" and frac == 0.0):
            r = take(lo)
        elif method == "higher":
            r = take(int(np.ceil(pos)))
        elif method == "nearest":
            r = take(int(np.around(pos)))  # NumPy rounds half to even
        elif method == "midpoint":
            r = take(hi) - (take(hi) - take(lo)) * 0.5 if frac else take(lo)  # NumPy's _lerp at 0.5
        elif frac < 0.5:  # NumPy's _lerp: from the nearer end (so an infinite far end stays out)
            r = take(lo) + (take(hi) - take(lo)) * frac
        else:
            r = take(hi) - (take(hi) - take(lo)) * (1.0 - frac)
        r = np.where(has_nan, np.nan, r)
        out.append(np.reshape(r, kept) if keepdims else r)
    if qs.ndim == 0:
        return out[0]
    return np.stack(out).reshape(qs.shape + np.shape(out[0]))


def _quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *,
              weights=None, interpolation=None):
    if out is not None or weights is not None or interpolation is not None:
        raise UnsupportedOperationError("np.quantile(..., out=/weights=/interpolation=) on traced arrays")
    return _quantile_of(a, q, axis, keepdims, method, "quantile")


def _percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *,
                weights=None, interpolation=None):
    if out is not None or weights is not None or interpolation is not None:
        raise UnsupportedOperationError("np.percentile(..., out=/weights=/interpolation=) on traced arrays")
    if is_traced(q):
        raise UnsupportedOperationError("np.percentile with a traced q: give the percentiles as constants")
    return _quantile_of(a, np.asarray(q, dtype=float) / 100.0, axis, keepdims, method, "percentile")


def _median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    if out is not None:
        raise UnsupportedOperationError("np.median(..., out=...) on traced arrays")
    return _quantile_of(a, 0.5, axis, keepdims, "linear", "median")


# -- reductions ------------------------------------------------------------------------------

def _ptp(a, axis=None, out=None, keepdims=False):
    return np.max(a, axis=axis, keepdims=keepdims) - np.min(a, axis=axis, keepdims=keepdims)


def _average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    if weights is None:
        avg = np.mean(a, axis=axis, keepdims=keepdims)
        scale = np.asarray(float(np.size(a) if axis is None else np.prod([np.shape(a)[i] for i in
                                                                            _axes_of(axis, np.ndim(a))])))
    else:
        w = weights
        if np.shape(w) != np.shape(a):
            if axis is None or np.ndim(w) != 1:
                raise TypeError("np.average: axis must be specified when shapes of a and weights differ.")
            shape = [1] * np.ndim(a)
            shape[_axes_of(axis, np.ndim(a))[0]] = -1
            w = np.reshape(w, shape)
        scale = np.sum(w * np.ones_like(a), axis=axis, keepdims=keepdims)
        avg = np.sum(a * w, axis=axis, keepdims=keepdims) / scale
    return (avg, scale) if returned else avg


def _nan_reduction(reduce, fill):
    def traced(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
        if dtype is not None or out is not None or kw.get("where", True) is not True:
            raise UnsupportedOperationError(f"np.nan{reduce.__name__}(..., dtype=/out=/where=) on traced arrays")
        a = _traced(a)
        return reduce(np.where(np.isnan(a), fill, a), axis=axis, keepdims=keepdims)
    return traced


def _nanmean(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    if dtype is not None or out is not None or kw.get("where", True) is not True:
        raise UnsupportedOperationError("np.nanmean(..., dtype=/out=/where=) on traced arrays")
    a = _traced(a)
    keep = ~np.isnan(a)
    return (np.sum(np.where(keep, a, 0.0), axis=axis, keepdims=keepdims)
            / np.sum(np.where(keep, 1.0, 0.0), axis=axis, keepdims=keepdims))


def _nan_extreme(pick):
    def traced(a, axis=None, out=None, keepdims=False, **kw):
        # NaNs ignored: fmax/fmin drop a NaN argument (all-NaN slices stay NaN, as NumPy's result)
        if out is not None:
            raise UnsupportedOperationError("np.nanmax/np.nanmin(..., out=) on traced arrays")
        a = _traced(a)
        axes = tuple(range(a.ndim)) if axis is None else _axes_of(axis, a.ndim)
        moved = np.moveaxis(a, axes, tuple(range(-len(axes), 0)))
        flat = moved.reshape(moved.shape[: a.ndim - len(axes)] + (-1,))
        r = flat[..., 0]
        for i in range(1, flat.shape[-1]):
            r = pick(r, flat[..., i])
        if keepdims:
            r = np.reshape(r, tuple(1 if i in axes else d for i, d in enumerate(a.shape)))
        return r
    return traced


def _logical_reduce(op, what):
    def traced(a, axis=None, out=None, keepdims=False, *, where=True):
        if out is not None or where is not True:
            raise UnsupportedOperationError(f"np.{what}(..., out=/where=) on traced arrays")
        nodes = _nodes(a)
        if not _is_bool(a):
            nodes = np.frompyfunc(lambda n: make("ne", n, 0.0), 1, 1)(nodes)
        return _reduce_nodes(nodes, op, axis, keepdims, f"np.{what}")
    return traced


def _isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _traced(a) if is_traced(a) else a, _traced(b) if is_traced(b) else b
    close = np.abs(a - b) <= atol + rtol * np.abs(b)
    r = (a == b) | (close & np.isfinite(a) & np.isfinite(b))  # equal infinities are close; others not
    return r | (np.isnan(a) & np.isnan(b)) if equal_nan else r


def _cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *, dtype=None):
    if fweights is not None or aweights is not None or dtype is not None:
        raise UnsupportedOperationError("np.cov(..., fweights=/aweights=/dtype=) on traced arrays")
    x = np.atleast_2d(_traced(m))
    if not rowvar and x.shape[0] != 1:
        x = x.T
    if y is not None:
        yy = np.atleast_2d(_traced(y))
        x = np.concatenate([x, yy if rowvar or yy.shape[0] == 1 else yy.T], axis=0)
    n = x.shape[1]
    ddof = (0 if bias else 1) if ddof is None else ddof
    d = x - np.mean(x, axis=1, keepdims=True)
    c = (d @ d.T) / float(n - ddof)
    return c[0, 0] if c.shape == (1, 1) else c


def _corrcoef(x, y=None, rowvar=True, *, dtype=None):
    c = _cov(x, y, rowvar, dtype=dtype)
    if np.ndim(c) == 0:
        return c / c
    d = np.sqrt(np.diagonal(c))
    r = c / d[:, None] / d[None, :]
    return np.clip(r, -1.0, 1.0)


# -- interpolation, convolution, grids --------------------------------------------------------

def _interp(x, xp, fp, left=None, right=None, period=None):
    """np.interp: piecewise linear through ``(xp, fp)``.  Constant ``xp`` (the
    knots); ``x`` and ``fp`` may be traced.  With constant ``x``, weights are
    found while tracing; with traced ``x``, a chain of ``where`` over the
    knots picks the segment (its cost grows with the number of knots)."""
    if period is not None:
        raise UnsupportedOperationError("np.interp(..., period=...) on traced arrays")
    if is_traced(xp):
        raise UnsupportedOperationError("np.interp with traced knots xp: give xp as constants (x and fp may "
                                        "be traced)")
    xp = np.asarray(xp, dtype=float)
    if xp.ndim != 1 or len(xp) == 0 or np.shape(fp) != xp.shape:
        raise ValueError("np.interp: xp and fp must be 1-D sequences of the same length")
    fp = _traced(fp) if is_traced(fp) else np.asarray(fp, dtype=float)
    lo = fp[0] if left is None else left
    hi = fp[-1] if right is None else right
    n = len(xp)
    if not is_traced(x):
        xs = np.asarray(x, dtype=float)
        i = np.clip(np.searchsorted(xp, xs, side="right") - 1, 0, max(n - 2, 0))
        if n == 1:
            out = [fp[0] * 1.0 for _ in xs.ravel()]
        else:
            w = (xs - xp[i]) / (xp[i + 1] - xp[i])
            out = [fp[a] + (fp[a + 1] - fp[a]) * wi for a, wi in zip(i.ravel(), w.ravel())]
        vals = [np.where(xv < xp[0], lo, np.where(xv > xp[-1], hi, v)) for xv, v in zip(xs.ravel(), out)]
        res = np.stack(vals) if vals else TracedArray(np.empty(0, dtype=object))
        return res.reshape(xs.shape)
    x = _traced(x)
    r = fp[0] * np.ones_like(x)
    for k in range(n - 1):
        seg = fp[k] + (fp[k + 1] - fp[k]) * ((x - xp[k]) / (xp[k + 1] - xp[k]))
        r = np.where(x >= xp[k], seg, r)
    r = np.where(x == xp[-1], fp[-1], r)
    r = np.where(x < xp[0], lo, np.where(x > xp[-1], hi, r))
    return np.where(np.isnan(x), np.nan, r)  # NaN in, NaN out (every comparison above was false)


def _convolve(a, v, mode="full"):
    """np.convolve of two 1-D arrays (either traced): sums of shifted products."""
    a = _traced(a) if is_traced(a) else np.asarray(a, dtype=float)
    v = _traced(v) if is_traced(v) else np.asarray(v, dtype=float)
    if np.ndim(a) != 1 or np.ndim(v) != 1 or not len(a) or not len(v):
        raise ValueError("np.convolve: a and v must be non-empty 1-D arrays")
    if len(v) > len(a):
        a, v = v, a
    n, m = len(a), len(v)
    full = np.zeros(n + m - 1, like=a if is_traced(a) else v)
    for j in range(m):
        full[j: j + n] = full[j: j + n] + a * v[j]
    if mode == "full":
        return full
    if mode == "same":
        start = (m - 1) // 2
        return full[start: start + n]
    if mode == "valid":
        return full[m - 1: n]
    raise ValueError(f"np.convolve: mode must be 'full', 'same' or 'valid', got {mode!r}")


def _correlate(a, v, mode="valid"):
    """np.correlate: the convolution with ``v`` reversed, cut as NumPy cuts it
    (for 'same' with the longer ``v``, NumPy's window is the other middle)."""
    v = np.flip(v) if is_traced(v) else np.asarray(v, dtype=float)[::-1]
    full = _convolve(a, v, "full")
    n, k = max(np.shape(a)[0], np.shape(v)[0]), min(np.shape(a)[0], np.shape(v)[0])
    if mode == "full":
        return full
    if mode == "valid":
        return full[k - 1: len(full) - (k - 1)]
    if mode == "same":
        start = (k - 1) // 2 if np.shape(a)[0] >= np.shape(v)[0] else k - 1 - (k - 1) // 2
        return full[start: start + n]
    raise ValueError(f"np.correlate: mode must be 'full', 'same' or 'valid', got {mode!r}")


def _meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    arrays = [_traced(x).reshape(-1) if is_traced(x) else np.asarray(x, dtype=float).reshape(-1) for x in xi]
    nd = len(arrays)
    shapes = []
    for i, x in enumerate(arrays):
        s = [1] * nd
        s[i] = -1
        shapes.append(s)
    if indexing == "xy" and nd > 1:
        shapes[0][0], shapes[0][1] = 1, -1
        shapes[1][0], shapes[1][1] = -1, 1
    out = [np.reshape(x, s) for x, s in zip(arrays, shapes)]
    if sparse:
        return tuple(out)
    return tuple(np.broadcast_arrays(*out))


def _logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    y = np.linspace(start, stop, num, endpoint=endpoint, axis=axis)
    return np.power(base, y)


def _take_along_axis(arr, indices, axis=-1):
    if is_traced(indices):
        raise UnsupportedOperationError("np.take_along_axis with traced indices: the positions must be constants")
    arr = _traced(arr)
    indices = np.asarray(indices)
    if axis is None:
        arr, axis = arr.reshape(-1), 0
    axis = axis % arr.ndim
    if indices.ndim != arr.ndim:
        raise ValueError("np.take_along_axis: indices and arr must have the same number of dimensions")
    shape = [np.broadcast_shapes((a,), (i,))[0] if k != axis else i
             for k, (a, i) in enumerate(zip(arr.shape, indices.shape))]  # NumPy broadcasts the other axes
    indices = np.broadcast_to(indices, shape)
    grids = list(np.ix_(*[np.arange(d) for d in shape]))
    grids = [np.broadcast_to(g, shape) for g in grids]
    grids[axis] = indices
    return arr[tuple(grids)]


def _vander(x, N=None, increasing=False):
    x = _traced(x)
    n = len(x) if N is None else N
    powers = [np.ones_like(x) if k == 0 else x ** k for k in range(n)]
    return np.stack(powers if increasing else powers[::-1], axis=1)


implements(np.median)(_median)
implements(np.percentile)(_percentile)
implements(np.quantile)(_quantile)
implements(np.ptp)(_ptp)
implements(np.average)(_average)
implements(np.nansum)(_nan_reduction(np.sum, 0.0))
implements(np.nanprod)(_nan_reduction(np.prod, 1.0))
implements(np.nanmean)(_nanmean)
implements(np.nanmax)(_nan_extreme(np.fmax))
implements(np.nanmin)(_nan_extreme(np.fmin))
implements(np.any)(_logical_reduce("or", "any"))
implements(np.all)(_logical_reduce("and", "all"))
implements(np.isclose)(_isclose)
implements(np.cov)(_cov)
implements(np.corrcoef)(_corrcoef)
implements(np.interp)(_interp)
implements(np.convolve)(_convolve)
implements(np.correlate)(_correlate)
implements(np.meshgrid)(_meshgrid)
implements(np.logspace)(_logspace)
implements(np.take_along_axis)(_take_along_axis)
implements(np.vander)(_vander)

# ufuncs as compositions of ops (piecewise constant parts: derivative 0 wherever it exists)
defufunc("floor_divide", lambda a, b: make("where", make("eq", b, 0.0), make("div", a, b),  # a / 0: inf or NaN
                                            make("rint", make("div", make("sub", a, make("mod", a, b)), b))))
defufunc("signbit", lambda x: make("lt", make("copysign", 1.0, x), 0.0))
def _ldexp(x, n):
    """x * 2**n in two halves, so 2**n itself never overflows or underflows
    where the result does not (np.ldexp(1e-300, 1100), np.ldexp(0.75, 1024))."""
    half = make("floor", make("mul", n, 0.5))
    return make("mul", make("mul", x, make("pow", 2.0, half)), make("pow", 2.0, make("sub", n, half)))


defufunc("ldexp", _ldexp)
defunction(np.i0, lambda x: make("i0", x), elementwise=True)  # NumPy's Bessel I0 (a function): SciPy's ufunc's op
