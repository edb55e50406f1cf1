"""symjac: a symbolic-plus-numeric Jacobian compiler for NumPy models.

Trace a per-sample NumPy function, differentiate it symbolically, share every
repeated subexpression, and run one fused kernel over a batch.

Layers, bottom to top (each imports only those below it): `symjac.errors`;
`symjac.ir` (nodes, the op registry, the simplifying constructor, walks);
`symjac.ops` (the op declarations); `symjac.ad` (derivative sweeps, forward
Laplacian); `symjac.frontend` (NumPy tracer, dlfeval's batched arrays,
SymPy in and out, layers); and the API modules here (`lower`, `kernel`,
`transforms`, `dl`, `extend`, `testing`, `cli`).  `codegen` never imports
symjac.
"""

from codegen.background import set_background_compile, wait_compiled
from symjac import ops  # noqa: F401  (fills the op registry)
from symjac.dl import BatchedArray, dldivergence, dlfeval, dlgradient, dljacobian, dllaplacian, export_dlfeval
from symjac.errors import MissingRuleError, NumericArrayError, SymjacError, TracerBoolError, UnsupportedOperationError
from symjac.frontend import nn
from symjac.frontend.graph import Graph
from symjac.frontend.policy import tensor_policy
from symjac.frontend.trace import trace
from symjac.frontend.traced import TracedArray
from symjac.ir import non_ieee_rewrites
from symjac.kernel import Kernel
from symjac.progress import set_progress
from symjac.sparse import SparseJacobian
from symjac.transforms import (compile, divergence, gradient, hessian, hvp, jacobian, jvp, laplacian, sparsity,
                               value_and_gradient, vjp)

from symjac.version import __version__

__all__ = ["dlfeval", "export_dlfeval", "dljacobian", "dldivergence", "dllaplacian", "dlgradient", "BatchedArray", "jacobian",
           "gradient", "hessian", "divergence", "laplacian", "compile", "sparsity", "jvp", "vjp", "hvp",
           "value_and_gradient", "trace", "from_sympy", "Graph", "Kernel",
           "SparseJacobian", "TracedArray", "non_ieee_rewrites", "tensor_policy", "set_progress",
           "set_background_compile", "wait_compiled", "nn", "SymjacError",
           "TracerBoolError", "NumericArrayError", "UnsupportedOperationError", "MissingRuleError", "__version__"]


def __getattr__(name):
    # SymPy loads only when its front end is used.
    if name == "from_sympy":
        from symjac.frontend.sympy_in import from_sympy

        return from_sympy
    raise AttributeError(f"module 'symjac' has no attribute {name!r}")
