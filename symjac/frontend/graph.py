"""`Graph`: a traced computation (input leaf arrays, output node arrays and the
output structure), callable like the function it came from.
"""

from __future__ import annotations

import numpy as np

from symjac.frontend.traced import TracedArray, _nodes, is_tensor, is_traced
from symjac.ir import BUILDING, evaluate_nodes, lookup, rebuild, substitute, toposort

__all__ = ["Graph", "Whole", "call_graph", "outputs_of", "unflatten"]


class Whole:
    """An output that is one tensor node: it is stored by one loop, and its
    entries are made as scalar nodes only if something asks for them
    (``ravel``, ``np.asarray``)."""

    __slots__ = ("node", "_entries")

    def __init__(self, node):
        self.node, self._entries = node, None

    shape = property(lambda self: self.node.shape)
    ndim = property(lambda self: len(self.node.shape))
    size = property(lambda self: int(np.prod(self.node.shape)))

    def ravel(self):
        if self._entries is None:
            elem = lookup("elem").build
            arr = np.empty(self.size, dtype=object)
            for i in range(self.size):
                arr[i] = elem((self.node,), i)
            self._entries = arr
        return self._entries

    def reshape(self, *shape):
        return self.ravel().reshape(*shape)

    def __array__(self, dtype=None, copy=None):
        return self.ravel().reshape(self.shape)

    def __repr__(self):
        return f"Whole({self.node.op}, shape={self.shape})"


def roots_of(out):
    """The nodes an output needs: its tensor, or its entries."""
    return [out.node] if isinstance(out, Whole) else list(out.ravel())


class Graph:
    """A traced computation: input leaf arrays and output node arrays.

    ``inputs`` is a list of object arrays of ``input`` nodes (one per argument,
    in per-sample shape), ``outputs`` a list of object arrays of nodes (each
    node a scalar or a tensor).  A
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
        self.treedef = treedef  # "*" for one output, else a tree of "*" (`flatten_tree`)

    # -- structure -------------------------------------------------------
    def output_nodes(self):
        """The outputs' root nodes (an output kept whole is one tensor node)."""
        return [n for out in self.outputs for n in roots_of(out)]

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
        if len(args) != len(self.inputs):
            raise TypeError(f"this graph takes {len(self.inputs)} arguments, got {len(args)}")
        return call_graph(self, args)

    def to_sympy(self):
        """The outputs as SymPy expressions (a list of ``sympy.Array``)."""
        from symjac.frontend.sympy_out import graph_to_sympy  # SymPy loads only when used

        return graph_to_sympy(self)


LIST, DICT = "L", "D"  # treedef tags: "*" a leaf; a tuple of treedefs; (LIST, children); (DICT, keys, children)


def flatten_tree(tree, is_leaf=None):
    """(leaves, treedef) of nested tuples, lists and dicts (dicts in their key
    order); anything else is a leaf (or what ``is_leaf`` says is one)."""
    leaves = []

    def flat(r):
        if is_leaf is not None and is_leaf(r):
            leaves.append(r)
            return "*"
        if isinstance(r, tuple):
            return tuple(flat(e) for e in r)
        if isinstance(r, list):
            return (LIST, tuple(flat(e) for e in r))
        if isinstance(r, dict):
            keys = tuple(r)
            return (DICT, keys, tuple(flat(r[k]) for k in keys))
        leaves.append(r)
        return "*"

    return leaves, flat(tree)


def outputs_of(result, whole=False):
    """(list of node arrays, treedef) for whatever a model returned.

    Tuples, lists and dicts, nested, are trees of outputs (as in JAX); each
    leaf is one array.  With ``whole``, an output that is a tensor stays one
    (a `Whole`).
    """
    leaves, treedef = flatten_tree(result)
    return [Whole(r.tensor) if whole and is_tensor(r) else _nodes(r) for r in leaves], treedef


def unflatten(treedef, leaves):
    """Inverse of `flatten_tree` / `outputs_of`: rebuild the tree around ``leaves``."""
    it = iter(leaves)

    def build(d):
        if d == "*":
            return next(it)
        if d and d[0] == LIST:
            return [build(e) for e in d[1]]
        if d and d[0] == DICT:
            return {k: build(e) for k, e in zip(d[1], d[2])}
        return tuple(build(e) for e in d)

    return build(treedef)


def flatten_like(tree, treedef, what="the tree"):
    """The leaves of ``tree`` in the order of ``treedef`` (dict entries by key, not
    by position); an error naming ``what`` when its structure differs."""
    leaves = []

    def walk(r, d, where):
        if d == "*":
            leaves.append(r)
            return
        if d and d[0] == DICT:
            if not isinstance(r, dict) or set(r) != set(d[1]):
                raise ValueError(f"{what}{where} must be a dict with keys {sorted(map(str, d[1]))}, got "
                                 + (f"keys {sorted(map(str, r))}" if isinstance(r, dict) else type(r).__name__))
            for k, e in zip(d[1], d[2]):
                walk(r[k], e, f"{where}[{k!r}]")
            return
        kind, items = (list, d[1]) if d and d[0] == LIST else (tuple, d)
        if not isinstance(r, kind) or len(r) != len(items):
            raise ValueError(f"{what}{where} must be a {kind.__name__} of {len(items)}, got "
                             + (f"a {type(r).__name__} of {len(r)}" if isinstance(r, (tuple, list)) else
                                type(r).__name__))
        for k, (e, sub) in enumerate(zip(r, items)):
            walk(e, sub, f"{where}[{k}]")

    walk(tree, treedef, "")
    return leaves


def map_tree(fn, tree):
    """``tree`` with ``fn`` applied to each leaf."""
    leaves, treedef = flatten_tree(tree)
    return unflatten(treedef, [fn(x) for x in leaves])


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
        if isinstance(o, Whole):
            outs.append(np.array(vals[i], dtype=float).reshape(o.shape))
            i += 1
            continue
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
            if isinstance(o, Whole):
                outs.append(TracedArray(tensor=new[i]))
                i += 1
                continue
            arr = np.empty(o.shape, dtype=object)
            arr.reshape(-1)[:] = new[i: i + o.size] if o.size else []
            i += o.size
            outs.append(TracedArray(arr))
    return unflatten(graph.treedef, outs)
