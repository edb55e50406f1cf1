"""`TracedArray`: one sample's data while a model is traced, and NumPy's
dispatch protocols.

A `TracedArray` holds either an object array of graph nodes (one per entry)
or, in *tensor mode*, one tensor node for the whole array.  NumPy hands every
ufunc (``np.sin``, ``+``, ``scipy.special.erf``) to ``__array_ufunc__``, which
builds the op the registry names for it, and every array function
(``np.sum``, ``np.einsum``) to ``__array_function__``, which runs the
implementation registered with `implements` (`symjac.frontend.functions`,
`symjac.frontend.contraction`), the op a function maps to in the registry
when an argument is a tensor, or NumPy's own object-dtype code on the nodes,
which calls the nodes' arithmetic.  A model therefore traces unchanged.
"""

from __future__ import annotations

import contextvars
import inspect
import math
import numbers

import numpy as np

from symjac.errors import NumericArrayError, TracerBoolError, UnsupportedOperationError, conversion_error
from symjac.frontend.policy import policy
from symjac.ir import FUNCTIONS, UFUNCS, Node, NotTensorizable, const, iconst, make, to_node, ufunc_builder
from symjac.ops import array as aops, tensor as tops

__all__ = ["TracedArray", "as_nodes", "is_traced", "implements", "implements_ufunc", "passthrough",
           "scalar_array", "wrap", "unwrap", "from_tensor", "tensor_of", "is_tensor", "view_of", "map_tensor",
           "dense_constant", "constant_values", "stays_whole"]

_to_node_v = np.frompyfunc(to_node, 1, 1)

# Implementations of NumPy functions on traced arrays, filled with `implements`
# by the modules that define them (NumPy's __array_function__ idiom).
HANDLED_FUNCTIONS: dict = {}
HANDLED_UFUNCS: dict = {}  # ufunc name -> implementation taking the inputs (matmul)
HANDLED_REDUCE: dict = {}  # ufunc name -> implementation of ufunc.reduce(a, axis, keepdims)
PASSTHROUGH: set = set()  # functions NumPy's own object-dtype code traces correctly


def implements(*functions):
    """Register the decorated function as the traced version of NumPy ``functions``."""
    def register(impl):
        for f in functions:
            HANDLED_FUNCTIONS[f] = impl
        return impl

    return register


def implements_ufunc(name, method="__call__"):
    """Register the decorated function for ufunc ``name`` (its ``reduce`` with method="reduce")."""
    table = HANDLED_UFUNCS if method == "__call__" else HANDLED_REDUCE

    def register(impl):
        table[name] = impl
        return impl

    return register


def passthrough(*functions):
    """Functions whose NumPy object-dtype code, run on the nodes, traces correctly."""
    PASSTHROUGH.update(f for f in functions if callable(f))


def _nodes(x):
    """Object array of nodes for a traced array, node array, or constant."""
    if isinstance(x, TracedArray):
        return x.nodes
    if isinstance(x, Node):
        return scalar_array(x)
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return _normalize(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"cannot use an array of dtype {x.dtype} in a traced model: "
                            "symjac traces real-valued models")
        return _to_node_v(x).astype(object) if x.ndim else scalar_array(const(float(x)))
    if isinstance(x, (list, tuple)):
        parts = [_nodes(e) for e in x]
        out = np.empty(len(parts), dtype=object)
        if all(p.ndim == 0 for p in parts):
            for i, p in enumerate(parts):
                out[i] = p[()]
            return out
        return np.stack(parts) if parts else out
    return scalar_array(to_node(x))


def scalar_array(node):
    out = np.empty((), dtype=object)
    out[()] = node
    return out


def _normalize(arr):
    """Replace the non-node elements of an object array by nodes."""
    flat = arr.ravel()
    if all(isinstance(e, Node) for e in flat):
        return arr
    out = np.empty(arr.shape, dtype=object)
    out_flat = out.reshape(-1)
    for i, e in enumerate(flat):
        out_flat[i] = e if isinstance(e, Node) else (
            _nodes(e)[()] if isinstance(e, TracedArray) else to_node(e))
    return out


def as_nodes(x):
    """Any model value as an object array of nodes."""
    return _nodes(x)


