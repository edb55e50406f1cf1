"""MATLAB-style batched tracing: `dlfeval` and the ``dljacobian`` family.

Inside ``dlfeval(fn, *args, batch_axis=...)`` each array argument is a
`BatchedArray`: it has its full batched shape, as a MATLAB ``dlarray``
does, but holds the graph of *one* sample (the batch axis is remembered, not
expanded).  NumPy code on it is mapped to the per-sample computation, the
way ``jax.vmap``'s batching rules work, run backwards: elementwise math and
broadcasting, ``@``/``einsum`` with shared weights, reductions, reshapes,
transposes and indexing that keep the batch axis whole.  An operation that
would mix samples (a reduction or contraction over the batch axis, a
reshape that merges it) raises an error naming it.  The per-sample graph is
then compiled once per (shapes, dtypes, batch axes) into one kernel.

The operators follow MATLAB R2024b with 0-based ``dim``:
``dljacobian(u, x, dim)``, ``dldivergence(u, x, dim)``,
``dllaplacian(u, x, dim)``.  ``enable_higher_derivatives=False`` makes the
result a constant for any later differentiation.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict

import numpy as np

from symjac.differentiate import jacobian_nodes
from symjac.errors import SymjacError, UnsupportedOperationError
from symjac.interpret import evaluate_nodes
from symjac.graph import BUILDING, Graph
from symjac.kernel import Kernel, refuse_container, resolve_backend
from symjac.laplacian import laplacian_nodes
from symjac.simplify import ZERO, make
from symjac.tracer import UFUNCS, TracedArray, _is_tensor, _nodes, _scalar_array, call_traced, make_inputs

__all__ = ["BatchedArray", "Reduced", "dlfeval", "dljacobian", "dldivergence", "dllaplacian", "dlgradient",
           "BatchMixingError"]


class BatchMixingError(SymjacError, ValueError):
    """An operation would combine different samples of a batch."""


def _obj(result):
    """An object array from NumPy's result on node arrays (a lone node when 0-d)."""
    return result if isinstance(result, np.ndarray) else _scalar_array(result)


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
            return BatchedArray(_obj(self.nodes[key]), None, self.batch)
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
        return BatchedArray(_obj(self.nodes[tuple(per_key)]), bpos, self.batch)

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
                    return Reduced(_obj(terms), _obj(np.full(np.shape(terms), make("div", 0.0, 0.0))),
                                   self.batch)
                terms = np.frompyfunc(lambda t: make("div", t, float(count)), 1, 1)(terms)
            return Reduced(_obj(terms), None, self.batch)
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
        builder = UFUNCS.get(ufunc.__name__)
        if builder is None:
            raise UnsupportedOperationError(f"the ufunc {ufunc.__name__!r} is not supported by symjac's tracer")
        per, bpos, batch = _align(inputs, ufunc.__name__)
        if any(_is_tensor(p) for p in per):
            return BatchedArray(_traced(ufunc(*per)), bpos, batch)
        per = [_nodes(p) for p in per]
        result = np.frompyfunc(builder, len(per), 1)(*per)
        return BatchedArray(_obj(result), bpos, batch)

    def __array_function__(self, func, types, args, kwargs):
        impl = _FUNCTIONS.get(func)
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
    if any(_is_tensor(p) for p in per):
        return BatchedArray(_traced(np.where(*per)), bpos, batch)
    per = [_nodes(p) for p in per]
    result = np.frompyfunc(lambda ci, ai, bi: make("where", ci, ai, bi), 3, 1)(*per)
    return BatchedArray(_obj(result), bpos, batch)


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

    def __init__(self, terms, offset, batch):
        self.terms = terms
        self.offset = offset
        self.batch = batch

    shape = property(lambda self: self.terms.shape)
    ndim = property(lambda self: self.terms.ndim)
    dtype = property(lambda self: np.dtype(np.float64))

    def __repr__(self):
        return f"Reduced(shape={self.shape}, sum over a batch of {self.batch})"

    def __bool__(self):
        return bool(TracedArray(self.terms))

    def __getitem__(self, key):
        off = None if self.offset is None else _obj(self.offset[key])
        return Reduced(_obj(self.terms[key]), off, self.batch)

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
        return Reduced(_obj(f(r.terms, k)), None if r.offset is None else _obj(f(r.offset, k)), batch)


def _neg(arr):
    return _obj(np.frompyfunc(lambda t: make("neg", t), 1, 1)(arr))


def _shared_nodes(x):
    return x.nodes if isinstance(x, BatchedArray) else _nodes(x)


