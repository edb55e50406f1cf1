"""Tracing NumPy code: `TracedArray` and NumPy's dispatch protocols.

A `TracedArray` holds an object array of graph nodes.  NumPy hands every
ufunc (``np.sin``, ``+``, ``scipy.special.erf``) to ``__array_ufunc__`` and
every array function (``np.sum``, ``np.einsum``, ``np.concatenate``) to
``__array_function__``; both build nodes through `symjac.simplify.make`.
Contractions, reductions and reshapes run NumPy's own object-dtype code on
the node arrays, which calls the nodes' arithmetic, so they need no code of
their own here.  A model therefore traces unchanged.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import numbers

import numpy as np

from symjac.errors import NumericArrayError, TracerBoolError, UnsupportedOperationError, conversion_error
from symjac.graph import BUILDING, Graph, Node, intern, substitute
from symjac.interpret import evaluate_nodes
from symjac.simplify import const, make, rebuild, to_node
from symjac import tensor as T

__all__ = ["TracedArray", "tensor_policy", "trace", "make_inputs", "as_nodes", "call_graph", "is_traced"]

_trace_ids = itertools.count()

_to_node_v = np.frompyfunc(to_node, 1, 1)


def _nodes(x):
    """Object array of nodes for a traced array, node array, or constant."""
    if isinstance(x, TracedArray):
        return x.nodes
    if isinstance(x, Node):
        return _scalar_array(x)
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return _normalize(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"cannot use an array of dtype {x.dtype} in a traced model: "
                            "symjac traces real-valued models")
        return _to_node_v(x).astype(object) if x.ndim else _scalar_array(const(float(x)))
    if isinstance(x, (list, tuple)):
        parts = [_nodes(e) for e in x]
        out = np.empty(len(parts), dtype=object)
        if all(p.ndim == 0 for p in parts):
            for i, p in enumerate(parts):
                out[i] = p[()]
            return out
        return np.stack(parts) if parts else out
    return _scalar_array(to_node(x))


def _scalar_array(node):
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
    """Public form of `_nodes`: any model value as an object array of nodes."""
    return _nodes(x)


def is_traced(x):
    if isinstance(x, TracedArray) or isinstance(x, Node):
        return True
    if isinstance(x, np.ndarray) and x.dtype == object:
        return any(isinstance(e, (Node, TracedArray)) for e in x.ravel())
    if isinstance(x, (list, tuple)):
        return any(is_traced(e) for e in x)
    return False


def _wrap(result):
    if isinstance(result, np.ndarray):
        return TracedArray(result) if result.dtype == object else result
    if isinstance(result, Node):
        return TracedArray(_scalar_array(result))
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    return result


def _unwrap(x):
    if isinstance(x, TracedArray):
        return x.nodes
    if isinstance(x, tuple):
        return tuple(_unwrap(e) for e in x)
    if isinstance(x, list):
        return [_unwrap(e) for e in x]
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
    __slots__ = ("_nodes", "tensor", "_view")

    def __init__(self, nodes=None, *, tensor=None, view=None):
        self._view = view  # (base TracedArray, function of its element array) for reshapes/transposes
        if tensor is not None:
            self.tensor, self._nodes = tensor, None
            return
        nodes = np.asarray(nodes, dtype=object) if not isinstance(nodes, np.ndarray) else nodes
        self._nodes = _normalize(nodes)
        self.tensor = None

    @property
    def nodes(self):
        """The object array of scalar nodes (a tensor's elements, made on first use)."""
        if self._nodes is None and self._view is not None:
            base, fn = self._view
            self._nodes = fn(base.nodes)  # a NumPy view: writes reach the base, as NumPy's would
        if self._nodes is None:
            t = self.tensor
            arr = np.empty(t.shape, dtype=object)
            flat = arr.reshape(-1)
            for i in range(flat.size):
                flat[i] = T.elem(t, i)
            self._nodes = arr
        return self._nodes

    # -- array attributes -------------------------------------------------
    shape = property(lambda self: self.tensor.shape if self.tensor is not None else self._nodes.shape)
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
        return self.nodes

    # -- indexing ---------------------------------------------------------
    def __getitem__(self, key):
        _check_index(key)
        return _wrap(self.nodes[key])

    def __setitem__(self, key, value):
        """NumPy's assignment (item, slice, integer-array and boolean-mask
        indices), on the elements; writes through a view reach its base."""
        _check_index(key)
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
        elif v.size != 1:
            raise ValueError(f"cannot store a value of shape {v.shape} into one element")
        else:
            nodes[key] = v.reshape(())[()]  # the node itself, never a 0-d array inside the object array

    # -- methods users call -----------------------------------------------
    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], numbers.Integral) else shape
        if _is_tensor(self) and order == "C":
            new = np.empty(self.shape, dtype=np.bool_).reshape(shape).shape
            return _view_of(self, T.reshape(self.tensor, new), lambda a: a.reshape(new))
        return TracedArray(self.nodes.reshape(shape, order=order))

    def ravel(self, order="C"):
        if _is_tensor(self) and order == "C":
            return self.reshape(-1)
        return TracedArray(self.nodes.ravel(order))

    flatten = ravel

    def transpose(self, *axes):
        if _is_tensor(self):
            axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
            perm = tuple(a % self.ndim for a in axes) if axes else tuple(range(self.ndim))[::-1]
            return _view_of(self, T.transpose(self.tensor, perm), lambda a: a.transpose(perm))
        return TracedArray(self.nodes.transpose(*axes))

    def swapaxes(self, a, b):
        if _is_tensor(self):
            perm = list(range(self.ndim))
            a, b = a % self.ndim, b % self.ndim
            perm[a], perm[b] = perm[b], perm[a]
            return self.transpose(perm)
        return TracedArray(self.nodes.swapaxes(a, b))

    def squeeze(self, axis=None):
        if _is_tensor(self):
            return self.reshape(np.empty(self.shape, dtype=np.bool_).squeeze(axis).shape)
        return TracedArray(self.nodes.squeeze(axis))

    def copy(self):
        if _is_tensor(self):
            return _from_tensor(self.tensor)
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
        return _max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return _min(self, axis=axis, keepdims=keepdims)

    def dot(self, other):
        return np.dot(self, other)

    def clip(self, a_min=None, a_max=None):
        return _clip(self, a_min, a_max)

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
        if method == "reduce" and ufunc.__name__ in _REDUCE:
            return _REDUCE[ufunc.__name__](inputs[0], axis=kwargs.get("axis", 0),
                                           keepdims=kwargs.get("keepdims", False))
        if method != "__call__":
            raise UnsupportedOperationError(f"np.{ufunc.__name__}.{method} is not supported on traced arrays")
        if ufunc.__name__ == "matmul" and len(inputs) == 2:
            return _matmul(*inputs)
        if ufunc.__name__ in ("matmul", "vecdot", "matvec", "vecmat"):
            return _wrap(ufunc(*[_nodes(x) for x in inputs]))
        builder = UFUNCS.get(ufunc.__name__)
        if builder is None:
            raise UnsupportedOperationError(
                f"the ufunc {ufunc.__name__!r} is not supported by symjac's tracer; supported: "
                f"{', '.join(sorted(UFUNCS))}")
        if any(_is_tensor(x) for x in inputs):
            return _map_tensor(builder, inputs)
        arrays = [_nodes(x) for x in inputs]
        result = np.frompyfunc(builder, len(arrays), 1)(*arrays)
        return TracedArray(result if isinstance(result, np.ndarray) else _scalar_array(result))

    def __array_function__(self, func, types, args, kwargs):
        impl = FUNCTIONS.get(func)
        if impl is not None:
            return impl(*args, **kwargs)
        if func in PASSTHROUGH:
            bad = [k for k in ("out", "dtype", "where") if kwargs.get(k) is not None and kwargs.get(k) is not True]
            if bad:
                raise UnsupportedOperationError(
                    f"np.{func.__name__}(..., {bad[0]}=...) on traced arrays: traced values are computed in the "
                    "kernel's dtype; drop the argument (use np.where to mask)")
            with np.errstate(all="ignore"):
                return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))
        name = getattr(func, "__module__", "numpy").replace("numpy.", "np.").replace("numpy", "np")
        raise UnsupportedOperationError(
            f"{name}.{func.__name__} is not supported on traced arrays (symjac cannot trace it); "
            "write the computation with supported NumPy functions")