def is_traced(x):
    if isinstance(x, TracedArray) or isinstance(x, Node):
        return True
    if isinstance(x, np.ndarray) and x.dtype == object:
        return any(isinstance(e, (Node, TracedArray)) for e in x.ravel())
    if isinstance(x, (list, tuple)):
        return any(is_traced(e) for e in x)
    return False


def wrap(result):
    if isinstance(result, np.ndarray):
        return TracedArray(result) if result.dtype == object else result
    if isinstance(result, Node):
        return TracedArray(scalar_array(result))
    if isinstance(result, tuple):
        return tuple(wrap(r) for r in result)
    if isinstance(result, list):
        return [wrap(r) for r in result]
    return result


def unwrap(x):
    if isinstance(x, TracedArray):
        return x.nodes
    if isinstance(x, tuple):
        return tuple(unwrap(e) for e in x)
    if isinstance(x, list):
        return [unwrap(e) for e in x]
    if isinstance(x, dict):  # keyword arguments (np.cumsum(a=x))
        return {k: unwrap(v) for k, v in x.items()}
    return x


def _check_index(key):
    keys = key if isinstance(key, tuple) else (key,)
    for k in keys:
        if isinstance(k, TracedArray) or (isinstance(k, np.ndarray) and k.dtype == object):
            raise UnsupportedOperationError(
                "indexing with a traced value is not supported (the index would depend on the "
                "data); index with constants, or select with np.where(condition, a, b)")