def _combine(acc, arr, w):
    if arr is None:
        return acc
    arr = arr if w == 1.0 else _neg(arr)
    if acc is None:
        return arr
    return _obj(np.frompyfunc(lambda p, q: make("add", p, q), 2, 1)(acc, arr))


def dlgradient(y, *xs, enable_higher_derivatives=False):
    """Gradient of the scalar ``y`` with respect to each of ``xs`` (same shapes).

    ``y`` is typically a loss summed or averaged over the batch.  For a batched
    ``x`` the gradient is per sample (only sample b's term depends on x_b); for
    a shared ``x`` (weights) it is the sum over the batch, reduced inside the
    kernel.  With ``enable_higher_derivatives=False`` (MATLAB's default) the
    result is a constant for later differentiation.

    >>> import numpy as np, symjac
    >>> def loss(X, w):
    ...     L = np.mean((w @ X) ** 2)
    ...     return L, symjac.dlgradient(L, w)
    >>> X = np.array([[1.0, 2.0], [0.0, 1.0]])
    >>> symjac.dlfeval(loss, X, np.array([1.0, 1.0]), batch_axis=(-1, None), backend="numpy")
    (array(5.), array([7., 3.]))
    """
    if not xs:
        raise TypeError("dlgradient needs at least one x")
    if isinstance(y, BatchedArray):
        if y.bpos is not None:
            raise ValueError(f"dlgradient: y must be a scalar, got per-sample values of shape {y.shape}; "
                             "reduce them over the batch first (np.sum or np.mean)")
        terms, offset, batch = None, y.nodes, y.batch
    elif isinstance(y, Reduced):
        terms, offset, batch = y.terms, y.offset, y.batch
    else:
        raise TypeError(f"dlgradient: y must be a traced value inside symjac.dlfeval, got {type(y).__name__}")
    if (terms if terms is not None else offset).shape != ():
        raise ValueError(f"dlgradient: y must be a scalar, got shape {(terms if terms is not None else offset).shape}")
    for k, x in enumerate(xs):
        if not isinstance(x, BatchedArray):
            raise TypeError(f"dlgradient: x number {k} must be a traced array inside symjac.dlfeval, "
                            f"got {type(x).__name__}")
    variables = [n for x in xs for n in x.nodes.ravel()]
    gt = jacobian_nodes([terms[()]], variables, "rev")[0] if terms is not None else None
    go = jacobian_nodes([offset[()]], variables, "rev")[0] if offset is not None else None
    results, c = [], 0
    for x in xs:
        size = x.nodes.size
        part_t = None if gt is None else _freeze(_obj(gt[c: c + size].reshape(x.nodes.shape)), enable_higher_derivatives)
        part_o = None if go is None else _freeze(_obj(go[c: c + size].reshape(x.nodes.shape)), enable_higher_derivatives)
        c += size
        if x.bpos is not None:
            if part_o is not None and any(n is not ZERO for n in part_o.ravel()):
                raise AssertionError("a batch-free offset cannot depend on batched data")
            results.append(BatchedArray(part_t if part_t is not None else _obj(np.full(x.nodes.shape, ZERO)),
                                        x.bpos, x.batch))
        elif part_t is None:
            results.append(BatchedArray(part_o, None, batch))
        else:
            results.append(Reduced(part_t, part_o, batch))
    return tuple(results) if len(results) > 1 else results[0]


# -- the operators -------------------------------------------------------------

def _check_batched(v, name):
    if not isinstance(v, BatchedArray):
        raise TypeError(f"{name} must be a traced array inside symjac.dlfeval, got {type(v).__name__}")


def _check_u(u, dim, what):
    _check_batched(u, "u")
    if u.ndim != 2:
        raise ValueError(f"{what}: u must be 2-D (channels x batch), got shape {u.shape}")
    if dim not in (0, 1):
        raise ValueError(f"{what}: dim must be 0 or 1 (0-based; MATLAB's dim=1 is dim=0), got {dim!r}")
    if u.bpos != 1 - dim:
        raise ValueError(f"{what}: dim={dim} makes axis {1 - dim} of u its batch axis, but u's batch axis is "
                         f"{u.bpos}; use dim={1 - u.bpos}" if u.bpos is not None else
                         f"{what}: u has no batch axis")


def _check_x(u, x, what):
    _check_batched(x, "x")
    if x.bpos is not None and x.batch != u.batch:
        raise ValueError(f"{what}: x has batch size {x.batch} but u has {u.batch}")


def _freeze(nodes, enable):
    if enable or not nodes.size:
        return nodes
    return _obj(np.frompyfunc(lambda n: make("stop", n), 1, 1)(nodes))


