"""The SymPy front end and the way back: SymPy expressions <-> graph nodes.

`from_sympy` turns SymPy expressions into a `Graph` (so `symjac.jacobian`
and the kernels apply to them); `graph_to_sympy` and `to_latex` turn a graph
back into SymPy, for display of small Jacobians and for checking.  Nodes are
built through `symjac.simplify.make`, so a SymPy expression and the NumPy
code that computes the same thing give the same nodes.

Both directions walk with an explicit stack or in topological order: neither
recurses, so a chain of 10^4 nested functions converts.  (SymPy itself
recurses while it *evaluates* a deep expression: build one with
``evaluate=False``; `graph_to_sympy` falls back to unevaluated expressions.)

Semantics are real-valued, as in the kernels: symbols stand for real
numbers, ``re(x)`` and ``conjugate(x)`` are ``x``, ``im(x)`` is 0, and
``x**(1/3)`` is the real cube root (``np.cbrt``), defined for negative ``x``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy.codegen import cfunctions as cf
from sympy.core.parameters import evaluate as _sympy_evaluate
from sympy.logic.boolalg import BooleanFalse, BooleanTrue
from sympy.tensor.array import NDimArray

from symjac.errors import UnsupportedOperationError
from symjac.graph import BUILDING, Graph, toposort
from symjac.ops import OPS
from symjac.simplify import const, make
from symjac.tracer import make_inputs

__all__ = ["from_sympy", "graph_to_sympy", "to_latex", "nodes_from_sympy", "sympy_from_nodes"]

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
    return lambda e, a: make(op, a[0])


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


def _heaviside(e, a):
    x, h0 = a
    step = make("mul", 0.5, make("add", make("sign", x), 1.0))  # 0, 1/2, 1 (NaN stays NaN)
    if h0.op == "const" and h0.attr == 0.5:
        return step
    return make("where", make("eq", x, 0.0), h0, step)


def _equivalent(e, a):
    acc = make("eq", a[0], a[1])
    for x in a[2:]:
        acc = make("and", acc, make("eq", a[0], x))
    return acc


_RULES = {
    sp.Add: _add,
    sp.Mul: _mul,
    sp.Pow: _pow,
    sp.exp: _unary("exp"),
    sp.log: _log,
    sp.Abs: _unary("abs"),
    sp.sign: _unary("sign"),
    sp.erf: _unary("erf"),
    sp.erfc: _unary("erfc"),
    sp.atan2: lambda e, a: make("atan2", a[0], a[1]),
    sp.Max: _fold("max"),
    sp.Min: _fold("min"),
    sp.Piecewise: _piecewise,
    sp.Heaviside: _heaviside,
    sp.StrictLessThan: lambda e, a: make("lt", a[0], a[1]),
    sp.LessThan: lambda e, a: make("le", a[0], a[1]),
    sp.StrictGreaterThan: lambda e, a: make("gt", a[0], a[1]),
    sp.GreaterThan: lambda e, a: make("ge", a[0], a[1]),
    sp.Equality: lambda e, a: make("eq", a[0], a[1]),
    sp.Unequality: lambda e, a: make("ne", a[0], a[1]),
    sp.And: _fold("and"),
    sp.Or: _fold("or"),
    sp.Xor: _fold("ne"),
    sp.Equivalent: _equivalent,
    sp.Not: _unary("not"),
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
    # sympy.codegen.cfunctions: the accurate C99 forms
    cf.expm1: _unary("expm1"),
    cf.log1p: _unary("log1p"),
    cf.exp2: _unary("exp2"),
    cf.log2: _unary("log2"),
    cf.log10: _unary("log10"),
    cf.Sqrt: _unary("sqrt"),
    cf.Cbrt: _unary("cbrt"),
    cf.hypot: lambda e, a: make("hypot", a[0], a[1]),
}
for _name in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
              "acosh", "atanh"):
    _RULES[getattr(sp, _name)] = _unary(_name)
del _name


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
    supported = sorted({c.__name__ for c in _RULES} | {"Symbol", "numbers", "pi", "E", "true", "false"})
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
    >>> from symjac.simplify import const
    >>> x = sp.Symbol("x")
    >>> [n] = nodes_from_sympy([x**2 - 1], {x: const(3.0)})
    >>> n.attr
    8.0
    """
    exprs = [sp.sympify(e, strict=True) for e in exprs]
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
                memo[id(e)] = _RULES[e.func](e, [memo[id(k)] for k in kids])
                continue
            node = _leaf(e, symbols, missing)
            if node is not None:
                memo[id(e)] = node
                continue
            if getattr(e, "func", None) not in _RULES:
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
    inverses, atan2, Abs, sign, erf, erfc, Max, Min, Piecewise, Heaviside,
    relationals, And/Or/Not/Xor, the ``sympy.codegen.cfunctions`` (expm1,
    log1p, exp2, log2, log10, hypot), numbers (``oo``, ``zoo`` -> inf, ``nan``).
    Another function raises `UnsupportedOperationError`; a symbol in neither
    ``inputs`` nor ``params`` raises ValueError naming it.

    >>> import numpy as np, sympy as sp, symjac
    >>> from symjac.sympy_bridge import from_sympy
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


# -- nodes -> SymPy -----------------------------------------------------------

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


