"""Iterative walks over the graph: topological order, substitution, tree size.

Every walk keeps its own stack: a chain of a million nodes is fine.
"""

from __future__ import annotations

__all__ = ["toposort", "substitute", "tree_size"]


def toposort(roots, opaque=None):
    """All nodes reachable from ``roots``, each after its arguments.

    Iterative depth-first search.  The arguments of a node for which
    ``opaque(node)`` is true are not visited.
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

    ``rebuild(node, new_args)`` makes the node again from new arguments (the
    simplifying constructor, so substitution simplifies).
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

    This is what a symbolic engine without sharing would hold;
    ``len(toposort(roots))`` is what symjac holds.
    """
    size = {}
    total = 0
    for node in toposort(roots):
        size[node.id] = (1 if node.args else 0) + sum(size[a.id] for a in node.args)
    for r in roots:
        total += size[r.id]
    return total
