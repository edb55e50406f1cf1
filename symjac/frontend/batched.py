"""Batched arrays for `symjac.dlfeval`: MATLAB ``dlarray`` semantics over one
sample's graph.

A `BatchedArray` has its full batched shape, as a MATLAB ``dlarray`` does,
but holds the graph of *one* sample (the batch axis is remembered, not
expanded).  NumPy code on it is mapped to the per-sample computation, the
way ``jax.vmap``'s batching rules work, run backwards: elementwise math and
broadcasting, ``@``/``einsum`` with shared weights, reductions, reshapes,
transposes and indexing that keep the batch axis whole.  Sums and means over
the batch give a `Reduced` value (a loss).  An operation that would mix
samples raises `BatchMixingError` naming it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers

import numpy as np

from symjac.errors import SymjacError, UnsupportedOperationError
from symjac.frontend.traced import TracedArray, _nodes, is_tensor, scalar_array
from symjac.ir import FUNCTIONS, make, ufunc_builder

__all__ = ["BatchedArray", "Reduced", "BatchMixingError", "node_array", "inverse_batch"]

# The traced scalar that holds 1 / (batch size) at run time, while `dlfeval`
# traces: a mean over the batch multiplies by it instead of dividing by the
# batch size of the trace, so the kernel does not depend on the batch size
# (a new batch size re-traces, then finds the same kernel compiled).
_INVERSE_BATCH = contextvars.ContextVar("symjac_inverse_batch", default=None)


@contextlib.contextmanager
def inverse_batch(node):
    """Context in which means over the batch scale by the traced ``node``."""
    token = _INVERSE_BATCH.set(node)
    try:
        yield
    finally:
        _INVERSE_BATCH.reset(token)



class BatchMixingError(SymjacError, ValueError):
    """An operation would combine different samples of a batch."""


def node_array(result):
    """An object array from NumPy's result on node arrays (a lone node when 0-d)."""
    return result if isinstance(result, np.ndarray) else scalar_array(result)


def _traced(x):
    """A per-sample TracedArray (tensors stay whole) from a model value."""
    if isinstance(x, TracedArray):
        return x
    return TracedArray(_nodes(x))


class BatchedArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A traced array with a batch axis: one sample's nodes plus where the
    batch axis sits (``bpos``; None for an argument shared by all samples)."""

    __array_priority__ = 1001

    def __init__(self, nodes, bpos, batch):
        # per: one sample's value, a TracedArray (a whole tensor or an array of scalar nodes)
        self.per = nodes if isinstance(nodes, TracedArray) else TracedArray(nodes)
        self.bpos = bpos
        self.batch = batch

    @property
    def nodes(self):
        return self.per.nodes

    @property
    def shape(self):
        s = self.per.shape
        return s if self.bpos is None else s[: self.bpos] + (self.batch,) + s[self.bpos:]

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    dtype = property(lambda self: np.dtype(np.float64))
    T = property(lambda self: self.transpose())

    def __repr__(self):
        where = "shared" if self.bpos is None else f"batch axis {self.bpos}"
        return f"BatchedArray(shape={self.shape}, {where})"

    def __len__(self):
        return self.shape[0]

    def __bool__(self):
        return bool(self.per)  # raises the np.where advice

    # -- shape manipulation -------------------------------------------------
    def transpose(self, *axes):
        n = self.ndim
        axes = tuple(range(n))[::-1] if not axes else (axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes)
        axes = tuple(a % n for a in axes)
        if self.bpos is None:
            return BatchedArray(self.per.transpose(axes), None, self.batch)
        new_bpos = axes.index(self.bpos)
        per = [a - (a > self.bpos) for a in axes if a != self.bpos]
        return BatchedArray(self.per.transpose(per), new_bpos, self.batch)

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], numbers.Integral) else shape
        shape = list(shape)
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            shape[shape.index(-1)] = self.size // known if known else 0
        if self.bpos is None:
            return BatchedArray(self.per.reshape(shape), None, self.batch)
        before = math.prod(self.shape[: self.bpos])
        acc = 1
        for q, d in enumerate(shape):
            if acc == before and d == self.batch:
                per = shape[:q] + shape[q + 1:]
                if math.prod(per) == self.per.size:
                    return BatchedArray(self.per.reshape(per), q, self.batch)
            acc *= d
        raise BatchMixingError(
            f"reshape from {self.shape} to {tuple(shape)} does not keep the batch axis (axis {self.bpos}, "
            f"size {self.batch}) whole; reshape only the other axes")

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if self.bpos is None:
            return BatchedArray(node_array(self.nodes[key]), None, self.batch)
        consuming = sum(1 for k in key if k is not None and k is not Ellipsis)
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - consuming) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - consuming)
        per_key, out_axis, in_dim, bpos = [], 0, 0, None
        for k in key:
            if k is None:  # np.newaxis: a new output axis, no input axis used
                per_key.append(None)
                out_axis += 1
                continue
            if in_dim == self.bpos:
                if not (isinstance(k, slice) and k == slice(None)):
                    raise BatchMixingError(
                        f"indexing the batch axis (axis {self.bpos}) with {k!r} selects samples; index only the "
                        "other axes and keep ':' on the batch axis")
                bpos = out_axis
            else:
                per_key.append(k)
            if not isinstance(k, numbers.Integral):
                out_axis += 1
            in_dim += 1
        return BatchedArray(node_array(self.nodes[tuple(per_key)]), bpos, self.batch)

    # -- reductions ------------------------------------------------------------
    def _reduce(self, fn, axis, keepdims, what):
        n = self.ndim
        axes = tuple(range(n)) if axis is None else tuple(a % n for a in (axis if isinstance(axis, tuple) else (axis,)))
        if self.bpos is not None and self.bpos in axes:
            if what not in ("sum", "mean") or keepdims:
                raise BatchMixingError(
                    f"{what} over the batch axis (axis {self.bpos}) mixes samples; only sums and means over the "
                    "batch (without keepdims) are supported, as batch-free values such as a loss")
            others = tuple(a - (a > self.bpos) for a in axes if a != self.bpos)
            terms = _nodes(np.sum(self.per, axis=others)) if others else self.nodes
            if what == "mean":
                count = self.batch * math.prod(self.per.shape[a] for a in others)
                if count == 0:  # the mean of nothing is NaN, as in NumPy and MATLAB
                    return Reduced(node_array(terms), node_array(np.full(np.shape(terms), make("div", 0.0, 0.0))),
                                   self.batch)
                inv, rest = _INVERSE_BATCH.get(), count // self.batch
                if inv is None:
                    terms = np.frompyfunc(lambda t: make("div", t, float(count)), 1, 1)(terms)
                elif rest == 1:
                    terms = np.frompyfunc(lambda t: make("mul", t, inv), 1, 1)(terms)
                else:
                    terms = np.frompyfunc(lambda t: make("div", make("mul", t, inv), float(rest)), 1, 1)(terms)
            return Reduced(node_array(terms), None, self.batch)
        per = tuple(a - (self.bpos is not None and a > self.bpos) for a in axes)
        result = fn(self.per, axis=per, keepdims=keepdims)
        bpos = self.bpos
        if bpos is not None and not keepdims:
            bpos -= sum(1 for a in axes if a < self.bpos)
        return BatchedArray(_traced(result), bpos, self.batch)

    def sum(self, axis=None, keepdims=False):
        return self._reduce(np.sum, axis, keepdims, "sum")

    def squeeze(self, axis=None):
        axes = tuple(a for a in range(self.ndim) if self.shape[a] == 1) if axis is None else \
            tuple(a % self.ndim for a in (axis if isinstance(axis, tuple) else (axis,)))
        if self.bpos is not None and self.bpos in axes and self.batch != 1:
            raise BatchMixingError(f"squeeze of the batch axis (axis {self.bpos})")
        axes = tuple(a for a in axes if a != self.bpos)
        return self.reshape(tuple(d for a, d in enumerate(self.shape) if a not in axes))

    def mean(self, axis=None, keepdims=False):
        return self._reduce(np.mean, axis, keepdims, "mean")

    def prod(self, axis=None, keepdims=False):
        return self._reduce(np.prod, axis, keepdims, "prod")

    def max(self, axis=None, keepdims=False):
        return self._reduce(np.max, axis, keepdims, "max")

    def min(self, axis=None, keepdims=False):
        return self._reduce(np.min, axis, keepdims, "min")

    # -- NumPy protocols -------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            raise UnsupportedOperationError(f"np.{ufunc.__name__}.{method} with {sorted(kwargs)} on a batched array")
        if any(isinstance(x, Reduced) for x in inputs):
            return NotImplemented
        if ufunc.__name__ == "matmul":
            return _matmul(*inputs)
        builder = ufunc_builder(ufunc.__name__)
        if builder is None:
            raise UnsupportedOperationError(f"the ufunc {ufunc.__name__!r} is not supported by symjac's tracer")
        per, bpos, batch = _align(inputs, ufunc.__name__)
        if any(is_tensor(p) for p in per):
            return BatchedArray(_traced(ufunc(*per)), bpos, batch)
        per = [_nodes(p) for p in per]
        result = np.frompyfunc(builder, len(per), 1)(*per)
        return BatchedArray(node_array(result), bpos, batch)

    def __array_function__(self, func, types, args, kwargs):
        impl = _FUNCTIONS.get(func)
        builder, elementwise = FUNCTIONS.get(func, (None, False))
        if impl is None and elementwise and args and args[0] is self:  # np.sinc, np.round: entry by entry
            return BatchedArray(func(self.per, *args[1:], **kwargs), self.bpos, self.batch)
        if impl is None:
            raise UnsupportedOperationError(
                f"np.{func.__name__} is not supported on batched arrays inside dlfeval yet")
        return impl(*args, **kwargs)


def _align(inputs, what):
    """Per-sample operands broadcast against each other, and the result's batch axis."""
    ndim = max(np.ndim(x) if not isinstance(x, BatchedArray) else x.ndim for x in inputs)
    bpos, batch = None, None
    for x in inputs:
        if isinstance(x, BatchedArray) and x.bpos is not None:
            p = x.bpos + ndim - x.ndim
            if bpos is not None and p != bpos:
                raise BatchMixingError(f"{what}: operands have their batch axes at different positions "
                                       f"({bpos} and {p} after broadcasting); transpose one of them")
            bpos, batch = p, x.batch
    per = []
    for x in inputs:
        if isinstance(x, BatchedArray):
            batch = batch if batch is not None else x.batch
            full = (1,) * (ndim - x.ndim) + x.per.shape if x.bpos is not None else None
            if x.bpos is not None:
                per.append(x.per.reshape(full))
                continue
            arr, shape = x.per, x.shape
        else:
            arr = _nodes(x)
            shape = arr.shape
        shape = (1,) * (ndim - len(shape)) + tuple(shape)
        arr = arr.reshape(shape)
        if bpos is not None:
            if shape[bpos] != 1:
                raise BatchMixingError(f"{what}: an operand without a batch axis has size {shape[bpos]} along the "
                                       f"batch axis {bpos}; pass per-sample data as a batched argument")
            arr = arr.reshape(shape[:bpos] + shape[bpos + 1:])
        per.append(arr)
    return per, bpos, batch