class TracedArray(np.lib.mixins.NDArrayOperatorsMixin):
    """A symbolic array standing for one sample's data while a model is traced.

    It supports NumPy's ufuncs and array functions, operators, indexing and
    the usual methods, and refuses Python control flow on its values.

    >>> import numpy as np, symjac
    >>> g = symjac.trace(lambda x: np.sum(x ** 2), (3,))
    >>> g.outputs[0].shape
    ()
    """

    __array_priority__ = 1000
    __slots__ = ("_nodes", "tensor", "_view", "_checked")

    def __init__(self, nodes=None, *, tensor=None, view=None):
        # (base TracedArray, function of its element array, the base's tensor then) for views of a tensor
        self._view = view
        self._checked = -1  # the element-write count when the elements were last seen to be the tensor's
        if tensor is not None:
            self.tensor, self._nodes = tensor, None
            return
        nodes = np.asarray(nodes, dtype=object) if not isinstance(nodes, np.ndarray) else nodes
        self._nodes = _normalize(nodes)
        self.tensor = None

    @classmethod
    def of_node(cls, node):
        """The 0-d traced value of ``node`` (one node: nothing to normalize), for
        the step of a scalar chain, one per traced operation."""
        t = cls.__new__(cls)
        t._view, t._checked, t.tensor, t._nodes = None, -1, None, scalar_array(node)
        return t

    @property
    def nodes(self):
        """The object array of scalar nodes (a tensor's elements, made on first use)."""
        if self._nodes is None and self._view is not None:
            base, fn, _ = self._view
            self._nodes = fn(base.nodes)  # a NumPy view: writes reach the base, as NumPy's would
        if self._nodes is None:
            t = self.tensor
            arr = np.empty(t.shape, dtype=object)
            flat = arr.reshape(-1)
            for i in range(flat.size):
                flat[i] = tops.elem(t, i)
            self._nodes = arr
        return self._nodes

    # -- array attributes -------------------------------------------------
    shape = property(lambda self: self.tensor.shape if self.tensor is not None else self.nodes.shape)
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    dtype = property(lambda self: np.dtype(np.float64))
    T = property(lambda self: self.transpose())
    real = property(lambda self: self)
    mT = property(lambda self: self.swapaxes(-1, -2))

    def __repr__(self):
        mode = ", tensor" if self.tensor is not None else ""
        return f"TracedArray(shape={self.shape}{mode})"

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d traced array (a scalar per sample); is the batch axis "
                            "the axis you meant to iterate over?")
        for i in range(self.shape[0]):
            yield self[i]

    def __bool__(self):
        raise TracerBoolError("bool()")

    def __float__(self):
        raise conversion_error("float()")

    def __int__(self):
        raise conversion_error("int()")

    def __index__(self):
        raise TracerBoolError("an integer conversion (as an index or a range bound)")

    def __complex__(self):
        raise conversion_error("complex()")

    def item(self, *args):
        raise TracerBoolError(".item()")

    def tolist(self):
        raise TracerBoolError(".tolist()")

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != object:
            raise NumericArrayError(f"converted to a NumPy array of dtype {np.dtype(dtype)} (stored into a "
                                    "numeric array, or np.asarray(x, dtype=...))")
        _EXPOSED.get()[0] += 1  # elements now in the model's hands: writes into them are not seen
        return self.nodes

    # -- indexing ---------------------------------------------------------
    def __getitem__(self, key):
        """NumPy's indexing; a tensor stays whole (a view, or a gather with
        constant positions), and basic indexing is a view its writes reach."""
        _check_index(key)
        if self.ndim and _promote(self):
            try:
                node, _ = aops.positions_of(tensor_of(self), key)
            except (IndexError, TypeError, ValueError):
                return wrap(self.nodes[key])  # NumPy's own error
            if node.shape:
                r = view_of(self, node, lambda a: a[key])
                if r.tensor is not None:
                    return r
        return wrap(self.nodes[key])  # small results: the elements (a NumPy view, for writes)

    def __setitem__(self, key, value):
        """NumPy's assignment (item, slice, integer-array and boolean-mask
        indices; with repeated positions the last write wins).  A tensor takes
        the write as a new tensor (the untouched entries kept by a constant
        mask); elsewhere the elements are written, and writes through a view
        reach its base."""
        _check_index(key)
        if self._view is None and self.ndim and _promote(self):
            new = _write(tensor_of(self), key, value)
            if new is not None:
                self.tensor, self._nodes = new, None
                return
        nodes = self.nodes
        self.tensor = None  # from now on the elements are the truth
        v = _nodes(value)
        target = nodes[key]
        if isinstance(target, np.ndarray):
            try:
                v = np.broadcast_to(v, target.shape)
            except ValueError:
                raise ValueError(f"cannot store a value of shape {v.shape} into a selection of shape "
                                 f"{target.shape}") from None
            nodes[key] = v
            _WRITES[0] += 1
        elif v.size != 1:
            raise ValueError(f"cannot store a value of shape {v.shape} into one element")
        else:
            nodes[key] = v.reshape(())[()]  # the node itself, never a 0-d array inside the object array
            _WRITES[0] += 1

    # -- methods users call -----------------------------------------------
    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], numbers.Integral) else shape
        if is_tensor(self) and order == "C":
            new = np.empty(self.shape, dtype=np.bool_).reshape(shape).shape
            return view_of(self, tops.reshape(self.tensor, new), lambda a: a.reshape(new))
        return TracedArray(self.nodes.reshape(shape, order=order))

    def ravel(self, order="C"):
        if is_tensor(self) and order == "C":
            return self.reshape(-1)
        return TracedArray(self.nodes.ravel(order))

    flatten = ravel

    def transpose(self, *axes):
        if is_tensor(self):
            axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
            perm = tuple(a % self.ndim for a in axes) if axes else tuple(range(self.ndim))[::-1]
            return view_of(self, tops.transpose(self.tensor, perm), lambda a: a.transpose(perm))
        return TracedArray(self.nodes.transpose(*axes))

    def swapaxes(self, a, b):
        if is_tensor(self):
            perm = list(range(self.ndim))
            a, b = a % self.ndim, b % self.ndim
            perm[a], perm[b] = perm[b], perm[a]
            return self.transpose(perm)
        return TracedArray(self.nodes.swapaxes(a, b))

    def squeeze(self, axis=None):
        if is_tensor(self):
            return self.reshape(np.empty(self.shape, dtype=np.bool_).squeeze(axis).shape)
        return TracedArray(self.nodes.squeeze(axis))

    def copy(self):
        if is_tensor(self):
            return from_tensor(self.tensor)
        return TracedArray(self.nodes.copy())

    def conj(self):
        return self

    conjugate = conj

    def astype(self, dtype, copy=True):
        if np.dtype(dtype).kind != "f":
            raise UnsupportedOperationError(
                f"astype({np.dtype(dtype)}) on a traced array: only floating dtypes are "
                "supported; rounding has no useful derivative")
        return self.copy() if copy else self

    def sum(self, axis=None, keepdims=False, **kw):
        return np.sum(self, axis=axis, keepdims=keepdims, **kw)

    def prod(self, axis=None, keepdims=False, **kw):
        return np.prod(self, axis=axis, keepdims=keepdims, **kw)

    def mean(self, axis=None, keepdims=False, **kw):
        return np.mean(self, axis=axis, keepdims=keepdims, **kw)

    def max(self, axis=None, keepdims=False):
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return np.min(self, axis=axis, keepdims=keepdims)

    def dot(self, other):
        return np.dot(self, other)

    def clip(self, a_min=None, a_max=None):
        return np.clip(self, a_min, a_max)

    def cumsum(self, axis=None):
        return np.cumsum(self, axis=axis)

    # -- NumPy protocols --------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        if out is not None:  # y += x, np.add(a, b, out=y): computed, then stored into y's elements
            outs = out if isinstance(out, tuple) else (out,)
            if len(outs) != 1 or not isinstance(outs[0], TracedArray):
                if len(outs) == 1 and isinstance(outs[0], np.ndarray):
                    raise NumericArrayError(f"written by np.{ufunc.__name__}(..., out=...) into a NumPy array "
                                            "of numbers")
                raise UnsupportedOperationError(f"np.{ufunc.__name__}(..., out={out!r}) on traced arrays")
            outs[0][...] = self.__array_ufunc__(ufunc, method, *inputs, **kwargs)
            return outs[0]
        if "where" in kwargs:
            raise UnsupportedOperationError(f"np.{ufunc.__name__}(..., where=...) on traced arrays; "
                                            "use np.where(condition, a, b)")
        name = ufunc.__name__
        if method == "at":
            return _ufunc_at(ufunc, *inputs)
        if method == "reduce" and name in HANDLED_REDUCE:
            return HANDLED_REDUCE[name](inputs[0], axis=kwargs.get("axis", 0), keepdims=kwargs.get("keepdims", False))
        if method != "__call__":
            raise UnsupportedOperationError(f"np.{name}.{method} is not supported on traced arrays")
        if name in HANDLED_UFUNCS:
            return HANDLED_UFUNCS[name](*inputs)
        builder = ufunc_builder(name)
        if builder is None:
            raise UnsupportedOperationError(
                f"the ufunc {name!r} is not supported by symjac's tracer; supported: {', '.join(sorted(UFUNCS))}")
        return self._elementwise(builder, inputs)

    @staticmethod
    def _elementwise(builder, inputs):
        """``builder`` applied entry by entry (with broadcasting), or to whole
        tensors: when an input is one, or the result (a traced scalar against
        a constant array too) is big enough to stay whole."""
        nodes = []
        for x in inputs:  # scalars (a chain of scalar steps): one node, none of the array machinery
            if type(x) is TracedArray and x.tensor is None and x._view is None and not x._nodes.ndim:
                nodes.append(x._nodes[()])
            elif isinstance(x, (float, int)):
                nodes.append(x)
            else:
                break
        else:
            result = builder(*nodes)
            return TracedArray.of_node(result) if type(result) is Node else TracedArray(scalar_array(result))
        if any(is_tensor(x) for x in inputs) or stays_whole(inputs) or _big_result(inputs):
            return map_tensor(builder, inputs)
        arrays = [_nodes(x) for x in inputs]
        result = np.frompyfunc(builder, len(arrays), 1)(*arrays)
        return TracedArray(result if isinstance(result, np.ndarray) else scalar_array(result))

    def __array_function__(self, func, types, args, kwargs):
        impl = HANDLED_FUNCTIONS.get(func)
        if impl is not None:
            return impl(*args, **kwargs)
        builder, elementwise = FUNCTIONS.get(func, (None, False))
        if builder is not None:
            args, kwargs = _positional(func, args, kwargs)
        if builder is not None and elementwise:  # np.sinc, np.round: one node to one node
            return self._elementwise(lambda x: builder(x, *args[1:], **kwargs), args[:1])
        if builder is not None and _array_op(args):  # an array op
            try:
                return _from_result(builder(*[_tensor_arg(a) for a in args], **kwargs))
            except NotTensorizable:
                pass  # an argument form the builder does not cover: NumPy's own code, on the elements
        if func in PASSTHROUGH or builder is not None:
            bad = [k for k in ("out", "dtype", "where") if kwargs.get(k) is not None and kwargs.get(k) is not True]
            if bad:
                raise UnsupportedOperationError(
                    f"np.{func.__name__}(..., {bad[0]}=...) on traced arrays: traced values are computed in the "
                    "kernel's dtype; drop the argument (use np.where to mask)")
            with np.errstate(all="ignore"):
                return wrap(func(*unwrap(args), **unwrap(kwargs)))
        name = getattr(func, "__module__", "numpy").replace("numpy.", "np.").replace("numpy", "np")
        raise UnsupportedOperationError(
            f"{name}.{func.__name__} is not supported on traced arrays (symjac cannot trace it); "
            "write the computation with supported NumPy functions")

    def __getattr__(self, name):
        fn = getattr(np, name, None) if not name.startswith("_") else None
        # np.array([x[0], x[1]]) of traced scalars is a plain object array of 0-d
        # TracedArrays (np.array cannot be intercepted); NumPy's object loops apply a
        # ufunc by calling the element's method of the same name.
        if isinstance(fn, np.ufunc) and ufunc_builder(name) is not None:
            return lambda *other: fn(self, *other)
        # the ndarray methods that are NumPy functions (x.trace(), x.round(2)): the function
        if callable(fn) and not isinstance(fn, np.ufunc) and callable(getattr(np.ndarray, name, None)):
            return lambda *args, **kwargs: fn(self, *args, **kwargs)
        raise AttributeError(f"'TracedArray' object has no attribute {name!r}")

    def __abs__(self):
        return np.abs(self)