# -- ufuncs -----------------------------------------------------------------

def _m(op):
    return lambda *args: make(op, *args)


UFUNCS = {
    "add": _m("add"),
    "subtract": _m("sub"),
    "multiply": _m("mul"),
    "true_divide": _m("div"),
    "divide": _m("div"),
    "power": _m("pow"),
    "float_power": _m("pow"),
    "negative": _m("neg"),
    "positive": lambda x: x,
    "conjugate": lambda x: x,
    "absolute": _m("abs"),
    "fabs": _m("abs"),
    "square": lambda x: make("mul", x, x),
    "reciprocal": lambda x: make("div", 1.0, x),
    "arctan2": _m("atan2"),
    "hypot": _m("hypot"),
    "maximum": _m("max"),
    "minimum": _m("min"),
    "less": _m("lt"),
    "less_equal": _m("le"),
    "greater": _m("gt"),
    "greater_equal": _m("ge"),
    "equal": _m("eq"),
    "not_equal": _m("ne"),
    "logical_and": _m("and"),
    "logical_or": _m("or"),
    "logical_not": _m("not"),
    "logical_xor": _m("ne"),
    # On the boolean results of comparisons, NumPy's & | ^ ~ are logical.
    "bitwise_and": _m("and"),
    "bitwise_or": _m("or"),
    "bitwise_xor": _m("ne"),
    "invert": _m("not"),
    "deg2rad": lambda x: make("mul", x, math.pi / 180.0),
    "radians": lambda x: make("mul", x, math.pi / 180.0),
    "rad2deg": lambda x: make("mul", x, 180.0 / math.pi),
    "degrees": lambda x: make("mul", x, 180.0 / math.pi),
    "expit": _m("expit"),
    "logit": lambda x: make("log", make("div", x, make("sub", 1.0, x))),
}
for _op in ("sqrt", "cbrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos",
            "tan", "sinh", "cosh", "tanh", "sign", "erf", "erfc"):
    UFUNCS[_op] = _m(_op)
