"""The one door for extending symjac: define an op, or change an op's rules.

`defop` declares a new elementwise op with everything about it at once: its
NumPy evaluation, its derivative (partials, or a JVP, or a transpose: any
one is enough, the others are derived), how each printer prints it, and
optionally the NumPy ufunc names and SymPy counterpart that trace to it.
Rules given here reach every transform: forward and reverse mode, Hessians,
and the forward Laplacian (second partials come from the first).
`defpartials`, `defjvp` and `defvjp` replace the rule of an existing op.

>>> import numpy as np, symjac
>>> from symjac.extend import defop, make
>>> softplus = defop("softplus", 1, lambda x: np.logaddexp(0.0, x),
...                  partials=lambda node, x: (make("expit", x),),
...                  printing={"numpy": "np.logaddexp(_F(0.0), {0})"})
>>> f = lambda x: softplus(x) * 2.0
>>> symjac.jacobian(f, backend="numpy")(np.array([[0.0, 1.0]])).round(4).tolist()
[[[1.0, 0.0], [0.0, 1.4621]]]
>>> symjac.laplacian(lambda x: np.sum(softplus(x)), backend="numpy")(np.array([[0.0]])).tolist()
[0.25]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from symjac.ad import forget
from symjac.errors import UnsupportedOperationError
from symjac.frontend.traced import TracedArray, _nodes, is_tensor, map_tensor, scalar_array
from symjac.ir import REGISTRY, lookup, make, register
from symjac.ops.define import defelementwise

__all__ = ["defop", "defpartials", "defjvp", "defvjp", "make"]


def defop(name, nargs, evaluate, *, partials=None, jvp=None, transpose=None, printing=None, cost=20,
          ufuncs=(), sympy=None, differentiable=True):
    """Declare the elementwise op ``name`` of ``nargs`` arguments and return a
    function that applies it to traced arrays (and evaluates it on numbers).

    ``evaluate(*arrays)`` computes it with NumPy (float64, broadcasting).
    The derivative: ``partials(node, *args)`` returns one graph node per
    argument; or ``jvp(node, tangents)`` returns the tangent for one seed
    (``tangents[m]`` is None where argument m has none); or
    ``transpose(node, cotangent)`` returns one cotangent (or None) per
    argument.  Build nodes with `make`.  ``printing`` maps a printer target
    (``"numpy"``, ``"numba"``; ``"numba"`` falls back to ``"numpy"``) to a
    template with ``{0}``, ``{1}``... for the arguments and ``_F`` for the
    kernel's float type; the expression must work on NumPy arrays (NumPy
    backend) and on scalars in Numba's nopython mode.  ``ufuncs`` names NumPy
    ufuncs that should trace to this op; ``sympy`` is ``(to, heads)`` as in
    `symjac.ir.OpDef`; ``differentiable=False`` declares a piecewise
    constant op (derivative 0 wherever it exists); ``cost`` is in flops.
    A commutative op's rule sees its arguments in canonical order, so
    rules of ops declared here (not commutative) see them as given.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"defop: name must be an identifier, got {name!r}")
    if name in REGISTRY and lookup(name).kind != "elementwise":
        raise ValueError(f"defop: {name!r} is a built-in {lookup(name).kind} op and cannot be redefined")
    if not isinstance(nargs, int) or nargs < 1:
        raise ValueError(f"defop: nargs must be a positive int, got {nargs!r}")
    if not callable(evaluate):
        raise TypeError(f"defop: evaluate must be callable, got {type(evaluate).__name__}")
    if differentiable and partials is None and jvp is None and transpose is None:
        raise ValueError(f"defop: give {name!r} a derivative (partials, jvp or transpose), or "
                         "differentiable=False")
    if not printing or "numpy" not in printing:
        raise ValueError(f"defop: printing must give a 'numpy' template for {name!r}, e.g. "
                         "{'numpy': 'np.foo({0})'}")
    for target, template in printing.items():
        try:
            template.format(*[f"a{i}" for i in range(nargs)])
        except (IndexError, KeyError, ValueError) as e:
            raise ValueError(f"defop: the {target!r} template {template!r} does not fit {nargs} arguments "
                             f"({e})") from None
    forget(name)
    defelementwise(name, nargs, evaluate, partials=partials, jvp=jvp, transpose=transpose, printing=printing,
                   cost=cost, ufuncs=ufuncs, sympy=sympy, differentiable=differentiable)
    return _applier(name, nargs, evaluate)


def _applier(name, nargs, evaluate):
    def apply(*args):
        if len(args) != nargs:
            raise TypeError(f"{name} takes {nargs} argument(s), got {len(args)}")
        if not any(isinstance(a, TracedArray) or (isinstance(a, np.ndarray) and a.dtype == object) for a in args):
            return evaluate(*args)
        if any(is_tensor(a) for a in args):
            return map_tensor(lambda *nodes: make(name, *nodes), args)
        result = np.frompyfunc(lambda *nodes: make(name, *nodes), nargs, 1)(*[_nodes(a) for a in args])
        return TracedArray(result if isinstance(result, np.ndarray) else scalar_array(result))

    apply.__name__ = name
    return apply


def _replace(op, **changes):
    info = lookup(op)
    if info.kind != "elementwise":
        raise UnsupportedOperationError(f"{op!r} is a {info.kind} op; only elementwise ops' rules can be replaced")
    register(dataclasses.replace(info, **changes))
    forget(op)


def defpartials(op, rule):
    """Set ``rule(node, *args) -> tuple of partials`` as the derivative of ``op``
    (forward and reverse mode and second derivatives all derive from it)."""
    _replace(op, partials=rule, jvp=None, transpose=None, linearity=None)


def defjvp(op, rule):
    """Set ``rule(node, tangents) -> tangent`` (one seed; ``tangents[m]`` None
    for none) as the derivative of ``op``; reverse mode and the forward
    Laplacian derive from it."""
    _replace(op, partials=None, jvp=rule, transpose=None, linearity=None)


def defvjp(op, rule):
    """Set ``rule(node, cotangent) -> tuple of cotangents`` as the derivative of
    ``op``; forward mode and the forward Laplacian derive from it."""
    _replace(op, partials=None, jvp=None, transpose=rule, linearity=None)