def _matmul(a, b):
    def parts(x):
        if isinstance(x, BatchedArray):
            return x.per, x.bpos, x.ndim, x.batch
        arr = _traced(x)
        return arr, None, arr.ndim, None

    an, ab, ad, B1 = parts(a)
    bn, bb, bd, B2 = parts(b)
    if ad > 2 or bd > 2:
        raise UnsupportedOperationError("@ on batched arrays of more than 2 dimensions; use np.einsum")
    sa = "ij"[2 - ad:] if ad == 2 else "j"
    sb = "jk" if bd == 2 else "j"
    out = (sa[0] if ad == 2 else "") + (sb[1] if bd == 2 else "")
    return _einsum(f"{sa},{sb}->{out}", (an, ab, B1), (bn, bb, B2))


def _einsum(spec, *ops):
    """einsum of (nodes, bpos, batch) operands; the batch letter must reach the output."""
    ins, out = spec.replace(" ", "").split("->")
    subs = ins.split(",")
    if "." in spec:
        raise UnsupportedOperationError("einsum with '...' on batched arrays; write the indices out")
    letter, batch = None, None
    per_subs = []
    for s, (nodes, bpos, B) in zip(subs, ops):
        if bpos is None:
            per_subs.append(s)
            continue
        l = s[bpos]
        if letter is not None and l != letter:
            raise BatchMixingError(f"einsum {spec!r}: the batch axes carry different indices ({letter}, {l})")
        letter, batch = l, B
        per_subs.append(s[:bpos] + s[bpos + 1:])
    if letter is None:
        result = np.einsum(spec, *[o[0] for o in ops])
        return BatchedArray(_traced(result), None, None)
    for s, (nodes, bpos, B) in zip(subs, ops):
        if bpos is None and letter in s:
            raise BatchMixingError(f"einsum {spec!r}: a shared operand uses the batch index {letter!r}")
    if letter not in out:  # a contraction over the batch: a batch-free sum, e.g. R @ R.T on "CB" data
        per_spec = ",".join(per_subs) + "->" + out
        return Reduced(_nodes(np.einsum(per_spec, *[o[0] for o in ops])), None, batch)
    per_out = out.replace(letter, "")
    per_spec = ",".join(per_subs) + "->" + per_out
    result = np.einsum(per_spec, *[o[0] for o in ops])
    return BatchedArray(_traced(result), out.index(letter), batch)


