"""The op registry: every op symjac knows, declared once with all that is known
about it.

An `OpDef` holds, side by side, an op's arity, result dtype and shape rule,
its reference evaluation (constant folding and the interpreter), its cost,
its simplifications, its derivative (local partials for elementwise ops, or a
JVP and a transpose), how linear it is (which fixes its forward-Laplacian
step), the NumPy ufuncs and functions that trace to it, its SymPy
counterpart and how each printer target prints it.  Declarations live in
`symjac.ops`; every pass (the simplifying constructor, the differentiators,
the tracer, the SymPy bridge, lowering and through it the printers) reads
this table and keeps no op table of its own.

This module imports nothing of symjac: it is the bottom of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["OpDef", "REGISTRY", "UFUNCS", "FUNCTIONS", "register", "lookup", "defufunc", "defunction",
           "NotTensorizable"]


class NotTensorizable(Exception):
    """Raised by a NumPy function's tensor builder for a call it does not cover
    (an unusual argument form): the tracer then runs NumPy's own code on the
    elements, which gives NumPy's result or NumPy's error."""


@dataclass(eq=False)
class OpDef:
    """Everything about one op.  Only ``name``, ``nargs`` and ``evaluate`` are required.

    - ``kind``: ``"leaf"`` (inputs, constants), ``"elementwise"`` (applies to
      scalars and, entry by entry, to tensors of one shape; scalars broadcast)
      or ``"structural"`` (a tensor op with an attribute, printed as a loop
      nest by codegen).
    - ``evaluate(values, attr)``: float64 NumPy evaluation (elementwise ops
      broadcast over any leading axes).
    - ``cost``: flops per element, or ``cost(node)`` (structural ops, and any op
      whose cost depends on its arguments, such as ``pow``).
    - ``build(args, attr)``: a structural op's constructor, which checks its
      arguments and holds the op's shape rule (it also re-makes a node from
      new arguments); elementwise ops take the shape of their tensor
      arguments (scalars broadcast).
    - ``simplify(*args)``: a simpler node or None (IEEE-exact rewrites only,
      unless guarded by `symjac.non_ieee_rewrites`).
    - ``partials(node, *args)``: local partial derivatives (elementwise); else
      ``jvp(node, tangents)`` (one seed; ``None`` tangents are zero) and/or
      ``transpose(node, cotangent)`` (the VJP: one cotangent or None per
      argument).  Any one of the three is enough: `symjac.ad` derives the
      others.  ``differentiable=False``: zero derivative wherever it exists.
      ``transpose_many(arg, {attr: cotangent})``: for a one-argument op read
      many times from one argument (``elem``), the transpose of all those
      nodes at once (reverse mode gathers them).
    - ``structure(node, m)``: a tensor op's local Jacobian in argument m: the
      entries that can be nonzero as (rows, cols) int arrays of flat
      positions (entries of the node, entries of the argument), their values
      1 (a selection or a sum), or as ``(rows, cols, (W, idx))``, entry k
      being ``W.flat[idx[k]]`` (a contraction: the other operand); None when
      the node does not depend on the argument.  Without it the structure is
      dense and the array-level Jacobian takes compressed forward mode.
      Elementwise ops need none (a diagonal of their partials).
    - ``linearity``: ``"linear"`` (linear in its differentiable arguments, so
      its forward-Laplacian step is its JVP applied to the Laplacians),
      ``"bilinear"``, or None (second derivatives from the rules).
    - ``ufuncs``: names of NumPy ufuncs that trace to this op.
    - ``sympy``: ``(to, heads)`` or ``(to, heads, convert)``: ``to(sp, c)``
      builds the SymPy expression from a conversion context ``c``
      (``c.nums``, ``c.conds``, ``c.bools``, ``c.nodes``); ``heads(sp)`` lists
      the SymPy classes that convert back to this op, with ``convert(expr,
      argument_nodes)`` when the arguments need more than the op applied.
    - ``laplacian(node, gradients, laplacians)``: an explicit forward-Laplacian
      step (rarely needed: it follows from ``linearity`` or the partials).
    - ``printing``: printer target (``"numpy"``, ``"numba"``) -> template with
      ``{0}``, ``{1}``... for the arguments; a target falls back to
      ``"numpy"``.  Structural ops are printed by codegen's loop printers.
    """

    name: str
    nargs: int
    evaluate: Callable | None
    kind: str = "elementwise"
    dtype: str = "float"
    commutative: bool = False
    cost: object = 1
    build: Callable | None = None
    simplify: Callable | None = None
    partials: Callable | None = None
    jvp: Callable | None = None
    transpose: Callable | None = None
    transpose_many: Callable | None = None
    structure: Callable | None = None
    linearity: str | None = None
    laplacian: Callable | None = None
    differentiable: bool = True
    ufuncs: tuple = ()
    sympy: tuple | None = None
    printing: dict = field(default_factory=dict)
    doc: str = ""

    def __repr__(self):
        return f"<op {self.name!r} ({self.kind}, {self.nargs if self.nargs >= 0 else 'any'} args)>"


REGISTRY: dict[str, OpDef] = {}
UFUNCS: dict[str, object] = {}  # NumPy ufunc name -> op name, or builder(*nodes) of a composite
FUNCTIONS: dict[object, object] = {}  # NumPy array function -> builder on tensor nodes, or an elementwise op name


def register(op: OpDef) -> OpDef:
    """Add ``op`` (replacing an op of the same name) and its ufunc names."""
    if op.kind not in ("leaf", "elementwise", "structural"):
        raise ValueError(f"op {op.name!r}: kind must be 'leaf', 'elementwise' or 'structural', got {op.kind!r}")
    if op.linearity not in (None, "linear", "bilinear"):
        raise ValueError(f"op {op.name!r}: linearity must be None, 'linear' or 'bilinear', got {op.linearity!r}")
    REGISTRY[op.name] = op
    for u in op.ufuncs:
        UFUNCS[u] = op.name
    return op


def lookup(name: str) -> OpDef:
    op = REGISTRY.get(name)
    if op is None:
        raise KeyError(f"symjac has no op {name!r}; known ops: {', '.join(sorted(REGISTRY))}")
    return op


def defufunc(name: str, builder: Callable):
    """Trace the NumPy ufunc ``name`` with ``builder(*nodes)`` (a composite of ops)."""
    UFUNCS[name] = builder


def defunction(function, builder, elementwise=False):
    """Trace the NumPy array function ``function`` with ``builder``.

    A tensor builder (``np.cumsum``) takes tensor nodes for the array
    arguments and the other arguments as given, and is used when an argument
    is a tensor (it may raise `NotTensorizable`); with ``elementwise=True``
    (``np.sinc``, ``np.round``) the builder maps one node to one node and is
    applied entry by entry, or to a whole tensor."""
    FUNCTIONS[function] = (builder, elementwise)
