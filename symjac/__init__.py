"""symjac: a symbolic-plus-numeric Jacobian compiler for NumPy models.

Trace a per-sample NumPy function, differentiate it symbolically, share every
repeated subexpression, and run one fused kernel over a batch.
"""

from symjac.dl import BatchedArray, dldivergence, dlfeval, dlgradient, dljacobian, dllaplacian
from symjac.errors import MissingRuleError, NumericArrayError, SymjacError, TracerBoolError, UnsupportedOperationError
from symjac.graph import Graph
from symjac.kernel import Kernel
from symjac.simplify import non_ieee_rewrites
from symjac.sparse import SparseJacobian
from symjac.tracer import TracedArray, tensor_policy, trace
from symjac.transforms import compile, divergence, gradient, hessian, jacobian, laplacian
from symjac import nn  # noqa: E402  (layers build on dl and the tracer)

__version__ = "0.1.0"

__all__ = ["dlfeval", "dljacobian", "dldivergence", "dllaplacian", "dlgradient", "BatchedArray", "jacobian", "gradient", "hessian", "divergence", "laplacian", "compile", "trace", "from_sympy", "Graph", "Kernel", "SparseJacobian", "TracedArray",
           "non_ieee_rewrites", "tensor_policy", "nn", "SymjacError", "TracerBoolError", "NumericArrayError",
           "UnsupportedOperationError",
           "MissingRuleError", "__version__"]


def __getattr__(name):
    # SymPy loads only when its front end is used.
    if name == "from_sympy":
        from symjac.sympy_bridge import from_sympy

        return from_sympy
    raise AttributeError(f"module 'symjac' has no attribute {name!r}")
