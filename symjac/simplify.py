"""The simplifying constructor: every node is built through `make`.

`make` folds constants, applies the algebraic identities below, puts the
arguments of commutative ops in a canonical order, and interns the result, so
simplification and CSE happen at construction and a graph never holds a
foldable or repeated node.  Dead code is never visited: walks start from the
outputs.

IEEE exactness.  By default only rewrites that give the same IEEE result for
every input, up to the sign of a zero result, are applied: ``x+0 -> x``
(``-0.0 + 0.0`` is ``+0.0``), ``0-x -> -x`` (``0 - 0.0`` is ``+0.0``),
``x*1``, ``x/1``, ``x-0``, ``--x``, ``x**1``, ``x**0 -> 1`` (IEEE pow), ``where(c, a, a) -> a``,
``a + (-b) -> a - b`` and folding of constants in float64.  The rewrites
that can turn NaN or infinity into a number -- ``x*0 -> 0``, ``x-x -> 0``,
``x/x -> 1`` -- are opt-in, inside ``with symjac.non_ieee_rewrites():``.
Derivatives never need them: a structurally zero derivative is a symbolic
zero and is skipped, never multiplied.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers

import numpy as np

from symjac.errors import conversion_error
from symjac.graph import Node, intern
from symjac.ops import OPS, UNARY, evaluate

__all__ = ["make", "rebuild", "BUILDERS", "const", "to_node", "ZERO", "ONE", "is_zero", "is_one", "non_ieee_rewrites"]

# A context variable, not module state: a trace in another thread keeps its own setting.
_NON_IEEE_VAR = contextvars.ContextVar("symjac_non_ieee_rewrites", default=False)


@contextlib.contextmanager
def non_ieee_rewrites(enabled=True):
    """Allow ``x*0 -> 0``, ``x-x -> 0`` and ``x/x -> 1`` while tracing.

    These drop NaN and infinity (``inf*0`` is NaN in IEEE arithmetic), so they
    are off unless asked for.  The setting belongs to the current thread (and
    asyncio task): traces running elsewhere keep IEEE semantics.

    >>> import numpy as np, symjac
    >>> with symjac.non_ieee_rewrites():
    ...     g = symjac.trace(lambda x: x[0] * 0.0 + x[1], (2,))
    >>> len(g)
    0
    """
    token = _NON_IEEE_VAR.set(bool(enabled))
    try:
        yield
    finally:
        _NON_IEEE_VAR.reset(token)


def const(value):
    """The constant node holding ``value`` (a float; booleans become 0.0/1.0)."""
    return intern("const", (), float(value))


ZERO = const(0.0)
ONE = const(1.0)


def is_zero(n):
    return n.op == "const" and n.attr == 0.0


def is_one(n):
    return n.op == "const" and n.attr == 1.0


def to_node(x):
    """A node from a node, a Python or NumPy real number, or a 0-d array."""
    if isinstance(x, Node):
        return x
    if isinstance(x, (bool, np.bool_)):
        return const(1.0 if x else 0.0)
    if isinstance(x, numbers.Real):
        return const(float(x))
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return to_node(x[()])
    if isinstance(x, numbers.Complex):
        raise TypeError(f"complex constant {x!r} in a traced model: symjac kernels are real-valued")
    raise TypeError(f"cannot use {type(x).__name__} value {x!r} as a number in a traced model")


def _fold(op, args):
    value = evaluate(op, [np.float64(a.attr) for a in args])
    return const(float(value))


def make(op, *args):
    """Build (or find) the simplified node ``op(*args)``."""
    args = tuple(to_node(a) for a in args)
    info = OPS[op]
    if info.nargs != len(args):
        raise TypeError(f"op {op!r} takes {info.nargs} arguments, got {len(args)}")
    if all(a.op == "const" for a in args):
        return _fold(op, args)
    shape = _map_shape(op, args)
    if shape and any(a.op == "bcast" and not a.args[0].shape for a in args):
        # a broadcast scalar is just the scalar to an elementwise op (so x * 1 still folds)
        args = tuple(a.args[0] if a.op == "bcast" and not a.args[0].shape else a for a in args)
        if not _map_shape(op, args):
            return _fit(make(op, *args), shape)
    simpler = _identities(op, args)
    if simpler is not None:
        return simpler if simpler.shape == shape else _fit(simpler, shape)
    if info.commutative and _order_key(args[0]) > _order_key(args[1]):
        args = (args[1], args[0])
    return intern(op, args, None, info.dtype, shape)


def _map_shape(op, args):
    """Elementwise ops take scalars and tensors of one shape (scalars broadcast)."""
    shape = ()
    for a in args:
        if a.shape:
            if shape and a.shape != shape:
                raise ValueError(f"elementwise {op!r} on tensors of shapes {shape} and {a.shape}; "
                                 "broadcast them first (symjac.tensor.broadcast_to)")
            shape = a.shape
    return shape


def _fit(node, shape):
    from symjac.tensor import fit  # tensor ops build on make

    return fit(node, shape)


# Builders of ops that carry an attribute (tensor ops register theirs here).
BUILDERS: dict = {}


def rebuild(node, args):
    """``node``'s op applied to new ``args`` (for `symjac.graph.substitute`)."""
    build = BUILDERS.get(node.op)
    if build is not None:
        return build(args, node.attr)
    return make(node.op, *args)