def _positional(func, args, kwargs):
    """``func``'s arguments with its first parameter (the array) positional."""
    if args or not kwargs:
        return args, kwargs
    try:
        first = next(iter(inspect.signature(func).parameters))
    except (TypeError, ValueError, StopIteration):
        return args, kwargs
    if first not in kwargs:
        return args, kwargs
    kwargs = dict(kwargs)
    return (kwargs.pop(first),), kwargs


def _array_op(args):
    """True when a NumPy function's arguments hold a tensor or an array kept
    whole; in a sequence argument (np.concatenate's), an array kept whole, or
    tensors and constants only (arrays of scalars among them stay scalars)."""
    if any(is_tensor(a) for a in args) or stays_whole(args):
        return True
    for a in args:
        if isinstance(a, (list, tuple)) and a:
            traced = [e for e in a if is_traced(e)]
            if stays_whole(traced) or (traced and all(is_tensor(e) for e in traced)):
                return True
    return False


def _tensor_arg(a):
    """A NumPy function's argument for a tensor builder: traced values as nodes,
    sequences of arrays as lists of nodes or constant arrays."""
    if _is_traced_value(a):
        return tensor_of(a)
    if isinstance(a, (list, tuple)) and a and not all(isinstance(e, numbers.Number) for e in a):
        return [tensor_of(e) if is_traced(e) else np.asarray(e, dtype=float) if not isinstance(e, numbers.Number)
                else e for e in a]
    return a