for _np, _op in (("arcsin", "asin"), ("arccos", "acos"), ("arctan", "atan"), ("arcsinh", "asinh"),
                 ("arccosh", "acosh"), ("arctanh", "atanh")):
    UFUNCS[_np] = _m(_op)


def _ufunc_method(name):
    fn = getattr(np, name)
    return lambda self, *other: fn(self, *other)


# np.array([x[0], x[1]]) of traced scalars is a plain object array of 0-d
# TracedArrays (np.array cannot be intercepted); NumPy's object loops apply a
# ufunc by calling the element's method of the same name.
for _name in ("sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh",
              "arccosh", "arctanh", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt",
              "cbrt", "square", "reciprocal", "sign", "arctan2", "hypot", "deg2rad", "rad2deg"):
    setattr(TracedArray, _name, _ufunc_method(_name))
TracedArray.__abs__ = lambda self: np.abs(self)


# -- tensor mode ----------------------------------------------------------------
# A TracedArray whose ``tensor`` is set stands for one tensor node: contractions
# big enough to be worth a loop, and everything computed elementwise from them,
# stay whole (symjac.tensor); anything else sees the elements (``nodes``).

# A context variable, not module state: a trace in another thread keeps its own policy.
_POLICY_VAR = contextvars.ContextVar("symjac_tensor_policy",
                                     default={"min_work": 64, "min_operand": 32, "unroll_size": 8})