def _order_key(node):
    # Constants first, then creation order: constants outlive traces while every
    # other node of a retrace is rebuilt in the same order, so a retraced model
    # prints the same kernel source (and hits the kernel cache).
    return (node.op != "const", node.id)


def _identities(op, args):
    rule = _IDENTITIES.get(op)
    return rule(*args) if rule else None


def _add(a, b):
    if is_zero(a):
        return b
    if is_zero(b):
        return a
    if b.op == "neg":
        return make("sub", a, b.args[0])
    if a.op == "neg":
        return make("sub", b, a.args[0])
    return None


def _sub(a, b):
    if is_zero(b):
        return a
    if is_zero(a):
        return make("neg", b)
    if b.op == "neg":
        return make("add", a, b.args[0])
    if a is b and _NON_IEEE_VAR.get():
        return ZERO
    return None


def _mul(a, b):
    if is_one(a):
        return b
    if is_one(b):
        return a
    if a.op == "const" and a.attr == -1.0:
        return make("neg", b)
    if b.op == "const" and b.attr == -1.0:
        return make("neg", a)
    if a.op == "neg" and b.op == "neg":
        return make("mul", a.args[0], b.args[0])
    if _NON_IEEE_VAR.get() and (is_zero(a) or is_zero(b)):
        return ZERO
    return None


def _div(a, b):
    if is_one(b):
        return a
    if b.op == "const" and b.attr == -1.0:
        return make("neg", a)
    if a is b and _NON_IEEE_VAR.get():
        return ONE
    return None


def _pow(a, b):
    if b.op == "const":
        if b.attr == 1.0:
            return a
        if b.attr == 0.0:
            return ONE
    return None


def _neg(a):
    if a.op == "neg":
        return a.args[0]
    return None


def _where(c, a, b):
    if a is b:
        return a
    if c.op == "const":
        return a if c.attr else b
    if c.op == "not":
        return make("where", c.args[0], b, a)
    return None


def _stop(a):
    if a.op in ("const", "stop"):
        return a
    if a.op == "elem":  # stop the whole tensor once: its elements stay elements (block stores)
        from symjac.tensor import elem

        return elem(make("stop", a.args[0]), a.attr)
    return None


_IDENTITIES = {
    "stop": _stop,
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "pow": _pow,
    "neg": _neg,
    "where": _where,
}


# -- Node arithmetic -------------------------------------------------------
# NumPy's object-dtype loops (np.dot, np.einsum, np.sum, np.sin on object
# arrays) call the element's operators and same-named methods; giving nodes
# these makes every such NumPy routine build graph nodes.  Equality stays
# identity (hash-consing needs it); use np.equal on traced arrays.


def _binary(op, swap=False):
    def method(self, other):
        try:
            other = to_node(other)
        except TypeError:
            return NotImplemented
        return make(op, other, self) if swap else make(op, self, other)

    return method


for _name, _op in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("truediv", "div"),
                   ("pow", "pow"), ("lt", "lt"), ("le", "le"), ("gt", "gt"), ("ge", "ge")]:
    setattr(Node, f"__{_name}__", _binary(_op))
    if _name not in ("lt", "le", "gt", "ge"):
        setattr(Node, f"__r{_name}__", _binary(_op, swap=True))
Node.__neg__ = lambda self: make("neg", self)
Node.__pos__ = lambda self: self
Node.__abs__ = lambda self: make("abs", self)
def _node_eq(self, other):
    if self is other:
        return True
    from symjac.errors import TracerBoolError

    raise TracerBoolError("== between traced values of a plain object array (from np.asarray or np.array)")


# Nodes are compared by identity internally (hash-consing makes that structural
# equality); a == reaching a node from NumPy's object loops would silently be
# identity, so it raises instead of answering False.
Node.__eq__ = _node_eq
Node.__ne__ = lambda self, other: not _node_eq(self, other)
Node.__hash__ = object.__hash__

_NUMPY_NAMES = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh",
                "acosh": "arccosh", "atanh": "arctanh", "neg": "negative", "abs": "absolute"}
for _name in UNARY:
    setattr(Node, _NUMPY_NAMES.get(_name, _name), (lambda op: lambda self: make(op, self))(_name))
Node.conjugate = lambda self: self
Node.arctan2 = lambda self, other: make("atan2", self, other)
Node.hypot = lambda self, other: make("hypot", self, other)


def _node_float(self):
    raise conversion_error("float()")


Node.__float__ = _node_float
Node.__int__ = _node_float
Node.__index__ = _node_float
del _name, _op