def _from_result(r):
    return [from_tensor(t) for t in r] if isinstance(r, list) else from_tensor(r)


def _is_traced_value(a):
    return isinstance(a, TracedArray) or isinstance(a, Node)


def _big_result(inputs):
    """True when a traced value meets a constant array and the broadcast result
    is big enough to stay whole."""
    n = policy()["min_array"]
    if n is None or not any(isinstance(x, np.ndarray) and x.dtype.kind in "biuf" and x.ndim for x in inputs):
        return False
    try:
        shape = np.broadcast_shapes(*[x.shape if isinstance(x, (TracedArray, np.ndarray)) else () for x in inputs])
    except ValueError:
        return False  # NumPy's own error, from the element path
    return math.prod(shape) >= max(n, 1) and len(shape) > 0


def stays_whole(args):
    """True when the policy keeps arrays of this size whole (``min_array``)."""
    n = policy()["min_array"]
    return n is not None and any(isinstance(a, TracedArray) and a.ndim and a.size >= n for a in args)


# -- tensor mode ----------------------------------------------------------------
# A TracedArray whose ``tensor`` is set stands for one tensor node: contractions
# big enough to be worth a loop, and everything computed elementwise from them,
# stay whole (symjac.ops.tensor); anything else sees the elements (``nodes``).