def _einsum_public(spec, *operands, **kwargs):
    ops = [(x.per, x.bpos, x.batch) if isinstance(x, BatchedArray) else (_traced(x), None, None) for x in operands]
    return _einsum(spec, *ops)


def _on(method):
    return lambda a, *args, **kw: getattr(a if isinstance(a, BatchedArray) else BatchedArray(_nodes(a), None, None),
                                          method)(*args, **kw)


def _where(c, a, b):
    per, bpos, batch = _align((c, a, b), "where")
    if any(is_tensor(p) for p in per):
        return BatchedArray(_traced(np.where(*per)), bpos, batch)
    per = [_nodes(p) for p in per]
    result = np.frompyfunc(lambda ci, ai, bi: make("where", ci, ai, bi), 3, 1)(*per)
    return BatchedArray(node_array(result), bpos, batch)


_FUNCTIONS = {
    np.sum: _on("sum"), np.mean: _on("mean"), np.prod: _on("prod"), np.max: _on("max"), np.min: _on("min"),
    np.amax: _on("max"), np.amin: _on("min"), np.reshape: _on("reshape"), np.transpose: _on("transpose"),
    np.einsum: _einsum_public, np.matmul: _matmul, np.dot: _matmul, np.where: _where,
    np.squeeze: _on("squeeze"),
}


