"""The reference interpreter: evaluates nodes with NumPy in float64.

It is the oracle that backends are compared with, and evaluates a graph
called on numbers.  Elementwise values may be arrays over a batch; tensor
ops evaluate one sample.
"""

from __future__ import annotations

import numpy as np

from symjac.ir.registry import lookup
from symjac.ir.walk import toposort

__all__ = ["evaluate_nodes"]


def evaluate_nodes(roots, values):
    """Values of ``roots`` given ``values`` (input node id -> value)."""
    env = {}
    with np.errstate(all="ignore"):
        for node in toposort(roots):
            if node.op == "input":
                if node.id not in values:
                    raise ValueError(f"no value given for input {node.attr[1:]}")
                env[node.id] = values[node.id]
            elif node.op == "const":
                env[node.id] = np.float64(node.attr)
            else:
                env[node.id] = lookup(node.op).evaluate([env[a.id] for a in node.args], node.attr)
    return [env[r.id] for r in roots]