def is_tensor(x):
    """True while ``x`` stands for its tensor node.  A write into the elements
    (directly, or through any view sharing them) makes the elements the truth,
    for the array written and for every view of it."""
    if not isinstance(x, TracedArray) or x.tensor is None:
        return False
    if x._view is not None:  # a view's elements are its base's: its tensor holds while the base's does
        base, _, then = x._view
        if not is_tensor(base) or base.tensor is not then:  # the base was written
            x.tensor = None
            return False
        return True
    if x._nodes is not None and (x._checked != _WRITES[0] or _EXPOSED.get()[0]):
        if not _still_elements(x._nodes, x.tensor):
            x.tensor = None  # written through a view of its elements
            return False
        x._checked = _WRITES[0]  # no element written anywhere since: no need to look again
    return True


_WRITES = [0]  # element writes so far (any array): a tensor's elements need a look only after one
# element arrays handed to the model (np.asarray(x)) in this trace: from then on every check looks
_EXPOSED = contextvars.ContextVar("symjac_exposed", default=[0])


def exposure_scope():
    """A fresh count of exposed element arrays, for one top-level trace."""
    return _EXPOSED.set([0])


def end_exposure_scope(token):
    _EXPOSED.reset(token)


def _still_elements(arr, t):
    if t.op == "pack":  # a pack's elements are its items
        return len(t.args) == arr.size and np.array_equal(_ids(arr.flat), _pack_ids(t))
    return all(isinstance(n, Node) and n.op == "elem" and n.args[0] is t and n.attr == i
               for i, n in enumerate(arr.flat))


def _ids(items):
    return np.fromiter(map(id, items), dtype=np.int64)


_PACK_IDS: dict = {}  # pack node id -> its items' ids (a write check per op must not walk Python objects)


def _pack_ids(t):
    ids = _PACK_IDS.get(t.id)
    if ids is None:
        if len(_PACK_IDS) > 256:
            _PACK_IDS.clear()
        ids = _PACK_IDS[t.id] = _ids(t.args)
    return ids


def _promote(x):
    """Make ``x`` a tensor (its elements packed) when the policy keeps arrays of
    its size whole; its elements stay the truth for writes.  True if a tensor."""
    if is_tensor(x):
        return True
    if not (x.ndim and stays_whole([x])):
        return False
    t = tensor_of(x)
    if t.op == "pack" and _still_elements(x.nodes, t):
        x.tensor = t
        return True
    return False


def _write(t, key, value):
    """The tensor ``t`` with ``t[key] = value``, or None to write the elements."""
    try:
        pos = np.arange(math.prod(t.shape), dtype=np.int64).reshape(t.shape)[key]
        v = tensor_of(value)
        v = tops.fit(v, pos.shape) if v.shape != pos.shape else v
    except (IndexError, TypeError, ValueError):
        return None  # NumPy's own error comes from the element path
    flat_pos = pos.reshape(-1)
    # repeated positions: the last write wins, as in NumPy
    _, last = np.unique(flat_pos[::-1], return_index=True)
    keep = np.sort(flat_pos.size - 1 - last)
    placed = aops.place(aops.take(tops.reshape(v, (flat_pos.size,)), keep), flat_pos[keep], t.shape)
    mask = np.zeros(math.prod(t.shape))
    mask[flat_pos] = 1.0
    return make("where", tops.tconst(mask.reshape(t.shape)), placed, t)


def _ufunc_at(ufunc, a, key, b=None):
    """``np.add.at(a, key, b)`` and friends: unbuffered, in place, repeated
    positions applied one after another.  On a tensor, np.add.at and
    np.subtract.at are one scatter-add; elsewhere NumPy's own loop runs on
    the elements."""
    name = ufunc.__name__
    if not isinstance(a, TracedArray):
        raise NumericArrayError(f"written by np.{name}.at into a NumPy array of numbers")
    _check_index(key)
    if name in ("add", "subtract") and b is not None and a._view is None and a.ndim and _promote(a):
        t = a.tensor
        try:
            pos = np.arange(math.prod(t.shape), dtype=np.int64).reshape(t.shape)[key]
            v = tensor_of(b)
            v = tops.fit(v, pos.shape) if v.shape != pos.shape else v
        except (IndexError, TypeError, ValueError):
            pos = None  # NumPy's own error comes from the element path
        if pos is not None:
            if name == "subtract":
                v = make("neg", v)
            added = aops.scatter(tops.reshape(v, (pos.size,)), iconst(pos.reshape(-1)), t.shape)
            a.tensor, a._nodes = make("add", t, added), None
            return None
    nodes = a.nodes
    a.tensor = None  # from now on the elements are the truth
    args = (nodes, key) if b is None else (nodes, key, _nodes(b))
    ufunc.at(*args)
    _WRITES[0] += 1
    return None


