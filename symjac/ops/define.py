"""Helpers that declare ops: one call per op puts all its rules in the registry.

- `defelementwise` for scalar functions applied entry by entry (derivative
  from local partials, or a JVP/transpose pair);
- `deflinear` and `defbilinear` for tensor ops, as JAX's ``deflinear`` and
  ``defbilinear``: the JVP is derived (the op applied to the tangent; one
  term per argument), a transpose rule gives reverse mode, and the
  forward-Laplacian step follows from the linearity;
- `sympy_function` and `call` for the usual SymPy pair and printer template.
"""

from __future__ import annotations

from symjac.ir import ZERO, OpDef, broadcast_scalar, make, register

__all__ = ["defelementwise", "deflinear", "defbilinear", "deftensor", "sympy_function", "call", "zeros_like"]


def call(function, numba=None, cuda=None):
    """Printer templates for a function call ``function(args...)`` (and
    different Numba and CUDA spellings if given; CUDA falls back to Numba's)."""
    templates = {"numpy": function}
    if numba is not None:
        templates["numba"] = numba
    if cuda is not None:
        templates["cuda"] = cuda
    return {t: f"{fn}({{args}})" for t, fn in templates.items()}


def sympy_function(name, arity=1):
    """The SymPy pair of an op that is the SymPy function ``sympy.<name>``."""
    return (lambda sp, c: getattr(sp, name)(*c.nums), lambda sp: (getattr(sp, name),))


def defelementwise(name, nargs, fn, *, partials=None, cost=1, dtype="float", commutative=False, ufuncs=(),
                   sympy=None, printing=None, simplify=None, differentiable=True, jvp=None, transpose=None,
                   linearity=None, doc=""):
    """Declare an elementwise op evaluated by the NumPy function ``fn``."""
    printing = _expand(printing or {}, nargs)
    return register(OpDef(name, nargs, lambda values, attr: fn(*values), kind="elementwise", dtype=dtype,
                          commutative=commutative, cost=cost, simplify=simplify, partials=partials, jvp=jvp,
                          transpose=transpose, linearity=linearity, differentiable=differentiable,
                          ufuncs=tuple(ufuncs), sympy=sympy, printing=printing, doc=doc))


def _expand(printing, nargs):
    args = ", ".join(f"{{{i}}}" for i in range(nargs))
    return {t: tpl.replace("{args}", args) for t, tpl in printing.items()}


def zeros_like(node):
    """A symbolic zero with ``node``'s shape."""
    return ZERO if not node.shape else broadcast_scalar(ZERO, node.shape)


def deftensor(name, nargs, *, evaluate, build, cost, jvp=None, transpose=None, transpose_many=None,
              linearity=None, differentiable=True, structure=None, doc=""):
    """Declare a structural tensor op (an attribute-carrying op printed as loops)."""
    return register(OpDef(name, nargs, evaluate, kind="structural", cost=cost, build=build, jvp=jvp,
                          transpose=transpose, transpose_many=transpose_many, linearity=linearity,
                          differentiable=differentiable, structure=structure, doc=doc))


def deflinear(name, nargs, *, evaluate, build, cost, transpose, transpose_many=None, structure=None, doc=""):
    """A tensor op linear in all its arguments jointly: its JVP is the op on the
    tangents (zeros where an argument has none)."""

    def jvp(node, tangents):
        if all(t is None for t in tangents):
            return None
        return build(tuple(zeros_like(a) if t is None else t for a, t in zip(node.args, tangents)), node.attr)

    return deftensor(name, nargs, evaluate=evaluate, build=build, cost=cost, jvp=jvp, transpose=transpose,
                     transpose_many=transpose_many, linearity="linear", structure=structure, doc=doc)


def defbilinear(name, *, evaluate, build, cost, transpose, structure=None, doc=""):
    """A tensor op linear in each of its two arguments: its JVP has one term per
    argument, B(ta, b) + B(a, tb)."""

    def jvp(node, tangents):
        terms = []
        for m, t in enumerate(tangents):
            if t is not None:
                args = list(node.args)
                args[m] = t
                terms.append(build(tuple(args), node.attr))
        if not terms:
            return None
        acc = terms[0]
        for t in terms[1:]:
            acc = make("add", acc, t)
        return acc

    return deftensor(name, 2, evaluate=evaluate, build=build, cost=cost, jvp=jvp, transpose=transpose,
                     linearity="bilinear", structure=structure, doc=doc)

