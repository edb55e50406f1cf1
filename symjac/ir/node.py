"""Nodes and the simplifying constructor.

Every value symjac reasons about is a `Node` (op, args, attr, shape, kind),
built only through `intern`, which returns the existing node when one with
the same op, arguments and attribute exists: a repeated subexpression is one
object from birth (CSE by construction).  Elementwise nodes are built with
`make`, which folds constants, applies the op's own simplifications (from
its registry entry), puts the arguments of commutative ops in a canonical
order and interns the result; ops with an attribute are built by their own
builders (`symjac.ops`), which intern too.

IEEE exactness.  Ops declare only rewrites that give the same IEEE result
for every input (up to the sign of a zero); the ones that can turn NaN or
infinity into a number (``x*0 -> 0``, ``x-x -> 0``, ``x/x -> 1``) apply only
inside ``with symjac.non_ieee_rewrites():`` (`non_ieee`).  Derivatives never
need them: a structural zero is a symbolic zero and is skipped, never
multiplied.

Nodes have NumPy's arithmetic (``+``, ``*``, ``sin`` as a method...), so
NumPy's object-dtype routines (``np.dot``, ``np.sum`` on object arrays) build
graph nodes.  Equality stays identity (hash-consing makes that structural
equality); ``==`` reaching a node from NumPy's object loops raises.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import hashlib
import itertools
import numbers
import re
import sys
import threading
import zlib

import math

import numpy as np

from symjac.errors import TracerBoolError, conversion_error
from symjac.ir.registry import REGISTRY, UFUNCS, lookup

__all__ = ["Node", "intern", "make", "rebuild", "const", "to_node", "ZERO", "ONE", "is_zero", "is_one",
           "non_ieee_rewrites", "non_ieee", "make_inputs", "ufunc_builder", "BUILDING", "broadcast_scalar",
           "tconst", "iconst", "tconst_of", "constant_value", "fold", "gc_paused"]

_ids = itertools.count()
_trace_ids = itertools.count()
# The intern table: key -> node, strong references.  A node nothing else holds
# any more is dropped by `_sweep` when the table has doubled since the last
# one (a weak-value table cost 1.5 us and 140 bytes a node: a weak reference
# object per node and its callback on every death).
_TABLE: dict = {}
_SWEEP = {"at": 1 << 16}

_GC = {"depth": 0, "resume": False}
_GC_LOCK = threading.Lock()


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector for the block (if it is on).

    A build allocates millions of objects that all stay alive (nodes point
    to older nodes only: no cycles), and the collector's full passes over
    them grow with the graph: the 10^5-step chain's Jacobian (10^6
    statements) took 25.8 s with them and 22.1 s without
    (`benchmarks/RESULTS.md`).  Blocks on several threads share one pause;
    garbage cycles made meanwhile are collected after the last one ends.
    """
    with _GC_LOCK:
        if _GC["depth"] == 0:
            _GC["resume"] = gc.isenabled()
            gc.disable()
        _GC["depth"] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC["depth"] -= 1
            if _GC["depth"] == 0 and _GC["resume"]:
                gc.enable()


