"""Front ends: the NumPy tracer (`traced`, with the NumPy functions of
`functions` and `contraction`), the tracing entry points (`trace`) and
`graph`, MATLAB-style batched arrays for dlfeval (`batched`), neural-network
layers (`nn`), and SymPy in and out (`sympy_in`, `sympy_out`; loaded on
demand).  Importing the package registers the NumPy function implementations
with the tracer.
"""

from symjac.frontend import contraction, functions, grids, numeric, selection  # noqa: F401  (register NumPy functions)
from symjac.frontend.graph import Graph
from symjac.frontend.policy import tensor_policy
from symjac.frontend.trace import call_traced, make_inputs, trace
from symjac.frontend.traced import TracedArray, as_nodes, is_traced

__all__ = ["TracedArray", "Graph", "trace", "call_traced", "make_inputs", "tensor_policy", "as_nodes", "is_traced"]
