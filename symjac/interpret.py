"""A reference interpreter: evaluates nodes with NumPy in float64.

It is the oracle that backends are compared with, and evaluates a `Graph`
called on numbers.  Values may be scalars or arrays over a batch (tensor ops: one sample).
"""

from __future__ import annotations

import numpy as np

from symjac.graph import toposort
from symjac.ops import evaluate
from symjac.tensor import TENSOR_OPS, evaluate_tensor

__all__ = ["evaluate_nodes"]


def evaluate_nodes(roots, values):
    """Values of ``roots`` given ``values`` (input node id -> value)."""
    env = {}
    for node in toposort(roots):
        if node.op == "input":
            if node.id not in values:
                raise ValueError(f"no value given for input {node.attr[1:]}")
            env[node.id] = values[node.id]
        elif node.op == "const":
            env[node.id] = np.float64(node.attr)
        elif node.op in TENSOR_OPS:
            env[node.id] = evaluate_tensor(node, [env[a.id] for a in node.args])
        else:
            env[node.id] = evaluate(node.op, [env[a.id] for a in node.args])
    return [env[r.id] for r in roots]
