"""The SymPy front end: SymPy expressions -> graph nodes (`from_sympy`).

`from_sympy` turns SymPy expressions into a `Graph`, so `symjac.jacobian`
and the kernels apply to them (the way back is `symjac.frontend.sympy_out`).
Each op's SymPy heads come from its registry entry; SymPy's canonical forms
of sums, products, powers and Piecewise are converted here.  Nodes are built
with `symjac.ir.make`, so a SymPy expression and the NumPy code that
computes the same thing give the same nodes.

The walk keeps an explicit stack: a chain of 10^4 nested functions converts.  (SymPy itself
recurses while it *evaluates* a deep expression: build one with
``evaluate=False``; `graph_to_sympy` falls back to unevaluated expressions.)

Semantics are real-valued, as in the kernels: symbols stand for real
numbers, ``re(x)`` and ``conjugate(x)`` are ``x``, ``im(x)`` is 0, and
``x**(1/3)`` is the real cube root (``np.cbrt``), defined for negative ``x``.
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from sympy.logic.boolalg import BooleanFalse, BooleanTrue
from sympy.tensor.array import NDimArray

from symjac.errors import UnsupportedOperationError
from symjac.frontend.graph import Graph
from symjac.ir import BUILDING, REGISTRY, const, make, make_inputs, ufunc_builder

__all__ = ["from_sympy", "nodes_from_sympy"]

_INF = math.inf
_NAN = math.nan


# -- SymPy -> nodes -----------------------------------------------------------

def _number(e):
    """The float value of a SymPy number (zoo -> inf; huge integers -> +-inf)."""
    if e is sp.S.ComplexInfinity or e is sp.S.Infinity:
        return _INF
    if e is sp.S.NegativeInfinity:
        return -_INF
    if e is sp.S.NaN:
        return _NAN
    try:
        return float(e)
    except OverflowError:
        return _INF if e > 0 else -_INF


def _unary(op):
    return lambda e, a: make(op, *a)


def _fold(op):
    def rule(e, a):
        acc = a[0]
        for x in a[1:]:
            acc = make(op, acc, x)
        return acc

    return rule


def _reciprocal_of(op):
    return lambda e, a: make("div", 1.0, make(op, a[0]))


def _is_denominator(factor):
    # x**-1 and x**(-1/2) inside a product become a division (by x, sqrt(x)).
    return factor.is_Pow and factor.exp.is_Number and _number(factor.exp) in (-1.0, -0.5)


_LOG_BASES = {sp.log(2): "log2", sp.log(10): "log10"}


def _mul(e, a):
    negative = False
    num, den, log_bases = [], [], []
    for factor, node in zip(e.args, a):
        if factor.is_Rational:
            negative ^= factor.p < 0
            if abs(factor.p) != 1:
                num.append(const(_number(sp.Integer(abs(factor.p)))))
            if factor.q != 1:
                den.append(const(_number(sp.Integer(factor.q))))
        elif factor.is_Float:
            value = float(factor)
            negative ^= value < 0
            if abs(value) != 1.0:
                num.append(const(abs(value)))
        elif _is_denominator(factor):
            den.append(node if _number(factor.exp) == -1.0 else make("sqrt", node))
            if factor.exp == -1 and factor.base in _LOG_BASES:
                log_bases.append((factor.base, len(den) - 1))
        else:
            num.append(node)
    # SymPy writes log(x, 2) as log(x)/log(2): give it back its own op.
    for base, j in log_bases:
        i = next((i for i, n in enumerate(num) if n.op == "log"), None)
        if i is not None:
            num[i] = make(_LOG_BASES[base], num[i].args[0])
            den[j] = None
    den = [d for d in den if d is not None]
    result = _fold("mul")(None, num) if num else const(1.0)
    if den:
        result = make("div", result, _fold("mul")(None, den))
    return make("neg", result) if negative else result


def _add(e, a):
    # Numbers go last and a negative number is subtracted: x - 1, not -1 + x.
    terms = [(t, n) for t, n in zip(e.args, a) if not t.is_Number]
    terms += [(t, n) for t, n in zip(e.args, a) if t.is_Number]
    acc = terms[0][1]
    for term, node in terms[1:]:
        if term.is_Number and _number(term) < 0:
            acc = make("sub", acc, -_number(term))
        else:
            acc = make("add", acc, node)
    return acc


def _pow(e, a):
    base, exp = a
    if e.exp.is_Number:
        v = _number(e.exp)
        if v == 0.5:
            return make("sqrt", base)
        if v == -0.5:
            return make("div", 1.0, make("sqrt", base))
        if v == -1.0:
            return make("div", 1.0, base)
        if e.exp == sp.Rational(1, 3):
            return make("cbrt", base)
        return make("pow", base, v)
    if e.base == 2:
        return make("exp2", exp)
    return make("pow", base, exp)


def _log(e, a):
    if len(a) == 2:  # only unevaluated: log(x, b) is log(x)/log(b)
        return make("div", make("log", a[0]), make("log", a[1]))
    return make("log", a[0])


def _piecewise(e, a):
    # children are e1, c1, e2, c2, ...; beyond the last condition is NaN (undefined)
    acc = const(_NAN)
    for i in range(len(a) - 2, -1, -2):
        acc = make("where", a[i + 1], a[i], acc)
    return acc


def _equivalent(e, a):
    acc = make("eq", a[0], a[1])
    for x in a[2:]:
        acc = make("and", acc, make("eq", a[0], x))
    return acc


# SymPy's own forms that are not one op: sums, products and powers in SymPy's
# canonical shape, Piecewise, reciprocal functions, real-valued re/im.
_FORMS = {
    sp.Add: _add,
    sp.Mul: _mul,
    sp.Pow: _pow,
    sp.log: _log,
    sp.Piecewise: _piecewise,
    sp.Heaviside: lambda e, a: ufunc_builder("heaviside")(a[0], a[1]),
    sp.Xor: _fold("ne"),
    sp.Equivalent: _equivalent,
    sp.sec: _reciprocal_of("cos"),
    sp.csc: _reciprocal_of("sin"),
    sp.cot: _reciprocal_of("tan"),
    sp.sech: _reciprocal_of("cosh"),
    sp.csch: _reciprocal_of("sinh"),
    sp.coth: _reciprocal_of("tanh"),
    # real-valued semantics: the kernels' inputs are real
    sp.re: lambda e, a: a[0],
    sp.conjugate: lambda e, a: a[0],
    sp.im: lambda e, a: const(0.0),
}


def _rules():
    """SymPy head -> rule(expr, argument nodes): each op's heads from the
    registry (n-ary heads such as Max and And fold the binary op), then the
    forms above."""
    rules = {}
    for op in list(REGISTRY.values()):
        if op.sympy is None or op.kind != "elementwise":
            continue
        convert = op.sympy[2] if len(op.sympy) > 2 else None
        for head in op.sympy[1](sp):
            rules[head] = convert or (_fold(op.name) if op.nargs == 2 else _unary(op.name))
    rules.update(_FORMS)
    return rules


def _children(e):
    if isinstance(e, sp.Piecewise):
        return [x for pair in e.args for x in pair.args]
    if e.is_Mul:
        return [f.base if _is_denominator(f) else f for f in e.args]
    return e.args


def _head_name(e):
    func = getattr(e, "func", type(e))
    return getattr(func, "__name__", type(e).__name__)


def _unsupported(e):
    if e is sp.I:
        return UnsupportedOperationError("from_sympy: the imaginary unit I appears in the expressions; "
                                         "symjac kernels are real-valued")
    supported = sorted({c.__name__ for c in _rules()} | {"Symbol", "numbers", "pi", "E", "true", "false"})
    return UnsupportedOperationError(
        f"from_sympy: the SymPy {'function' if isinstance(e, sp.Function) else 'object'} "
        f"{_head_name(e)!r} has no symjac counterpart. Supported: {', '.join(supported)}. "
        "Rewrite it with these (expr.rewrite(...)), or give its value if it is a constant.")


def _leaf(e, symbols, missing):
    """The node of an atom (a number, a symbol, true/false), else None."""
    if e.is_Symbol:
        node = symbols.get(e)
        if node is None:
            missing.setdefault(e, None)
            return const(_NAN)  # placeholder; an error names every missing symbol
        return node
    if e.is_Number or e.is_NumberSymbol or e is sp.S.ComplexInfinity:
        return const(_number(e))
    if isinstance(e, BooleanTrue):
        return const(1.0)
    if isinstance(e, BooleanFalse):
        return const(0.0)
    return None


def nodes_from_sympy(exprs, symbols):
    """Graph nodes for the SymPy expressions ``exprs`` (a list).

    ``symbols`` maps each SymPy `Symbol` the expressions use to a node.  The
    walk keeps its own stack, so expression depth is not limited by Python's
    recursion limit.  A constant subexpression of an unsupported function
    (``gamma(1/3)``) is evaluated; otherwise an unsupported function raises
    `UnsupportedOperationError` and a symbol not in ``symbols`` a ValueError.

    >>> import sympy as sp
    >>> from symjac.ir import const
    >>> x = sp.Symbol("x")
    >>> [n] = nodes_from_sympy([x**2 - 1], {x: const(3.0)})
    >>> n.attr
    8.0
    """
    exprs = [sp.sympify(e, strict=True) for e in exprs]
    rules = _rules()
    memo = {}  # id(expr) -> node; every expr stays alive through its root
    missing = {}
    for root in exprs:
        stack = [(root, False)]
        while stack:
            e, expanded = stack.pop()
            if id(e) in memo:
                continue
            if expanded:
                kids = _children(e)
                memo[id(e)] = rules[e.func](e, [memo[id(k)] for k in kids])
                continue
            node = _leaf(e, symbols, missing)
            if node is not None:
                memo[id(e)] = node
                continue
            if getattr(e, "func", None) not in rules:
                memo[id(e)] = _constant_or_raise(e)
                continue
            stack.append((e, True))
            stack.extend((k, False) for k in reversed(_children(e)) if id(k) not in memo)
    if missing:
        names = ", ".join(sorted(str(s) for s in missing))
        raise ValueError(f"from_sympy: the expressions use symbol(s) {names} that are neither in "
                         "inputs nor in params; add them to inputs (differentiated) or to params "
                         "(held fixed), or substitute a value with expr.subs")
    return [memo[id(r)] for r in exprs]


def _constant_or_raise(e):
    # A constant of a function symjac lacks (gamma(1/3), an unevaluated Integral) is a number.
    try:
        return const(float(e))
    except (TypeError, ValueError):
        raise _unsupported(e) from None


def _symbol_array(symbols, what):
    """(shape, flat list) of the Symbols given as ``inputs`` or ``params``."""
    if isinstance(symbols, sp.Symbol):
        shape, flat = (), [symbols]
    elif isinstance(symbols, (sp.MatrixBase, NDimArray)):
        flat = list(sp.flatten(symbols))
        shape = (len(flat),)
    elif isinstance(symbols, (str, bytes)) or not hasattr(symbols, "__iter__"):
        raise TypeError(f"from_sympy: {what} must be a SymPy Symbol or a sequence of Symbols, "
                        f"got {type(symbols).__name__}; make them with sympy.symbols('x y z')")
    else:
        flat = list(symbols)
        shape = (len(flat),)
    for s in flat:
        if not isinstance(s, sp.Symbol):
            raise TypeError(f"from_sympy: every entry of {what} must be a SymPy Symbol, got "
                            f"{s!r} ({type(s).__name__}); make symbols with sympy.symbols('x y z')")
    seen, repeated = set(), []
    for s in flat:
        if s in seen and s not in repeated:
            repeated.append(s)
        seen.add(s)
    if repeated:
        raise ValueError(f"from_sympy: {what} lists {', '.join(map(str, repeated))} more than once; "
                         "each symbol must appear once")
    return shape, flat


def _expr_array(exprs):
    """Object ndarray of SymPy expressions with the container's shape."""
    if isinstance(exprs, (sp.MatrixBase, NDimArray)):
        shape = tuple(exprs.shape)
        arr = np.empty(shape, dtype=object)
        for idx in np.ndindex(shape):
            arr[idx] = exprs[idx] if shape else exprs[()]
    elif isinstance(exprs, (list, tuple, np.ndarray)):
        arr = np.array(exprs, dtype=object) if not isinstance(exprs, np.ndarray) else exprs.astype(object)
    else:
        arr = np.empty((), dtype=object)
        arr[()] = exprs
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        e = arr[idx]
        if isinstance(e, (list, tuple, sp.MatrixBase, NDimArray, np.ndarray)):
            raise ValueError("from_sympy: exprs is ragged (its nested sequences differ in length); "
                             "give a rectangular list, a Matrix or an Array")
        try:
            out[idx] = sp.sympify(e, strict=True)
        except sp.SympifyError:
            raise TypeError(f"from_sympy: exprs must hold SymPy expressions or numbers, got "
                            f"{e!r} ({type(e).__name__})") from None
    return out


