"""NumPy functions that pick values by their values: ``np.sort``,
``np.partition``, ``np.select`` and ``np.nan_to_num``.

A sort is a permutation that depends on the data, which a trace taken once
cannot follow; a *sorting network* can: a fixed sequence of compare-exchanges
(Batcher's odd-even merge sort), each two ``where`` selections, sorts any
input.  Its derivative follows the values, as a permutation's does (ties
give one of the equal values' tangents).  NaN sorts last, as in NumPy.  The
network has about ``n log2(n)^2 / 4`` compare-exchanges for ``n`` values
along the axis: cheap for the short axes models sort (a few to a few
hundred values).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

from symjac.errors import UnsupportedOperationError
from symjac.frontend.traced import TracedArray, _nodes, implements
from symjac.ir import defunction, make

__all__ = ["sorting_network"]


@functools.cache
def sorting_network(n):
    """The compare-exchange pairs ``(i, j)``, ``i < j``, of Batcher's odd-even
    merge sort of ``n`` items (any ``n``), in order.

    >>> sorting_network(3)
    ((0, 1), (0, 2), (1, 2))
    """
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _exchange(a, b):
    """``(low, high)`` of two scalar nodes, NaN counted largest (NumPy's order)."""
    swap = make("and", make("not", make("le", a, b)), make("not", make("isnan", b)))
    return make("where", swap, b, a), make("where", swap, a, b)


def _sorted_lanes(nodes, axis):
    """``nodes`` (an object array) sorted along ``axis`` by the network."""
    lanes = np.moveaxis(nodes, axis, -1)
    out = np.empty(lanes.shape, dtype=object)
    pairs = sorting_network(lanes.shape[-1])
    for idx in np.ndindex(lanes.shape[:-1]):
        row = list(lanes[idx])
        for i, j in pairs:
            row[i], row[j] = _exchange(row[i], row[j])
        out[idx] = row
    return np.moveaxis(out, -1, axis)


def _sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """np.sort: the values in ascending order along ``axis`` (None: flattened)."""
    if order is not None:
        raise UnsupportedOperationError("np.sort(..., order=...) sorts structured arrays; traced arrays hold numbers")
    nodes = _nodes(a)
    if axis is None:
        nodes, axis = nodes.reshape(-1), 0
    if nodes.ndim == 0:
        raise np.exceptions.AxisError("np.sort of a 0-d array needs axis=None")
    return TracedArray(_sorted_lanes(nodes, axis))


def _partition(a, kth, axis=-1, kind="introselect", order=None):
    """np.partition: the sorted array, which is one of the arrays np.partition may
    return (the k-th value in place, no larger one before it, no smaller one after)."""
    n = _nodes(a).size if axis is None else np.shape(_nodes(a))[axis]
    for k in np.ravel(kth):
        if not isinstance(k, numbers.Integral) or not -n <= k < n:
            raise ValueError(f"np.partition: kth={kth!r} is out of bounds for {n} values (or not an integer)")
    return _sort(a, axis=axis, order=order)


def _select(condlist, choicelist, default=0):
    """np.select: for each entry, the choice of the first true condition, else ``default``."""
    if len(condlist) != len(choicelist):
        raise ValueError("np.select: list of cases must be same length as list of conditions")
    if not condlist:
        raise ValueError("np.select: select with an empty condition list is not possible")
    result = default
    for c, v in zip(reversed(condlist), reversed(choicelist)):
        result = np.where(c, v, result)
    shape = np.broadcast_shapes(*[np.shape(x) for x in (*condlist, *choicelist, default)])
    return np.broadcast_to(result, shape) if np.shape(result) != shape else result


def _nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """np.nan_to_num of one node: NaN -> ``nan``, infinities -> ``posinf`` and
    ``neginf``, by default the largest finite numbers of the kernel's dtype."""
    for name, v in (("nan", nan), ("posinf", posinf), ("neginf", neginf)):
        if v is not None and not isinstance(v, numbers.Real):
            raise UnsupportedOperationError(f"np.nan_to_num({name}=...) takes a number on traced arrays, "
                                            f"got {type(v).__name__}")
    r = make("nan_to_num", x)
    if float(nan) != 0.0:
        r = make("where", make("isnan", x), float(nan), r)
    if posinf is not None:
        r = make("where", make("and", make("isinf", x), make("gt", x, 0.0)), float(posinf), r)
    if neginf is not None:
        r = make("where", make("and", make("isinf", x), make("lt", x, 0.0)), float(neginf), r)
    return r


implements(np.sort)(_sort)
implements(np.partition)(_partition)
implements(np.select)(_select)
defunction(np.nan_to_num, _nan_to_num, elementwise=True)