def _is_bool(node):
    return OPS[node.op].dtype == "bool"


def _num(e, node):
    """The value of ``node`` as a SymPy number (a boolean is 1 or 0)."""
    if _is_bool(node):
        return sp.Piecewise((sp.Integer(1), e), (sp.Integer(0), True))
    return e


def _cond(e, node):
    """The value of ``node`` as a SymPy boolean (a number is true when nonzero)."""
    if _is_bool(node):
        return e
    if e.is_Number:
        return sp.false if e == 0 else sp.true
    return sp.Ne(e, 0)


def _compare(cls, bool_cls):
    def build(a, nodes):
        if bool_cls is not None and all(_is_bool(n) for n in nodes):
            return bool_cls(a[0], a[1])
        return cls(_num(a[0], nodes[0]), _num(a[1], nodes[1]))

    return build


def _numeric(fn):
    return lambda a, nodes: fn(*[_num(e, n) for e, n in zip(a, nodes)])


def _logical(fn):
    return lambda a, nodes: fn(*[_cond(e, n) for e, n in zip(a, nodes)])


def _where(a, nodes):
    c, x, y = a
    if nodes[2].op == "const" and math.isnan(nodes[2].attr):
        # the form from_sympy gives a Piecewise without a final True clause
        return sp.Piecewise((_num(x, nodes[1]), _cond(c, nodes[0])))
    return sp.Piecewise((_num(x, nodes[1]), _cond(c, nodes[0])), (_num(y, nodes[2]), True))


_TO_SYMPY = {
    "neg": _numeric(lambda a: -a),
    "abs": _numeric(sp.Abs),
    "sign": _numeric(sp.sign),
    "sqrt": _numeric(sp.sqrt),
    "cbrt": _numeric(sp.cbrt),
    "exp": _numeric(sp.exp),
    "exp2": _numeric(lambda a: sp.Pow(2, a)),
    "expm1": _numeric(lambda a: sp.exp(a) - 1),
    "log": _numeric(sp.log),
    "log2": _numeric(lambda a: sp.log(a) / sp.log(2)),
    "log10": _numeric(lambda a: sp.log(a) / sp.log(10)),
    "log1p": _numeric(lambda a: sp.log(1 + a)),
    "erf": _numeric(sp.erf),
    "erfc": _numeric(sp.erfc),
    "add": _numeric(lambda a, b: a + b),
    "sub": _numeric(lambda a, b: a - b),
    "mul": _numeric(lambda a, b: a * b),
    "div": _numeric(lambda a, b: a / b),
    "pow": _numeric(lambda a, b: a ** b),
    "atan2": _numeric(sp.atan2),
    "hypot": _numeric(lambda a, b: sp.sqrt(a ** 2 + b ** 2)),
    "max": _numeric(sp.Max),
    "min": _numeric(sp.Min),
    "lt": _compare(sp.StrictLessThan, None),
    "le": _compare(sp.LessThan, None),
    "gt": _compare(sp.StrictGreaterThan, None),
    "ge": _compare(sp.GreaterThan, None),
    "eq": _compare(sp.Eq, sp.Equivalent),
    "ne": _compare(sp.Ne, sp.Xor),
    "and": _logical(sp.And),
    "or": _logical(sp.Or),
    "not": _logical(sp.Not),
    "where": _where,
    "stop": _numeric(lambda a: a),
    "expit": _numeric(lambda a: 1 / (1 + sp.exp(-a))),  # a constant for differentiation; the same value
}
for _name in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh",
              "acosh", "atanh"):
    _TO_SYMPY[_name] = _numeric(getattr(sp, _name))
del _name


def sympy_from_nodes(roots, symbols, *, evaluate=True):
    """SymPy expressions for the nodes ``roots`` (a list).

    ``symbols`` maps the id of each input node to the SymPy expression that
    stands for it.  Built bottom-up in topological order, without recursion.

    >>> import sympy as sp
    >>> from symjac.simplify import make
    >>> from symjac.tracer import make_inputs
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
                build = _TO_SYMPY.get(node.op)
                if build is None:
                    hint = ("; it is a tensor op: trace inside `with symjac.tensor_policy(min_work=None):` "
                            "to get scalar expressions") if node.shape or node.op in ("elem", "pack") else ""
                    raise UnsupportedOperationError(f"graph_to_sympy: no SymPy form for the op {node.op!r}{hint}")
                env[node.id] = build([env[a.id] for a in node.args], node.args)
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
    >>> from symjac.sympy_bridge import graph_to_sympy
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
    >>> from symjac.sympy_bridge import from_sympy, to_latex
    >>> x, y = sp.symbols("x y")
    >>> g = from_sympy([x * y, sp.sin(x)], [x, y])
    >>> print(to_latex(g, names=[[x, y]]))
    \left[\begin{matrix}x y & \sin{\left(x \right)}\end{matrix}\right]
    >>> print(to_latex(symjac.trace(symjac.jacobian(g), (2,)), names=[[x, y]]))
    \left[\begin{matrix}y & x\\\cos{\left(x \right)} & 0\end{matrix}\right]
    """
    outs = graph_to_sympy(graph, names)
    return sp.latex(outs[0] if len(outs) == 1 else tuple(outs))