class tensor_policy:
    """When contractions become tensor ops (loops) instead of unrolled scalars.

    A contraction (``@``, ``np.dot``, ``np.einsum``, ``np.tensordot``) becomes
    one tensor op when an operand already is one, or when it costs at least
    ``min_work`` multiply-adds and an operand holds at least ``min_operand``
    non-constant entries (runtime weights, not a rotation matrix whose zeros
    and ones simplify away).  Results of at most ``unroll_size`` entries are
    unrolled into scalars.  ``tensor_policy(min_work=None)`` unrolls everything.

    >>> import numpy as np, symjac
    >>> with symjac.tensor_policy(min_work=None):
    ...     g = symjac.trace(lambda x, W: np.tanh(W @ x), (40,), (40, 40))
    >>> len(g) > 1600
    True
    """

    def __init__(self, min_work=64, min_operand=32, unroll_size=8):
        for name, v in (("min_work", min_work), ("min_operand", min_operand), ("unroll_size", unroll_size)):
            if (v is None and name == "min_work") or (isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                     and v >= 0):
                continue
            raise ValueError(f"tensor_policy: {name} must be a non-negative int"
                             f"{' or None' if name == 'min_work' else ''}, got {v!r}")
        self.new = {"min_work": min_work, "min_operand": min_operand, "unroll_size": unroll_size}

    def __enter__(self):
        self._tokens = getattr(self, "_tokens", []) + [_POLICY_VAR.set(dict(self.new))]
        return self

    def __exit__(self, *exc):
        _POLICY_VAR.reset(self._tokens.pop())


def _is_tensor(x):
    if not isinstance(x, TracedArray) or x.tensor is None:
        return False
    if x._nodes is not None and not _still_elements(x._nodes, x.tensor):
        x.tensor = None  # written through a view of its elements: the elements are the truth
        return False
    return True


def _still_elements(arr, t):
    return all(isinstance(n, Node) and n.op == "elem" and n.args[0] is t and n.attr == i
               for i, n in enumerate(arr.flat))


def _view_of(base, t, fn):
    """A tensor-mode result of a NumPy view operation on ``base``."""
    out = _from_tensor(t)
    if out.tensor is not None:
        out._view = (base, fn)
    return out


def _from_tensor(t):
    """A TracedArray for tensor node ``t``; small results are unrolled into scalars."""
    if not t.shape:
        return TracedArray(_scalar_array(t))
    if math.prod(t.shape) <= _POLICY_VAR.get()["unroll_size"]:
        return TracedArray(TracedArray(tensor=t).nodes)
    return TracedArray(tensor=t)