class Reduced(np.lib.mixins.NDArrayOperatorsMixin):
    """A batch-free value that is a sum over the batch: ``sum_b terms_b + offset``.

    ``terms`` are one sample's nodes; ``offset`` (None or nodes of shared
    arguments only) is added once.  Sums and means over the batch make one;
    it can be added to, scaled by shared values and indexed, and
    differentiated with `dlgradient`.  A nonlinear function of it, or
    combining it with per-sample data, would need every sample at once and
    raises `BatchMixingError`.
    """

    __array_priority__ = 1002

    def __init__(self, terms, offset, batch, whole=None):
        # whole: a tensor node whose entries are the terms (a weight's gradient), made only if asked for
        self._terms = terms
        self.whole = whole
        self.offset = offset
        self.batch = batch

    @property
    def terms(self):
        if self._terms is None and self.whole is not None:
            self._terms = TracedArray(tensor=self.whole).nodes
        return self._terms

    def is_whole(self):
        """True while the terms are the tensor ``whole`` and no entry was asked for."""
        return self._terms is None and self.whole is not None

    shape = property(lambda self: self.whole.shape if self.is_whole() else self.terms.shape)
    ndim = property(lambda self: len(self.shape))
    dtype = property(lambda self: np.dtype(np.float64))

    def __repr__(self):
        return f"Reduced(shape={self.shape}, sum over a batch of {self.batch})"

    def __bool__(self):
        return bool(TracedArray(self.terms))

    def __getitem__(self, key):
        off = None if self.offset is None else node_array(self.offset[key])
        return Reduced(node_array(self.terms[key]), off, self.batch)

    def sum(self, axis=None, keepdims=False):
        def red(a):
            return None if a is None else _nodes(np.sum(TracedArray(a), axis=axis, keepdims=keepdims))
        return Reduced(red(self.terms), red(self.offset), self.batch)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = ufunc.__name__
        if method != "__call__" or kwargs or name not in ("add", "subtract", "multiply", "true_divide",
                                                          "divide", "negative", "positive"):
            raise BatchMixingError(
                f"np.{name} of a value reduced over the batch would need every sample at once; write the loss "
                "as a sum or mean over the batch of per-sample terms (plus terms of shared weights)")
        reduced = [x for x in inputs if isinstance(x, Reduced)]
        others = [x for x in inputs if not isinstance(x, Reduced)]
        for x in others:
            if isinstance(x, BatchedArray) and x.bpos is not None:
                raise BatchMixingError(f"np.{name} combines a value reduced over the batch with per-sample data "
                                       f"(batch axis {x.bpos}); that mixes samples")
        batch = reduced[0].batch
        if name in ("negative", "positive"):
            r = reduced[0]
            f = (lambda a: _neg(a)) if name == "negative" else (lambda a: a)
            return Reduced(f(r.terms), None if r.offset is None else f(r.offset), batch)
        a, b = inputs
        if name in ("add", "subtract"):
            sign = 1.0 if name == "add" else -1.0
            terms, offset = None, None
            for x, w in ((a, 1.0), (b, sign)):
                if isinstance(x, Reduced):
                    terms = _combine(terms, x.terms, w)
                    offset = _combine(offset, x.offset, w)
                else:
                    offset = _combine(offset, _shared_nodes(x), w)
            return Reduced(terms, offset, batch)
        if len(reduced) == 2:
            raise BatchMixingError(f"np.{name} of two values reduced over the batch is not a sum over samples")
        if name in ("true_divide", "divide") and isinstance(b, Reduced):
            raise BatchMixingError("dividing by a value reduced over the batch is not a sum over samples")
        r, other = (a, b) if isinstance(a, Reduced) else (b, a)
        k = _shared_nodes(other)
        op = "mul" if name == "multiply" else "div"
        f = np.frompyfunc(lambda t, c: make(op, t, c), 2, 1)
        return Reduced(node_array(f(r.terms, k)), None if r.offset is None else node_array(f(r.offset, k)), batch)


def _neg(arr):
    return node_array(np.frompyfunc(lambda t: make("neg", t), 1, 1)(arr))


def _shared_nodes(x):
    return x.nodes if isinstance(x, BatchedArray) else _nodes(x)


def _combine(acc, arr, w):
    if arr is None:
        return acc
    arr = arr if w == 1.0 else _neg(arr)
    if acc is None:
        return arr
    return node_array(np.frompyfunc(lambda p, q: make("add", p, q), 2, 1)(acc, arr))


