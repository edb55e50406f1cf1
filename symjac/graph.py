"""The graph IR: hash-consed nodes and iterative walks.

Every value symjac reasons about is a `Node` (op, args, attr, shape, kind).
Nodes are built only through `intern`, which returns the existing node when
one with the same op, arguments and attribute already exists, so a repeated
subexpression is one object from birth (CSE by construction).  Nothing here
imports the tracer, SymPy or a backend; every walk uses an explicit stack.
"""

from __future__ import annotations

import itertools
import threading
import weakref

__all__ = ["Node", "intern", "toposort", "substitute", "tree_size", "Graph", "BUILDING"]

_ids = itertools.count()
_TABLE: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()

# Held while a graph is built (trace, differentiate, lower).  The intern table
# is one per process, and node ids order commutative arguments: two threads
# building at once could make two nodes for one key and interleave ids (a
# retrace would print different source).  Tracing is pure Python, so holding
# the GIL-bound work to one thread at a time costs no parallelism.
BUILDING = threading.RLock()


class Node:
    """One scalar value of a computation.

    ``op`` names the operation (see `symjac.ops`), ``args`` are the operand
    nodes, ``attr`` is a hashable attribute (the value of a constant, the
    position of an input), ``shape`` is the static shape (``()`` for the scalar
    ops of this release) and ``kind`` (its dtype class) is ``"float"`` or ``"bool"``.
    Equality is identity: two nodes are equal exactly when they are the same
    node, which hash-consing makes the same as being structurally equal.
    """

    __slots__ = ("op", "args", "attr", "shape", "kind", "id", "__weakref__")

    def __init__(self, op, args, attr, kind, shape=()):
        self.op = op
        self.args = args
        self.attr = attr
        self.shape = shape
        self.kind = kind
        self.id = next(_ids)

    def __repr__(self):
        if self.op == "const":
            return f"Node(const {self.attr!r})"
        if self.op == "input":
            return f"Node(input {self.attr[1:]})"
        return f"Node({self.op} #{self.id} of {[a.id for a in self.args]})"

    def __bool__(self):
        from symjac.errors import TracerBoolError  # local: keep graph import-light

        raise TracerBoolError()

    def __reduce__(self):
        raise TypeError("symjac graph nodes cannot be pickled; keep the generated kernel file (Kernel.path) instead")


def _const_key(value):
    # float.hex tells 0.0 from -0.0 and keeps NaN as one key.
    return value.hex() if isinstance(value, float) else value


def intern(op, args, attr=None, kind="float", shape=()):
    """Return the unique node for ``(op, args, attr)``, creating it if needed.

    ``shape`` is a function of the op, its arguments and its attribute, so it
    is not part of the key.
    """
    key = (op, tuple(a.id for a in args), _const_key(attr) if op == "const" else attr)
    node = _TABLE.get(key)
    if node is None:
        node = Node(op, tuple(args), attr, kind, shape)
        _TABLE[key] = node
    return node


def toposort(roots, opaque=None):
    """All nodes reachable from ``roots``, each after its arguments.

    Iterative depth-first search: a chain of a million nodes is fine.  The
    arguments of a node for which ``opaque(node)`` is true are not visited.
    """
    order = []
    seen = set()
    stack = [(r, False) for r in reversed(list(roots))]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node.id in seen:
            continue
        seen.add(node.id)
        stack.append((node, True))
        if opaque is not None and opaque(node):
            continue
        for a in reversed(node.args):
            if a.id not in seen:
                stack.append((a, False))
    return order


def substitute(roots, mapping, rebuild):
    """Rebuild ``roots`` with the nodes of ``mapping`` (id -> node) replaced.

    ``rebuild(node, new_args)`` makes the node again from new arguments (it
    goes through the simplifying constructor, so substitution simplifies).
    """
    new = dict(mapping)
    for node in toposort(roots):
        if node.id in new:
            continue
        if not node.args:
            new[node.id] = node
            continue
        args = tuple(new[a.id] for a in node.args)
        if all(x is y for x, y in zip(args, node.args)):
            new[node.id] = node
        else:
            new[node.id] = rebuild(node, args)
    return [new[r.id] for r in roots]


def tree_size(roots):
    """Number of operations the roots would have as expression trees.

    This is what a symbolic engine without common-subexpression sharing would
    hold; `len(toposort(roots))` is what symjac holds.
    """
    size = {}
    total = 0
    for node in toposort(roots):
        size[node.id] = (1 if node.args else 0) + sum(size[a.id] for a in node.args)
    for r in roots:
        total += size[r.id]
    return total


class Graph:
    """A traced computation: input leaf arrays and output node arrays.

    ``inputs`` is a list of object arrays of ``input`` nodes (one per argument,
    in per-sample shape), ``outputs`` a list of object arrays of nodes.  A
    graph is callable like the function it came from: on traced arguments it
    returns traced results (so transforms compose), on numbers it evaluates
    one sample in float64.

    >>> import numpy as np, symjac
    >>> g = symjac.trace(lambda x: np.sin(x) * x, (3,))
    >>> len(g), g(np.array([0.0, 1.0, 2.0])).round(3).tolist()
    (6, [0.0, 0.841, 1.819])
    """

    def __init__(self, inputs, outputs, *, treedef="*"):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.treedef = treedef  # "*" for one output, nested tuples of "*" otherwise

    # -- structure -------------------------------------------------------
    def output_nodes(self):
        return [n for out in self.outputs for n in out.ravel()]

    def nodes(self):
        """Reachable nodes in topological order (dead code is never visited)."""
        return toposort(self.output_nodes())

    def __len__(self):
        return sum(1 for n in self.nodes() if n.args)

    def __repr__(self):
        ins = ", ".join(str(a.shape) for a in self.inputs)
        outs = ", ".join(str(o.shape) for o in self.outputs)
        return f"<symjac.Graph ({ins}) -> ({outs}), {len(self)} operations>"

    # -- use as a function -----------------------------------------------
    def __call__(self, *args):
        from symjac.tracer import call_graph

        if len(args) != len(self.inputs):
            raise TypeError(f"this graph takes {len(self.inputs)} arguments, got {len(args)}")
        return call_graph(self, args)

    def to_sympy(self):
        """The outputs as SymPy expressions (a list of ``sympy.Array``)."""
        from symjac.sympy_bridge import graph_to_sympy

        return graph_to_sympy(self)