def _constant_values(x):
    """The float values of a constant array (numeric, or object array of constant
    nodes), else None."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return x
    if isinstance(x, np.ndarray) and x.dtype == object and x.size and \
            all(isinstance(n, Node) and n.op == "const" for n in x.flat):
        return np.array([n.attr for n in x.flat]).reshape(x.shape)
    return None


def _dense_constant(x):
    """The values of ``x`` when it is a big, dense constant array (captured
    weights), else None.  Mostly-zero constants (a stoichiometry matrix) stay
    scalar, where their zeros simplify away."""
    if _POLICY_VAR.get()["min_work"] is None or isinstance(x, TracedArray):
        return None
    vals = _constant_values(x)
    if vals is None or vals.size < max(_POLICY_VAR.get()["min_operand"], 2) or np.count_nonzero(vals) < 0.9 * vals.size:
        return None
    return vals


def _tensor_of(x):
    """The tensor (or scalar) node for a model value."""
    if _is_tensor(x):
        return x.tensor
    vals = _dense_constant(x)
    if vals is not None:
        return T.tconst(vals)
    arr = _nodes(x)
    if arr.ndim == 0:
        return arr[()]
    perm = _leaf_order(arr)
    if perm is not None:  # input leaves in transposed order (W.T): the input block, transposed
        base = np.transpose(arr, perm)
        return T.transpose(T.pack(list(base.ravel()), base.shape), tuple(np.argsort(perm)))
    return T.pack(list(arr.ravel()), arr.shape)


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


def _map_tensor(builder, inputs):
    shape = np.broadcast_shapes(*[np.shape(x) if not isinstance(x, TracedArray) else x.shape for x in inputs])
    args = []
    for x in inputs:
        t = _tensor_of(x)
        args.append(t if not t.shape else T.broadcast_to(t, shape))
    return _from_tensor(T.fit(builder(*args), shape))


def _variable_count(x):
    if _is_tensor(x):
        return x.size
    if _dense_constant(x) is not None:
        return x.size
    if isinstance(x, TracedArray) or (isinstance(x, np.ndarray) and x.dtype == object):
        return sum(1 for n in _nodes(x).ravel() if n.op != "const")
    return 0


def _worth_tensor(sizes, a, b):
    if _is_tensor(a) or _is_tensor(b):
        return True
    if _POLICY_VAR.get()["min_work"] is None:
        return False
    if math.prod(sizes.values()) < _POLICY_VAR.get()["min_work"]:
        return False
    if _sparse_constant(a) or _sparse_constant(b):
        return False  # unrolled, its zeros drop out, and the Jacobian keeps its sparsity
    return max(_variable_count(a), _variable_count(b)) >= _POLICY_VAR.get()["min_operand"]


def _sparse_constant(x):
    if isinstance(x, TracedArray):
        x = x._nodes if x.tensor is None else None
    vals = _constant_values(x)
    return vals is not None and vals.size > 0 and np.count_nonzero(vals) < 0.9 * vals.size


def _einsum2(spec, a, b, fallback):
    """Two-operand contraction with explicit subscripts, as a tensor op when worth it."""
    sa, sb, out = T._parse(spec)
    sizes = {}
    for sub, x in ((sa, a), (sb, b)):
        shape = np.shape(x) if not isinstance(x, TracedArray) else x.shape
        if len(sub) != len(shape) or len(set(sub)) != len(sub):
            return fallback()
        for ch, d in zip(sub, shape):
            if sizes.setdefault(ch, d) != d:
                return fallback()
    if not _worth_tensor(sizes, a, b):
        return fallback()
    return _from_tensor(T.einsum(spec, _tensor_of(a), _tensor_of(b)))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _matmul(a, b):
    da, db = np.ndim(a) if not isinstance(a, TracedArray) else a.ndim, \
        np.ndim(b) if not isinstance(b, TracedArray) else b.ndim
    if da == 0 or db == 0:
        return _wrap(np.matmul(_nodes(a), _nodes(b)))
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
    return _einsum2(f"{sa},{sb}->{out}", a, b, lambda: _wrap(np.matmul(_nodes(a), _nodes(b))))


def _dot(a, b, out=None):
    if out is not None:
        raise UnsupportedOperationError("np.dot(..., out=...) on traced arrays")
    da, db = (x.ndim if isinstance(x, TracedArray) else np.ndim(x) for x in (a, b))
    if da <= 2 and db <= 2 and da and db:
        return _matmul(a, b)
    return _wrap(np.dot(_nodes(a), _nodes(b)))


def _einsum(*operands, optimize=False, **kwargs):
    fallback = lambda: _wrap(np.einsum(*_unwrap(operands), **_unwrap(kwargs)))  # noqa: E731
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
        acc = _einsum2(step, a, b, lambda: _wrap(np.einsum(step, _nodes(a), _nodes(b))))
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
        return _wrap(np.inner(_nodes(a), _nodes(b)))
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
        return _wrap(np.tensordot(_nodes(a), _nodes(b), axes))
    sa = list(_LETTERS[:da])
    sb = list(_LETTERS[da: da + db])
    for i, j in zip(ax_a, ax_b):
        sb[j] = sa[i]
    out = [c for i, c in enumerate(sa) if i not in ax_a] + [c for j, c in enumerate(sb) if j not in ax_b]
    spec = f"{''.join(sa)},{''.join(sb)}->{''.join(out)}"
    return _einsum2(spec, a, b, lambda: _wrap(np.tensordot(_nodes(a), _nodes(b), axes)))


def _keep(t, shape, axes, keepdims):
    """A reduction's result with the reduced axes kept as size 1 when asked."""
    return T.reshape(t, tuple(1 if i in axes else d for i, d in enumerate(shape))) if keepdims else t