def dljacobian(u, x, dim, *, enable_higher_derivatives=True):
    """Jacobian of the 2-D batched ``u`` (operation axis ``dim``) with respect
    to ``x``: shape ``(u.shape[dim],) + x.shape``, entry ``[i, j...]`` =
    d u_i / d x_j within each sample (MATLAB ``dljacobian`` with 0-based dim).

    >>> import numpy as np, symjac
    >>> def model(X):
    ...     U = np.sin(X) * X[0]
    ...     return symjac.dljacobian(U, X, 0)
    >>> symjac.dlfeval(model, np.array([[0.0, 1.0], [2.0, 3.0]]), backend="numpy").shape
    (2, 2, 2)
    """
    _check_u(u, dim, "dljacobian")
    _check_x(u, x, "dljacobian")
    if x.bpos is None:
        raise ValueError("dljacobian: x has no batch axis; x must be batched like u (for shared "
                         "parameters the derivative of a batch-reduced loss is dlgradient's job)")
    J = jacobian_nodes(list(u.nodes.ravel()), list(x.nodes.ravel()), "auto")
    J = _freeze(J.reshape((u.nodes.size,) + x.nodes.shape), enable_higher_derivatives)
    return BatchedArray(_obj(J), 1 + x.bpos, u.batch)


def dldivergence(u, x, dim, *, enable_higher_derivatives=True):
    """Per-sample divergence sum_i d u_i / d x_i; u's shape with ``u.shape[dim]``
    replaced by 1.  x must hold as many elements per sample as u has channels."""
    _check_u(u, dim, "dldivergence")
    _check_x(u, x, "dldivergence")
    if x.bpos is None or x.nodes.size != u.nodes.size:
        raise ValueError(f"dldivergence: x must be batched with {u.nodes.size} elements per sample (u's channel "
                         f"count), got shape {x.shape}")
    J = jacobian_nodes(list(u.nodes.ravel()), list(x.nodes.ravel()), "fwd")
    total = ZERO
    for i in range(J.shape[0]):
        total = make("add", total, J[i, i])
    nodes = _freeze(_obj(total).reshape((1,)), enable_higher_derivatives)
    return BatchedArray(_obj(nodes), u.bpos, u.batch)


def dllaplacian(u, x, dim, *, enable_higher_derivatives=True):
    """Per sample and per component of ``u``, the sum of the second derivatives
    with respect to every non-batch element of ``x`` (forward Laplacian); shape of u."""
    _check_u(u, dim, "dllaplacian")
    _check_x(u, x, "dllaplacian")
    if x.bpos is None:
        raise ValueError("dllaplacian: x must be a batched argument")
    L, _ = laplacian_nodes(list(u.nodes.ravel()), list(x.nodes.ravel()))
    nodes = _freeze(np.array(L, dtype=object).reshape(u.nodes.shape), enable_higher_derivatives)
    return BatchedArray(_obj(nodes), u.bpos, u.batch)


# -- dlfeval -----------------------------------------------------------------------

# Traced kernels by (fn, shapes, axes, batch, dtypes, backend), least recently used
# dropped first: a lambda written inline in a loop is a new key each call, and an
# evicted entry only costs a retrace (compiled code stays cached by its source).
_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.RLock()


def _normalize_batch_axes(batch_axis, args):
    axes = batch_axis if isinstance(batch_axis, (tuple, list)) else (batch_axis,) * len(args)
    if len(axes) != len(args):
        raise ValueError(f"batch_axis has {len(axes)} entries for {len(args)} arguments")
    out = []
    for k, (a, ax) in enumerate(zip(args, axes)):
        refuse_container(a, f"argument {k}")
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"argument {k} must be a real numeric array, got dtype {arr.dtype}")
        if arr.dtype.kind != "f":
            raise TypeError(f"argument {k} holds {arr.dtype} data; traced data must be floating point, as for "
                            "MATLAB's dlarray: convert it with .astype(np.float64) (or float32)")
        if ax is None:
            out.append(None)
            continue
        if not -arr.ndim <= ax < arr.ndim:
            raise ValueError(f"batch_axis {ax} is out of range for argument {k} of shape {arr.shape}")
        out.append(ax % arr.ndim)
    if all(ax is None for ax in out):
        raise ValueError("batch_axis marks every argument as shared; at least one must carry the batch axis")
    return out


