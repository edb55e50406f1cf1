"""The op set: one entry per scalar op with its arity, result dtype, NumPy
evaluation (used for constant folding and the reference interpreter) and an
estimated cost in flops.

The op names are the contract with `codegen`: a printer has one
``_print_<op>`` method (or a table entry) per name listed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OpInfo", "OPS", "UNARY", "evaluate"]


def _vectorize(fn):
    ufunc = np.frompyfunc(fn, 1, 1)

    def apply(x):
        return np.asarray(ufunc(np.asarray(x, dtype=float)), dtype=float)[()]

    return apply


@dataclass(frozen=True)
class OpInfo:
    name: str
    nargs: int  # -1: any (leaves have 0)
    evaluate: object  # NumPy callable on float64 arrays (None for leaves)
    cost: int = 1  # flops per evaluation, for .stats and mode selection
    dtype: str = "float"  # result dtype: "float" or "bool"
    commutative: bool = False


def _op(name, nargs, fn, cost=1, dtype="float", commutative=False):
    return name, OpInfo(name, nargs, fn, cost, dtype, commutative)


# Unary elementary functions: name -> (NumPy function, cost).
UNARY = {
    "neg": (np.negative, 1),
    "abs": (np.abs, 1),
    "sign": (np.sign, 1),
    "sqrt": (np.sqrt, 4),
    "cbrt": (np.cbrt, 20),
    "exp": (np.exp, 20),
    "exp2": (np.exp2, 20),
    "expm1": (np.expm1, 20),
    "log": (np.log, 20),
    "log2": (np.log2, 20),
    "log10": (np.log10, 20),
    "log1p": (np.log1p, 20),
    "sin": (np.sin, 20),
    "cos": (np.cos, 20),
    "tan": (np.tan, 20),
    "asin": (np.arcsin, 20),
    "acos": (np.arccos, 20),
    "atan": (np.arctan, 20),
    "sinh": (np.sinh, 20),
    "cosh": (np.cosh, 20),
    "tanh": (np.tanh, 20),
    "asinh": (np.arcsinh, 20),
    "acosh": (np.arccosh, 20),
    "atanh": (np.arctanh, 20),
    "erf": (_vectorize(math.erf), 20),
    "erfc": (_vectorize(math.erfc), 20),
    "expit": (lambda x: 1.0 / (1.0 + np.exp(-x)), 24),
}

OPS: dict[str, OpInfo] = dict(
    [
        _op("input", 0, None, 0),
        _op("const", 0, None, 0),
        *[_op(name, 1, fn, cost) for name, (fn, cost) in UNARY.items()],
        _op("add", 2, np.add, 1, commutative=True),
        _op("sub", 2, np.subtract, 1),
        _op("mul", 2, np.multiply, 1, commutative=True),
        _op("div", 2, np.divide, 4),
        _op("pow", 2, np.power, 20),
        _op("atan2", 2, np.arctan2, 20),
        _op("hypot", 2, np.hypot, 6, commutative=True),
        _op("max", 2, np.maximum, 1, commutative=True),
        _op("min", 2, np.minimum, 1, commutative=True),
        _op("lt", 2, np.less, 1, "bool"),
        _op("le", 2, np.less_equal, 1, "bool"),
        _op("gt", 2, np.greater, 1, "bool"),
        _op("ge", 2, np.greater_equal, 1, "bool"),
        _op("eq", 2, np.equal, 1, "bool", True),
        _op("ne", 2, np.not_equal, 1, "bool", True),
        _op("and", 2, np.logical_and, 1, "bool", True),
        _op("or", 2, np.logical_or, 1, "bool", True),
        _op("not", 1, np.logical_not, 1, "bool"),
        _op("where", 3, np.where, 1),
        # Identity whose derivative is zero: a derivative taken with
        # enable_higher_derivatives=False is a constant for later sweeps.
        _op("stop", 1, lambda x: x, 0),
        # Tensor ops (symjac.tensor): built and evaluated there, attribute-carrying.
        *[_op(name, -1, None, 0) for name in ("tconst", "pack", "elem", "bcast", "tsum", "tmax", "tmin", "reshape", "transpose",
                                               "einsum", "conv2d", "conv2d_bx", "conv2d_bw")],
    ]
)


def evaluate(op, args):
    """Evaluate ``op`` on float64 NumPy values (IEEE semantics, no warnings)."""
    with np.errstate(all="ignore"):
        return OPS[op].evaluate(*args)