class _BuildLock:
    """Held while a graph is built (trace, differentiate, lower): a re-entrant
    lock, with the garbage collector paused (`gc_paused`) while it is held.

    The intern table is one per process, and node ids break ties in the order
    of commutative arguments: two threads building at once could make two
    nodes for one key and interleave ids (a retrace would print different
    source).  Tracing is pure Python, so holding the GIL-bound work to one
    thread at a time costs no parallelism.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._depth = 0  # changed only by the thread holding the lock
        self._pause = None

    def __enter__(self):
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1:
            self._pause = gc_paused()
            self._pause.__enter__()
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self._pause.__exit__(None, None, None)
        self._lock.release()
        return False


BUILDING = _BuildLock()


class Node:
    """One value of a computation: a scalar, or a tensor of static ``shape``
    (per sample).

    ``op`` names the op (see `symjac.ir.registry`), ``args`` are the operand
    nodes, ``attr`` a hashable attribute (the value of a constant, the
    position of an input, a tensor op's axes), ``kind`` the result dtype class
    (``"float"`` or ``"bool"``).  Two nodes are equal exactly when they are
    the same node, which hash-consing makes the same as structurally equal.
    """

    __slots__ = ("op", "args", "attr", "shape", "kind", "id", "digest")

    def __init__(self, op, args, attr, kind, shape=()):
        self.op = op
        self.args = args
        self.attr = attr
        self.shape = shape
        self.kind = kind
        self.id = next(_ids)
        self.digest = None  # `structural_digest`, computed when first asked

    def __repr__(self):
        if self.op == "const":
            return f"Node(const {self.attr!r})"
        if self.op == "input":
            return f"Node(input {self.attr[1:]})"
        return f"Node({self.op} #{self.id} of {[a.id for a in self.args]})"

    def __reduce__(self):
        raise TypeError("symjac graph nodes cannot be pickled; keep the generated kernel file (Kernel.path) instead")

    # -- Python protocol: no control flow, equality is identity ------------------
    def __bool__(self):
        raise TracerBoolError()

    def __float__(self):
        raise conversion_error("float()")

    __int__ = __float__
    __index__ = __float__

    def __eq__(self, other):
        if self is other:
            return True
        raise TracerBoolError("== between traced values of a plain object array (from np.asarray or np.array)")

    def __ne__(self, other):
        return not self.__eq__(other)

    __hash__ = object.__hash__

    # -- arithmetic, for NumPy's object-dtype loops -------------------------------
    def _binary(op, swap=False):  # noqa: N805  (a method factory used in the class body)
        def method(self, other):
            try:
                other = to_node(other)
            except TypeError:
                return NotImplemented
            return make(op, other, self) if swap else make(op, self, other)

        return method

    __add__, __radd__ = _binary("add"), _binary("add", True)
    __sub__, __rsub__ = _binary("sub"), _binary("sub", True)
    __mul__, __rmul__ = _binary("mul"), _binary("mul", True)
    __truediv__, __rtruediv__ = _binary("div"), _binary("div", True)
    __pow__, __rpow__ = _binary("pow"), _binary("pow", True)
    __lt__, __le__, __gt__, __ge__ = _binary("lt"), _binary("le"), _binary("gt"), _binary("ge")
    del _binary

    def __neg__(self):
        return make("neg", self)

    def __pos__(self):
        return self

    def __abs__(self):
        return make("abs", self)

    def conjugate(self):
        return self

    def __getattr__(self, name):
        # NumPy's object loops apply a ufunc by calling the element's method of that name
        if name.startswith("__"):
            raise AttributeError(name)
        builder = ufunc_builder(name)
        if builder is None:
            raise AttributeError(f"'Node' object has no attribute {name!r}")
        return lambda *others: builder(self, *others)


def _const_key(value):
    # float.hex tells 0.0 from -0.0 and keeps NaN as one key.
    return value.hex() if isinstance(value, float) else value


def intern(op, args, attr=None, kind="float", shape=()):
    """The unique node for ``(op, args, attr)``, created if needed.

    ``shape`` is a function of the op, its arguments and its attribute, so it
    is not part of the key.  A tensor op whose arguments are all constant is
    evaluated now (`fold`): a constant tensor, not a loop in the kernel.
    """
    key = (op, _const_key(attr) if op == "const" else attr, *[a.id for a in args])
    node = _TABLE.get(key)
    if node is None:
        # fold needs every argument constant: the first and the last (where a commutative op puts a
        # non-constant) are looked at before fold walks them all
        if args and op not in _NO_FOLD and args[0].op in _MAYBE_CONSTANT and args[-1].op in _MAYBE_CONSTANT:
            folded = fold(op, args, attr)
            if folded is not None:
                return folded
        node = _TABLE[key] = Node(op, tuple(args), attr, kind, shape)
        if len(_TABLE) > _SWEEP["at"]:
            _sweep()
    return node


def _only_held_by_a_dict():
    # what sys.getrefcount reports for an object only a dict holds (the
    # interpreter's own references vary between Python versions)
    probe = {0: object()}
    return sys.getrefcount(probe.get(0))  # as `_sweep` asks


_ALONE = _only_held_by_a_dict()


def _sweep():
    """Drop the table's nodes that nothing else holds.  Newest first: a dropped
    node releases its arguments, which the same pass then finds alone too
    (nodes are created after their arguments, and the table keeps creation
    order), so one pass frees a whole dead graph."""
    table, refcount, alone = _TABLE, sys.getrefcount, _ALONE
    for key in reversed(list(table)):
        if refcount(table.get(key)) == alone:
            del table[key]
    _SWEEP["at"] = max(1 << 16, 2 * len(table))


# Tensor constants: weights a model captured, and tensor ops evaluated at trace time.
_CONSTANTS: dict = {}  # (shape, digest) -> read-only float64 array
_NO_FOLD = frozenset({"pack", "bcast", "input", "const", "tconst", "iconst"})  # kept symbolic: they print compactly
_MAYBE_CONSTANT = frozenset({"const", "tconst", "iconst", "pack", "bcast"})  # the ops constant_value may evaluate


def tconst(array):
    """A constant tensor: a hidden kernel argument, not literals in the source."""
    a = np.array(array, dtype=np.float64, order="C")
    if a.ndim == 0:
        return const(float(a))
    a.flags.writeable = False
    key = (a.shape, hashlib.sha1(a.tobytes()).hexdigest())
    _CONSTANTS.setdefault(key, a)
    return intern("tconst", (), key, "float", a.shape)


def iconst(array):
    """A constant tensor of int64 positions (a gather's index): a hidden kernel argument."""
    a = np.array(array, dtype=np.int64, order="C")
    a.flags.writeable = False
    key = ("int64", a.shape, hashlib.sha1(a.tobytes()).hexdigest())
    _CONSTANTS.setdefault(key, a)
    return intern("iconst", (), key, "int", a.shape)


def tconst_of(key):
    """The ``tconst`` (or ``iconst``) node of a stored constant's key."""
    a = _CONSTANTS[key]
    if a.dtype.kind == "i":
        return intern("iconst", (), key, "int", a.shape)
    return intern("tconst", (), key, "float", a.shape)


def constant_value(node):
    """The value of a node that is a constant (a number, a constant tensor, a
    pack of numbers, a broadcast number), else None."""
    op = node.op
    if op == "const":
        return np.float64(node.attr)
    if op in ("tconst", "iconst"):
        return _CONSTANTS[node.attr]
    if op == "pack" and all(a.op == "const" for a in node.args):
        return np.array([a.attr for a in node.args], dtype=np.float64).reshape(node.shape)
    if op == "bcast" and not node.args[0].shape and node.args[0].op == "const":
        return np.full(node.shape, node.args[0].attr, dtype=np.float64)
    return None


def fold(op, args, attr):
    """``op(args)`` evaluated when every argument is a constant, else None."""
    values = []
    for a in args:
        v = constant_value(a)
        if v is None:
            return None
        values.append(v)
    info = REGISTRY.get(op)
    if info is None or info.evaluate is None or info.kind == "leaf" or info.dtype != "float":
        return None
    with np.errstate(all="ignore"):
        return tconst(info.evaluate(values, attr))


def make_inputs(shapes, trace_id=None):
    """Fresh input leaves, one object array of scalar ``input`` nodes per shape."""
    tid = next(_trace_ids) if trace_id is None else trace_id
    arrays = []
    for k, shape in enumerate(shapes):
        n = math.prod(shape)
        # fresh leaves (a new trace id) are never looked up by key: made directly, not interned
        nodes = (Node("input", (), (tid, k, i), "float", ()) for i in range(n))
        arrays.append(np.fromiter(nodes, dtype=object, count=n).reshape(shape))
    return arrays


# -- constants ----------------------------------------------------------------------

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


# -- IEEE exactness ---------------------------------------------------------------------
# A context variable, not module state: a trace in another thread keeps its own setting.
_NON_IEEE = contextvars.ContextVar("symjac_non_ieee_rewrites", default=False)


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
    token = _NON_IEEE.set(bool(enabled))
    try:
        yield
    finally:
        _NON_IEEE.reset(token)


def non_ieee():
    """True inside `non_ieee_rewrites` (for ops' simplification rules)."""
    return _NON_IEEE.get()


# -- the constructor ----------------------------------------------------------------------

def make(op, *args):
    """Build (or find) the simplified elementwise node ``op(*args)``."""
    if len(args) == 2:  # most ops: without building a list
        a, b = args
        args = (a if type(a) is Node else to_node(a), b if type(b) is Node else to_node(b))
    else:
        args = tuple([a if type(a) is Node else to_node(a) for a in args])
    info = REGISTRY.get(op) or lookup(op)
    if info.kind != "elementwise":
        raise TypeError(f"op {op!r} is {info.kind}: build it with its own constructor (symjac.ops), not make()")
    if info.nargs != len(args):
        raise TypeError(f"op {op!r} takes {info.nargs} arguments, got {len(args)}")
    constant = scalar = True
    for a in args:
        if a.op != "const":
            constant = False
        if a.shape:
            scalar = False
    if constant:
        with np.errstate(all="ignore"):
            return const(float(info.evaluate([np.float64(a.attr) for a in args], None)))
    if scalar:  # the common case, without the tensor cases' checks
        simpler = info.simplify(*args) if info.simplify is not None else None
        if simpler is not None:
            return simpler if not simpler.shape else broadcast_scalar(simpler, ())
        if info.commutative and _order_key(args[0]) > _order_key(args[1]):
            args = (args[1], args[0])
        return intern(op, args, None, info.dtype, ())
    shape = _map_shape(op, args)
    if shape and info.dtype == "float" and all(a.op in ("const", "tconst", "pack", "bcast") for a in args):
        folded = fold(op, args, None)  # every argument a constant tensor or number: a constant tensor
        if folded is not None:
            return folded
    if shape and any(a.op == "bcast" and not a.args[0].shape for a in args):
        # a broadcast scalar is just the scalar to an elementwise op (so x * 1 still folds)
        args = tuple(a.args[0] if a.op == "bcast" and not a.args[0].shape else a for a in args)
        if not _map_shape(op, args):
            return broadcast_scalar(make(op, *args), shape)
    simpler = info.simplify(*args) if info.simplify is not None else None
    if simpler is not None:
        return simpler if simpler.shape == shape else broadcast_scalar(simpler, shape)
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
                                 "broadcast them first (symjac.ops.tensor.broadcast_to)")
            shape = a.shape
    return shape


def broadcast_scalar(node, shape):
    """A scalar node as a tensor of ``shape`` (the ``bcast`` op)."""
    if node.shape == tuple(shape):
        return node
    if node.shape:
        raise ValueError(f"cannot broadcast a tensor of shape {node.shape} as a scalar to {shape}")
    return lookup("bcast").build((node,), (tuple(shape), ()))


def _order_key(node):
    # Constants first, then by structure (`structural_digest`), then creation order (two nodes of one
    # structure: the inputs of two traces).  Not by creation order alone: constants and the nodes
    # built from them alone outlive traces, so the order of a product's two factors depended on what
    # the process had traced before (a mechanism's sparse Jacobian printed two sources, with and
    # without a dense Jacobian traced first: two compiles of one kernel, the disk cache missed).
    return (node.op != "const", structural_digest(node), node.id)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MASK = (1 << 64) - 1
_HEADS: dict = {}  # (op, kind, shape) -> the digest of a node without attribute before its arguments


def _head(n):
    """The 64-bit digest of ``n``'s op, attribute, dtype and shape: two CRC-32s of
    their text (an object's address left out; an input's trace id too)."""
    key = (n.op, n.kind, n.shape) if n.attr is None else None
    h = _HEADS.get(key)
    if h is not None:
        return h
    attr = n.attr[1:] if n.op == "input" else _const_key(n.attr) if n.op == "const" else n.attr
    text = f"{n.op}|{attr!r}|{n.kind}|{n.shape}"
    if "0x" in text:
        text = _ADDRESS.sub("", text)
    data = text.encode()
    h = zlib.crc32(data) | zlib.crc32(data, 0x9E3779B9) << 32
    if key is not None:
        _HEADS[key] = h
    return h


def _digest(n):
    """``n``'s digest from its head and its arguments' digests (all known)."""
    h = _head(n)
    for a in n.args:
        h = ((h ^ a.digest) * 0x100000001B3) & _MASK
        h ^= h >> 29
    n.digest = h
    return h


def structural_digest(node):
    """A 64-bit digest of the expression ``node`` computes: its op, attribute,
    dtype and shape, and its arguments' digests; the same in every process
    and every trace.  Computed once a node: directly when its arguments have
    theirs (the common case, as a graph is built), else by an iterative walk
    over the arguments not digested yet."""
    if node.digest is not None:
        return node.digest
    for a in node.args:
        if a.digest is None:
            break
    else:
        return _digest(node)
    stack = [node]
    while stack:
        n = stack[-1]
        pending = [a for a in n.args if a.digest is None]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        if n.digest is None:
            _digest(n)
    return node.digest


def rebuild(node, args):
    """``node``'s op (same attribute) applied to new ``args`` (for `substitute`)."""
    info = lookup(node.op)
    if info.build is not None:
        return info.build(tuple(args), node.attr)
    return make(node.op, *args)


def ufunc_builder(name):
    """``builder(*nodes)`` for the NumPy ufunc ``name``, or None if untraceable."""
    entry = UFUNCS.get(name)
    if entry is None:
        return None
    if isinstance(entry, str):
        return lambda *args: make(entry, *args)
    return entry