def dlfeval(fn, *args, batch_axis=-1, backend="auto"):
    """Evaluate ``fn`` on batched data with MATLAB ``dlfeval`` semantics.

    Each array argument is traced with its full batched shape; ``batch_axis``
    (an int for all, or one entry per argument, ``None`` for shared weights)
    says where its batch axis is; the default, the last axis, matches
    MATLAB's "CB"/"SSCB" layouts.  The per-sample computation is compiled
    once per (shapes, dtypes, batch axes) and run over the batch; results come
    back as NumPy arrays, in the tuples and lists ``fn`` returned them in
    (MATLAB's multiple outputs; nesting such as ``return loss,
    dlgradient(loss, W, b)`` is kept).  First calls from several threads are
    safe: one traces, the others wait.

    >>> import numpy as np, symjac
    >>> W = np.array([[1.0, 2.0], [0.0, 1.0]])
    >>> X = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])          # "CB": 2 channels, 3 samples
    >>> Y, J = symjac.dlfeval(lambda X, W: (np.tanh(W @ X), symjac.dljacobian(np.tanh(W @ X), X, 0)),
    ...                       X, W, batch_axis=(-1, None), backend="numpy")
    >>> Y.shape, J.shape
    ((2, 3), (2, 2, 3))
    """
    if not callable(fn):
        raise TypeError(f"dlfeval: fn must be callable, got {type(fn).__name__}")
    axes = _normalize_batch_axes(batch_axis, args)
    arrays = [np.asarray(a) for a in args]
    batch = {arrays[k].shape[ax] for k, ax in enumerate(axes) if ax is not None}
    if len(batch) != 1:
        raise ValueError(f"batched arguments have different batch sizes {sorted(batch)}")
    (B,) = batch
    per_shapes = [a.shape[:ax] + a.shape[ax + 1:] if ax is not None else a.shape for a, ax in zip(arrays, axes)]
    key = (fn, tuple(per_shapes), tuple(axes), B, tuple(a.dtype.name for a in arrays), resolve_backend(backend))
    with _CACHE_LOCK:  # first calls from several threads: one traces, the others wait
        entry = _CACHE.get(key)
        if entry is None:
            entry = _CACHE[key] = _trace_dlfeval(fn, per_shapes, axes, B, backend)
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
    kernel, plan, treedef = entry
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    results = kernel(*arrays) if kernel.graph.outputs else ()
    values = {}
    for k, leaf in enumerate(kernel.graph.inputs):
        if axes[k] is None:
            for node, v in zip(leaf.ravel(), np.asarray(arrays[k], dtype=float).ravel()):
                values[node.id] = v
    outs = []
    for kind, index, bpos, shared in plan:
        if kind == "batched":
            outs.append(np.moveaxis(results[index], 0, bpos))
            continue
        value = np.zeros(shared.shape if shared is not None else results[index].shape, dtype=dtype)
        if index is not None:
            value = value + results[index]
        if shared is not None:
            evaluated = evaluate_nodes(list(shared.ravel()), values)
            value = value + np.array(evaluated, dtype=dtype).reshape(shared.shape)
        outs.append(np.asarray(value, dtype=dtype))
    return _rebuild(treedef, outs)


def _flatten(result):
    """Leaves of a tree of tuples and lists (MATLAB's multiple outputs, nested
    as the function returned them) and its structure for `_rebuild`."""
    leaves = []

    def walk(r):
        if isinstance(r, (tuple, list)):
            return type(r), [walk(e) for e in r]
        leaves.append(r)
        return None

    return leaves, walk(result)


def _rebuild(treedef, leaves):
    it = iter(leaves)

    def build(d):
        return next(it) if d is None else d[0](build(e) for e in d[1])

    return build(treedef)


def _trace_dlfeval(fn, per_shapes, axes, B, backend):
    """Kernel, output plan and output structure of ``fn``: each output is
    batched (a kernel output), a batch sum (a reduced kernel output plus a
    once-only offset) or shared."""
    with BUILDING:
        inputs = make_inputs([tuple(s) for s in per_shapes])
        result = call_traced(lambda *traced: fn(*[BatchedArray(t, ax, B) for t, ax in zip(traced, axes)]),
                             inputs)
        items, treedef = _flatten(result)
        plan, kernel_outs, reduced = [], [], []
        for r in items:
            if isinstance(r, BatchedArray) and r.bpos is not None:
                plan.append(("batched", len(kernel_outs), r.bpos, None))
                kernel_outs.append(_nodes(r.per))
            elif isinstance(r, Reduced):
                reduced.append(len(kernel_outs))
                plan.append(("reduced", len(kernel_outs), None, r.offset))
                kernel_outs.append(r.terms)
            elif isinstance(r, BatchedArray):
                plan.append(("shared", None, None, r.nodes))
            else:
                plan.append(("shared", None, None, _nodes(r)))
        graph = Graph(inputs, kernel_outs, treedef=tuple("*" for _ in kernel_outs))
        kernel = Kernel(fn, in_axes=tuple(axes), backend=backend, name=getattr(fn, "__name__", "fn"))
        kernel.adopt(graph, axes, reduced)
    return kernel, plan, treedef