def view_of(base, t, fn):
    """A tensor-mode result of a NumPy view operation on ``base``."""
    out = from_tensor(t)
    if out.tensor is not None:
        out._view = (base, fn, base.tensor)
    return out


def from_tensor(t):
    """A TracedArray for tensor node ``t``; small results are unrolled into
    scalars, unless the policy keeps arrays of their size whole (``min_array``)."""
    if not t.shape:
        return TracedArray(scalar_array(t))
    size, p = math.prod(t.shape), policy()
    if size <= p["unroll_size"] and (p["min_array"] is None or size < p["min_array"]):
        return TracedArray(TracedArray(tensor=t).nodes)
    return TracedArray(tensor=t)


def constant_values(x):
    """The float values of a constant array (numeric, or object array of constant
    nodes), else None."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return x
    if isinstance(x, np.ndarray) and x.dtype == object and x.size and \
            all(isinstance(n, Node) and n.op == "const" for n in x.flat):
        return np.array([n.attr for n in x.flat]).reshape(x.shape)
    return None


def dense_constant(x):
    """The values of ``x`` when it is a big, dense constant array (captured
    weights), else None.  Mostly-zero constants (a stoichiometry matrix) are
    not: contractions work on their nonzeros (`symjac.frontend.contraction`)."""
    if policy()["min_work"] is None or isinstance(x, TracedArray):
        return None
    vals = constant_values(x)
    if vals is None or vals.size < max(policy()["min_operand"], 2) or np.count_nonzero(vals) < 0.9 * vals.size:
        return None
    return vals


def tensor_of(x):
    """The tensor (or scalar) node for a model value."""
    if is_tensor(x):
        return x.tensor
    vals = dense_constant(x)
    if vals is not None:
        return tops.tconst(vals)
    arr = _normalize(_nodes(x))  # elements the model wrote through np.asarray(x) may be numbers
    if arr.ndim == 0:
        return arr[()]
    perm = _leaf_order(arr)
    if perm is not None:  # input leaves in transposed order (W.T): the input block, transposed
        base = np.transpose(arr, perm)
        return tops.transpose(tops.pack(list(base.ravel()), base.shape), tuple(np.argsort(perm)))
    return tops.pack(list(arr.ravel()), arr.shape)


def _leaf_order(arr):
    """The axis order in which ``arr``'s input leaves are consecutive, when it is
    not already C order (a transposed input); None otherwise."""
    first = arr.flat[0]
    if first.op != "input" or arr.size < 2:
        return None
    strides = []
    for d in range(arr.ndim):
        if arr.shape[d] == 1:
            strides.append(0)
            continue
        idx = [0] * arr.ndim
        idx[d] = 1
        n = arr[tuple(idx)]
        if n.op != "input" or n.attr[:2] != first.attr[:2]:
            return None
        strides.append(n.attr[2] - first.attr[2])
    perm = sorted(range(arr.ndim), key=lambda d: -strides[d])
    if perm == list(range(arr.ndim)):
        return None
    flat = np.transpose(arr, perm).ravel()
    tid, k, i0 = first.attr
    if all(n.op == "input" and n.attr == (tid, k, i0 + j) for j, n in enumerate(flat)):
        return perm
    return None


def map_tensor(builder, inputs):
    shape = np.broadcast_shapes(*[np.shape(x) if not isinstance(x, TracedArray) else x.shape for x in inputs])
    args = []
    for x in inputs:
        t = tensor_of(x)
        args.append(t if not t.shape else tops.broadcast_to(t, shape))
    return from_tensor(tops.fit(builder(*args), shape))


