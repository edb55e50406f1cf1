"""From graph nodes back to SymPy: `graph_to_sympy`, `to_latex`, `sympy_from_nodes`.

For display of small Jacobians and for checking.  Each op's SymPy form comes
from its registry entry.  Built bottom-up in topological order, without
recursion.  Semantics are real-valued, as in the kernels.
"""

from __future__ import annotations

import math
from fractions import Fraction

import sympy as sp
from sympy.core.parameters import evaluate as _sympy_evaluate
from sympy.tensor.array import NDimArray

from symjac.errors import UnsupportedOperationError
from symjac.ir import REGISTRY, lookup, toposort

__all__ = ["graph_to_sympy", "to_latex", "sympy_from_nodes"]


def _const_to_sympy(v):
    """A readable exact SymPy number for a float: 2.0 -> 2, 0.25 -> 1/4, pi -> pi."""
    if math.isnan(v):
        return sp.nan
    if math.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    if v == int(v) and abs(v) < 2.0 ** 53:
        return sp.Integer(int(v))
    for exact, value in ((sp.pi, math.pi), (sp.E, math.e)):
        if abs(v) == value:
            return exact if v > 0 else -exact
    f = Fraction(v)  # exact: a dyadic with a small denominator prints as a fraction
    if f.denominator <= 1024:
        return sp.Rational(f.numerator, f.denominator)
    return sp.Float(v)


class _Args:
    """A node's SymPy arguments, as numbers and as conditions (the registry's
    ``sympy`` rules read them: a boolean is 1 or 0 as a number, a number is
    true when nonzero as a condition)."""

    __slots__ = ("exprs", "nodes")

    def __init__(self, exprs, nodes):
        self.exprs, self.nodes = exprs, nodes

    @property
    def bools(self):
        return [lookup(n.op).dtype == "bool" for n in self.nodes]

    @property
    def nums(self):
        return [sp.Piecewise((sp.Integer(1), e), (sp.Integer(0), True)) if b else e
                for e, b in zip(self.exprs, self.bools)]

    @property
    def conds(self):
        out = []
        for e, b in zip(self.exprs, self.bools):
            if b:
                out.append(e)
            elif e.is_Number:
                out.append(sp.false if e == 0 else sp.true)
            else:
                out.append(sp.Ne(e, 0))
        return out


def sympy_from_nodes(roots, symbols, *, evaluate=True):
    """SymPy expressions for the nodes ``roots`` (a list).

    ``symbols`` maps the id of each input node to the SymPy expression that
    stands for it.  Built bottom-up in topological order, without recursion.

    >>> import sympy as sp
    >>> from symjac.ir import make, make_inputs
    >>> [leaf] = make_inputs([()])
    >>> x = leaf[()]
    >>> sympy_from_nodes([make("where", make("gt", x, 0.0), x, 0.0)], {x.id: sp.Symbol("x")})
    [Piecewise((x, x > 0), (0, True))]
    """
    env = {}
    with _sympy_evaluate(evaluate):
        for node in toposort(roots):
            if node.op == "input":
                if node.id not in symbols:
                    raise ValueError(f"graph_to_sympy: the input leaf {node.attr} is not one of the "
                                     "graph's inputs, so it has no symbol")
                env[node.id] = symbols[node.id]
            elif node.op == "const":
                env[node.id] = _const_to_sympy(node.attr)
            else:
                info = REGISTRY.get(node.op)
                build = info.sympy[0] if info is not None and info.sympy is not None else None
                if build is None:
                    hint = ("; it is a tensor op: trace inside `with symjac.tensor_policy(min_work=None):` "
                            "to get scalar expressions") if node.shape or node.op in ("elem", "pack") else ""
                    raise UnsupportedOperationError(f"graph_to_sympy: no SymPy form for the op {node.op!r}{hint}")
                env[node.id] = build(sp, _Args([env[a.id] for a in node.args], node.args))
    return [env[r.id] for r in roots]