def _axes_of(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def _sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    if dtype is not None or out is not None or where is not True:
        _passthrough_error(np.sum, dtype, out, {"where": where})
    if not _is_tensor(a):
        kw = {} if initial is None else {"initial": initial}
        return _wrap(np.sum(_nodes(a), axis=axis, keepdims=keepdims, **kw))
    axes = _axes_of(axis, a.ndim)
    r = _from_tensor(_keep(T.tsum(a.tensor, axes), a.shape, axes, keepdims))
    return r if initial is None else r + initial


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, where=True):
    if dtype is not None or out is not None or where is not True:
        _passthrough_error(np.mean, dtype, out, {"where": where})
    if not _is_tensor(a):
        return _wrap(np.mean(_nodes(a), axis=axis, keepdims=keepdims))
    count = math.prod(a.shape[i] for i in _axes_of(axis, a.ndim))
    return _sum(a, axis=axis, keepdims=keepdims) / float(count)


def _passthrough_error(func, dtype, out, kw):
    bad = "dtype" if dtype is not None else "out" if out is not None else next(iter(kw))
    raise UnsupportedOperationError(
        f"np.{func.__name__}(..., {bad}=...) on traced arrays: traced values are computed in the "
        "kernel's dtype; drop the argument (use np.where to mask)")


def _moveaxis(a, source, destination):
    if not _is_tensor(a):
        return _wrap(np.moveaxis(_nodes(a), source, destination))
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
    if not _is_tensor(a):
        return _wrap(np.expand_dims(_nodes(a), axis))
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
    if _is_tensor(a):
        axes = _axes_of(axis, a.ndim)
        r = _from_tensor(_keep(T.textreme("t" + op, a.tensor, axes), a.shape, axes, keepdims))
        return r if initial is None else (np.maximum if op == "max" else np.minimum)(r, initial)
    r = _reduce_nodes(a, op, axis, keepdims, op)
    return r if initial is None else (np.maximum if op == "max" else np.minimum)(r, initial)


def _max(a, axis=None, out=None, keepdims=False, initial=None, where=True):
    return _extreme("max", a, axis, out, keepdims, initial, where)


def _min(a, axis=None, out=None, keepdims=False, initial=None, where=True):
    return _extreme("min", a, axis, out, keepdims, initial, where)


_REDUCE = {
    "add": lambda a, axis, keepdims: _sum(a, axis=axis, keepdims=keepdims),
    "multiply": lambda a, axis, keepdims: _wrap(np.prod(_nodes(a), axis=axis, keepdims=keepdims)),
    "maximum": lambda a, axis, keepdims: _max(a, axis, keepdims=keepdims),
    "minimum": lambda a, axis, keepdims: _min(a, axis, keepdims=keepdims),
}


def _where(condition, x=None, y=None):
    if x is None or y is None:
        raise UnsupportedOperationError(
            "np.where(condition) with one argument returns data-dependent indices and cannot be "
            "traced; use np.where(condition, a, b)")
    if any(_is_tensor(v) for v in (condition, x, y)):
        return _map_tensor(lambda ci, ai, bi: make("where", ci, ai, bi), (condition, x, y))
    c, a, b = _nodes(condition), _nodes(x), _nodes(y)
    result = np.frompyfunc(lambda ci, ai, bi: make("where", ci, ai, bi), 3, 1)(c, a, b)
    return _wrap(result if isinstance(result, np.ndarray) else _scalar_array(result))


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
        raise UnsupportedOperationError(f"np.linalg.norm of a matrix with ord={ord!r} (singular values) "
                                        "is not supported; use ord=None/'fro', 1, -1, inf or -inf")
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
    shp = np.shape(_nodes(a)) if shape is None else shape
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