def from_sympy(exprs, inputs, params=()):
    """Build a `Graph` from SymPy expressions.

    ``exprs`` is one expression (the output has shape ``()``) or a list,
    tuple, nested list, ``Matrix``, ``Array`` or object array of them (the
    output has its shape).  ``inputs`` is the graph's argument 0: a sequence
    of Symbols gives an argument of shape ``(n,)``, a lone Symbol one of
    shape ``()``.  ``params`` (a sequence of Symbols, or a lone Symbol) is
    argument 1, present only when ``params`` is not empty.  Element ``i`` of
    an argument is the ``i``-th symbol listed.

    The graph is callable like the function it stands for, so
    ``symjac.jacobian(g, in_axes=(0, None))`` differentiates with respect to
    ``inputs`` over a batch with shared ``params``.

    Supported: ``+ - * / **`` (``sqrt``, ``cbrt`` and reciprocals are
    recognised), exp, log, trigonometric and hyperbolic functions and their
    inverses, atan2, Abs, sign, erf, erfc, Max, Min, Mod, floor, ceiling,
    Piecewise, Heaviside, relationals, And/Or/Not/Xor, the
    ``sympy.codegen.cfunctions`` (expm1, log1p, exp2, log2, log10, hypot, Sqrt,
    Cbrt): every op whose registry entry names SymPy heads; numbers (``oo``,
    ``zoo`` -> inf, ``nan``).
    Another function raises `UnsupportedOperationError`; a symbol in neither
    ``inputs`` nor ``params`` raises ValueError naming it.

    >>> import numpy as np, sympy as sp, symjac
    >>> from symjac.frontend.sympy_in import from_sympy
    >>> x, y, k = sp.symbols("x y k")
    >>> g = from_sympy([k * x * y, sp.sin(x)], [x, y], [k])
    >>> g(np.array([1.0, 2.0]), np.array([3.0])).round(4).tolist()
    [6.0, 0.8415]
    >>> J = symjac.jacobian(g, in_axes=(0, None), backend="numpy")
    >>> J(np.array([[1.0, 2.0]]), np.array([3.0])).round(4).tolist()
    [[[6.0, 3.0], [0.5403, 0.0]]]
    """
    in_shape, in_syms = _symbol_array(inputs, "inputs")
    p_shape, p_syms = _symbol_array(params, "params")
    in_set = set(in_syms)
    both = [s for s in p_syms if s in in_set]
    if both:
        raise ValueError(f"from_sympy: {', '.join(map(str, both))} in both inputs and params; "
                         "a symbol is either differentiated (inputs) or held fixed (params)")
    shapes = [in_shape] + ([p_shape] if p_syms else [])
    with BUILDING:
        leaves = make_inputs(shapes)
        symbols = {}
        for leaf, syms in zip(leaves, [in_syms, p_syms]):
            for node, s in zip(leaf.reshape(-1), syms):
                symbols[s] = node
        arr = _expr_array(exprs)
        out = np.empty(arr.shape, dtype=object)
        nodes = nodes_from_sympy(list(arr.ravel()), symbols)
    if out.size:
        out.reshape(-1)[:] = nodes
    return Graph(leaves, [out], treedef="*")


