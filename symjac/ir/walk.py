"""Iterative walks over the graph: topological order, substitution, tree size.

Every walk keeps its own stack: a chain of a million nodes is fine.
"""

from __future__ import annotations

__all__ = ["toposort", "substitute", "tree_size"]


def toposort(roots, opaque=None):
    """All nodes reachable from ``roots``, each after its arguments.

    Iterative depth-first search (post-order, arguments left to right).  The
    arguments of a node for which ``opaque(node)`` is true are not visited.
    """
    order = []
    state = {}  # id -> 1 (arguments being visited: its next pop emits it), 2 (emitted)
    stack = list(roots)
    stack.reverse()
    pop, push, emit, get = stack.pop, stack.append, order.append, state.get
    while stack:
        node = pop()
        s = get(node.id)
        if s is None:
            # a DAG: nothing above this entry on the stack can reach the node again, so
            # the next time it is popped in state 1 is this entry, after its arguments
            state[node.id] = 1
            push(node)
            if opaque is not None and opaque(node):
                continue
            args = node.args
            if len(args) == 1:
                if args[0].id not in state:
                    push(args[0])
            else:
                for a in reversed(args):
                    if a.id not in state:
                        push(a)
        elif s == 1:
            state[node.id] = 2
            emit(node)
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