FUNCTIONS = {
    np.max: _max,
    np.amax: _max,
    np.min: _min,
    np.amin: _min,
    np.where: _where,
    np.clip: _clip,
    np.linalg.norm: _norm,
    np.zeros_like: lambda a, dtype=None, order="K", subok=True, shape=None: _full_like(a, 0.0, shape=shape),
    np.ones_like: lambda a, dtype=None, order="K", subok=True, shape=None: _full_like(a, 1.0, shape=shape),
    np.empty_like: lambda a, dtype=None, order="K", subok=True, shape=None: _full_like(a, 0.0, shape=shape),
    np.full_like: _full_like,
    # with like=traced: np.zeros(n, like=y) is the traced counterpart of np.zeros(n)
    np.zeros: lambda shape, dtype=None, order="C", **kw: _filled(shape, 0.0, dtype, "zeros"),
    np.empty: lambda shape, dtype=None, order="C", **kw: _filled(shape, 0.0, dtype, "empty"),
    np.ones: lambda shape, dtype=None, order="C", **kw: _filled(shape, 1.0, dtype, "ones"),
    np.full: lambda shape, fill_value, dtype=None, order="C", **kw: _filled(shape, fill_value, dtype),
    np.array: _array_like,
    np.asarray: _array_like,
    np.asanyarray: _array_like,
    np.arange: _constant_like(np.arange),
    np.eye: _constant_like(np.eye),
    np.identity: _constant_like(np.identity),
    np.array_equal: _array_equal_error,
    np.allclose: _array_equal_error,
    np.dot: _dot,
    np.matmul: _matmul,
    np.einsum: _einsum,
    np.tensordot: _tensordot,
    np.inner: _inner,
    np.linalg.multi_dot: _multi_dot,
    np.sum: _sum,
    np.mean: _mean,
    np.moveaxis: _moveaxis,
    np.expand_dims: _expand_dims,
    np.reshape: lambda a, shape=None, order="C", **kw: (a if isinstance(a, TracedArray) else TracedArray(_nodes(a)))
    .reshape(kw.get("newshape", shape), order=order),
    np.transpose: lambda a, axes=None: (a if isinstance(a, TracedArray) else TracedArray(_nodes(a)))
    .transpose(*(() if axes is None else (axes,))),
    np.ravel: lambda a, order="C": (a if isinstance(a, TracedArray) else TracedArray(_nodes(a))).ravel(order),
    np.squeeze: lambda a, axis=None: (a if isinstance(a, TracedArray) else TracedArray(_nodes(a))).squeeze(axis),
    np.swapaxes: lambda a, x, y: (a if isinstance(a, TracedArray) else TracedArray(_nodes(a))).swapaxes(x, y),
}

PASSTHROUGH = {
    np.transpose, np.reshape, np.ravel, np.squeeze, np.expand_dims, np.concatenate, np.stack,
    np.hstack, np.vstack, np.dstack, np.column_stack, np.moveaxis, np.swapaxes, np.atleast_1d,
    np.atleast_2d, np.atleast_3d, np.broadcast_to, np.broadcast_arrays, np.flip, np.fliplr,
    np.flipud, np.roll, np.tile, np.repeat, np.diag, np.diagonal, np.trace, np.tril, np.triu,
    np.cross, np.dot, np.vdot, np.einsum, np.outer, np.inner, np.tensordot, np.kron, np.sum,
    np.prod, np.cumsum, np.cumprod, np.mean, np.take, np.append, np.split, np.array_split,
    np.copy, np.diff, np.shape, np.ndim, np.size, np.linalg.multi_dot, np.asarray, np.asanyarray,
    np.array, np.real, np.conjugate, np.block, np.pad, np.insert, np.delete,
    np.polyval, np.linalg.matrix_power, np.result_type, getattr(np, "trapezoid", None),
}
PASSTHROUGH = {f for f in PASSTHROUGH if callable(f)}


# -- tracing ------------------------------------------------------------------