def _names_for(graph, names):
    symbols = {}
    if names is not None and len(names) != len(graph.inputs):
        raise ValueError(f"graph_to_sympy: names has {len(names)} entries but the graph has "
                         f"{len(graph.inputs)} input arguments; give one sequence of names per argument")
    for k, leaf in enumerate(graph.inputs):
        flat = leaf.reshape(-1)
        given = None if names is None else names[k]
        if given is None:
            syms = [sp.Symbol(f"x{k}_{i}") for i in range(flat.size)]
        else:
            if isinstance(given, (str, sp.Basic)) and not isinstance(given, (sp.MatrixBase, NDimArray)):
                given = [given]
            syms = [sp.Symbol(s) if isinstance(s, str) else s for s in sp.flatten(given)]
            if len(syms) != flat.size:
                raise ValueError(f"graph_to_sympy: names[{k}] has {len(syms)} names but input argument "
                                 f"{k} has {flat.size} elements (shape {leaf.shape})")
            for s in syms:
                if not isinstance(s, sp.Symbol):
                    raise TypeError(f"graph_to_sympy: names[{k}] must hold Symbols or strings, got "
                                    f"{s!r} ({type(s).__name__})")
        for node, s in zip(flat, syms):
            symbols[node.id] = s
    return symbols


def graph_to_sympy(graph, names=None, *, evaluate=None):
    """The outputs of ``graph`` as SymPy: a list with one entry per output.

    An output of shape ``()`` gives a SymPy expression, any other shape a
    ``sympy.Array`` of that shape.  Element ``i`` of input argument ``k`` is
    ``Symbol(f"x{k}_{i}")``, or ``names[k][i]`` when ``names`` (one sequence
    of Symbols or strings per argument) is given.  ``where`` becomes
    ``Piecewise``, comparisons relationals, ``max``/``min`` ``Max``/``Min``,
    ``expm1(x)`` ``exp(x) - 1`` and so on.  SymPy evaluates (simplifies)
    each expression as it is built, except with ``evaluate=False``; the
    default, ``None``, evaluates unless SymPy's evaluation (which recurses)
    fails on a deep graph, and then builds the expressions unevaluated.

    >>> import numpy as np, symjac
    >>> from symjac.frontend.sympy_out import graph_to_sympy
    >>> g = symjac.trace(lambda v: np.array([v[0] * v[1], np.maximum(v[0], 0.0)]), (2,))
    >>> graph_to_sympy(g, names=[["a", "b"]])
    [[a*b, Max(0, a)]]
    >>> graph_to_sympy(symjac.trace(lambda s: np.exp(s) / 2, ()))
    [exp(x0_0)/2]
    """
    symbols = _names_for(graph, names)
    roots = graph.output_nodes()
    if evaluate is None:
        try:
            exprs = sympy_from_nodes(roots, symbols, evaluate=True)
        except RecursionError:
            exprs = sympy_from_nodes(roots, symbols, evaluate=False)
    else:
        exprs = sympy_from_nodes(roots, symbols, evaluate=evaluate)
    result, i = [], 0
    for out in graph.outputs:
        part = exprs[i: i + out.size]
        i += out.size
        result.append(part[0] if out.shape == () else sp.Array(part, out.shape))
    return result


def to_latex(graph, names=None):
    r"""LaTeX of the outputs of ``graph`` (a tuple of them when there are several).

    Meant for small graphs, such as the Jacobian of a few equations (trace
    ``symjac.jacobian(f)`` to get its graph).

    >>> import sympy as sp, symjac
    >>> from symjac.frontend.sympy_in import from_sympy
    >>> from symjac.frontend.sympy_out import to_latex
    >>> x, y = sp.symbols("x y")
    >>> g = from_sympy([x * y, sp.sin(x)], [x, y])
    >>> print(to_latex(g, names=[[x, y]]))
    \left[\begin{matrix}x y & \sin{\left(x \right)}\end{matrix}\right]
    >>> print(to_latex(symjac.trace(symjac.jacobian(g), (2,)), names=[[x, y]]))
    \left[\begin{matrix}y & x\\\cos{\left(x \right)} & 0\end{matrix}\right]
    """
    outs = graph_to_sympy(graph, names)
    return sp.latex(outs[0] if len(outs) == 1 else tuple(outs))
