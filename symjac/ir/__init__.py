"""The bottom layer: nodes, the op registry, the simplifying constructor and
iterative walks.  Imports nothing above it."""

from symjac.ir.interpret import evaluate_nodes
from symjac.ir.node import (BUILDING, ONE, ZERO, Node, broadcast_scalar, const, constant_value, fold, intern, is_one,
                            is_zero, make, make_inputs, non_ieee, non_ieee_rewrites, rebuild, tconst, iconst, tconst_of,
                            to_node, ufunc_builder, gc_paused)
from symjac.ir.registry import (FUNCTIONS, REGISTRY, UFUNCS, NotTensorizable, OpDef, defufunc, defunction, lookup,
                                register)
from symjac.ir.walk import substitute, toposort, tree_size

__all__ = ["Node", "intern", "make", "rebuild", "const", "to_node", "ZERO", "ONE", "is_zero", "is_one",
           "non_ieee_rewrites", "non_ieee", "make_inputs", "ufunc_builder", "BUILDING", "broadcast_scalar",
           "tconst", "iconst", "tconst_of", "constant_value", "fold", "gc_paused",
           "OpDef", "REGISTRY", "UFUNCS", "FUNCTIONS", "register", "lookup", "defufunc", "defunction",
           "NotTensorizable",
           "toposort", "substitute", "tree_size", "evaluate_nodes"]