def make_inputs(shapes, trace_id=None):
    """Fresh input leaves, one object array per shape."""
    tid = next(_trace_ids) if trace_id is None else trace_id
    arrays = []
    for k, shape in enumerate(shapes):
        arr = np.empty(shape, dtype=object)
        flat = arr.reshape(-1)
        for i in range(flat.size):
            flat[i] = intern("input", (), (tid, k, i))
        arrays.append(arr)
    return arrays


def call_traced(f, arrays, note=None):
    """Call ``f`` on traced copies of the leaf ``arrays``.  An error raised
    while tracing gets ``note()`` (what the arguments looked like) as a note."""
    try:
        try:
            return f(*[TracedArray(a.copy()) for a in arrays])
        except ValueError as e:
            # NumPy storing a traced value (a sequence to it) into an array of numbers
            if "setting an array element with a sequence" in str(e):
                raise NumericArrayError() from e
            raise
    except Exception as e:
        if note is not None:
            e.add_note(note())
        raise


def outputs_of(result):
    """(list of node arrays, treedef) for whatever a model returned.

    Tuples (nested or not) are several outputs; anything else, lists
    included, is one array (as ``np.array`` would make it).
    """
    leaves = []

    def flat(r):
        if isinstance(r, tuple):
            return tuple(flat(e) for e in r)
        leaves.append(_nodes(r))
        return "*"

    treedef = flat(result)
    return leaves, treedef


def unflatten(treedef, leaves):
    """Inverse of `outputs_of`: rebuild the nested tuples around ``leaves``."""
    it = iter(leaves)

    def build(d):
        return next(it) if d == "*" else tuple(build(e) for e in d)

    return build(treedef)


def _shape_of(example):
    if isinstance(example, tuple) and all(isinstance(s, numbers.Integral) for s in example):
        return tuple(int(s) for s in example)
    if isinstance(example, TracedArray):
        return example.shape
    arr = np.asarray(example)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"example argument of dtype {arr.dtype}: give a shape tuple or a real array")
    return arr.shape


def trace(f, *examples):
    """Trace the per-sample function ``f`` into a `Graph`.

    Each example is a shape tuple or an array whose shape is used (its values
    are not).

    >>> import numpy as np, symjac
    >>> g = symjac.trace(lambda x, y: x * y + np.sin(x), (2,), (2,))
    >>> len(g)
    6
    """
    if not callable(f):
        raise TypeError(f"trace: f must be callable, got {type(f).__name__}")
    shapes = [_shape_of(e) for e in examples]
    with BUILDING:
        inputs = make_inputs(shapes)
        outputs, treedef = outputs_of(call_traced(f, inputs))
    return Graph(inputs, outputs, treedef=treedef)


def call_graph(graph, args):
    """Apply a graph to traced arguments (substitution) or numbers (evaluation)."""
    if any(is_traced(a) for a in args):
        return _substitute_graph(graph, args)
    values = {}
    for leaf, arg in zip(graph.inputs, args):
        arr = np.broadcast_to(np.asarray(arg, dtype=float), leaf.shape)
        for l, v in zip(leaf.ravel(), arr.ravel()):
            values[l.id] = v
    vals = evaluate_nodes(graph.output_nodes(), values)
    outs, i = [], 0
    for o in graph.outputs:
        outs.append(np.array(vals[i: i + o.size], dtype=float).reshape(o.shape))
        i += o.size
    return unflatten(graph.treedef, outs)


def _substitute_graph(graph, args):
    with BUILDING:
        mapping = {}
        for leaf, arg in zip(graph.inputs, args):
            arr = np.broadcast_to(_nodes(arg), leaf.shape)
            for l, n in zip(leaf.ravel(), arr.ravel()):
                mapping[l.id] = n
        roots = graph.output_nodes()
        new = substitute(roots, mapping, rebuild)
        outs, i = [], 0
        for o in graph.outputs:
            arr = np.empty(o.shape, dtype=object)
            arr.reshape(-1)[:] = new[i: i + o.size] if o.size else []
            i += o.size
            outs.append(TracedArray(arr))
    return unflatten(graph.treedef, outs)
