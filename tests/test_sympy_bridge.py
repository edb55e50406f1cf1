"""The SymPy front end and the way back (`symjac.frontend.sympy_in`, `sympy_out`).

Oracles: SymPy itself (its Jacobian, lambdified) for derivatives, the NumPy
tracer for node identity (hash-consing), and the round trip through SymPy.
"""

import math

import numpy as np
import pytest
import scipy.special
import sympy as sp
from sympy.codegen import cfunctions as cf

import symjac
from symjac.errors import UnsupportedOperationError
from symjac.frontend.sympy_in import from_sympy, nodes_from_sympy
from symjac.frontend.sympy_out import graph_to_sympy, to_latex
from symjac.frontend.traced import TracedArray

x, y, z = sp.symbols("x y z")
XS = sp.symbols("x0:3", real=True)
PS = sp.symbols("p0:2", real=True)
x0, x1, x2 = XS
p0, p1 = PS


# -- (a) the same nodes as the NumPy tracer ------------------------------------

SAME_AS_NUMPY = [
    (x * y + sp.sin(x), lambda a, b: a * b + np.sin(a)),
    (x - 2 * y, lambda a, b: a - 2 * b),
    (x / y, lambda a, b: a / b),
    (x / 2, lambda a, b: a / 2),
    (1 / x, lambda a, b: 1 / a),
    (x ** 2 + 3 * y, lambda a, b: a ** 2 + 3 * b),
    (x - 1, lambda a, b: a - 1),
    (-(x * y), lambda a, b: -(a * b)),
    (sp.sqrt(x) * sp.exp(-y), lambda a, b: np.sqrt(a) * np.exp(-b)),
    (sp.Piecewise((x, x > y), (y, True)), lambda a, b: np.where(a > b, a, b)),
    (sp.Max(x, y) + sp.Min(x, 0), lambda a, b: np.maximum(a, b) + np.minimum(a, 0.0)),
    (sp.atan2(x, y) * sp.Abs(y), lambda a, b: np.arctan2(a, b) * np.abs(b)),
    (sp.log(x, 2) + sp.log(y, 10), lambda a, b: np.log2(a) + np.log10(b)),
    (sp.erf(x) + sp.tanh(y), lambda a, b: scipy.special.erf(a) + np.tanh(b)),
    (x ** sp.Rational(1, 3) + 2 ** y, lambda a, b: np.cbrt(a) + np.exp2(b)),
    (cf.expm1(x) * cf.log1p(y), lambda a, b: np.expm1(a) * np.log1p(b)),
]


@pytest.mark.parametrize("expr, f", SAME_AS_NUMPY, ids=[str(e) for e, _ in SAME_AS_NUMPY])
def test_same_nodes_as_numpy(expr, f):
    g = from_sympy(expr, [x, y])
    v = TracedArray(g.inputs[0])
    assert f(v[0], v[1]).nodes[()] is g.outputs[0][()]


def test_same_nodes_as_trace_through_substitution():
    g = from_sympy(x * y + sp.sin(x), [x, y])
    t = symjac.trace(lambda v: v[0] * v[1] + np.sin(v[0]), (2,))
    assert g(TracedArray(t.inputs[0])).nodes[()] is t.outputs[0][()]
    assert len(g) == len(t) == 3


# -- (b) round trip to SymPy ---------------------------------------------------

ROUND_TRIP = [
    x + y, x - y, x * y, x / y, -x, x ** 3, x ** y, x ** -2, 2 ** x, sp.sqrt(x), 1 / sp.sqrt(x),
    x ** sp.Rational(1, 3), x ** sp.Rational(3, 2), sp.exp(x), sp.log(x), sp.log(x, 2),
    sp.log(x, 10), sp.sin(x), sp.cos(x), sp.tan(x), sp.asin(x), sp.acos(x), sp.atan(x),
    sp.sinh(x), sp.cosh(x), sp.tanh(x), sp.asinh(x), sp.acosh(x), sp.atanh(x), sp.erf(x),
    sp.erfc(x), sp.Abs(x), sp.sign(x), sp.atan2(y, x), sp.Max(x, y), sp.Min(x, y, z),
    sp.Piecewise((x, x < y), (y, True)), sp.Piecewise((x, x < y), (z, x > z), (y, True)),
    sp.Piecewise((x, x < y)), x < y, x <= y, x > y, x >= y, sp.Eq(x, y), sp.Ne(x, y),
    sp.And(x < y, y < z), sp.Or(x < y, sp.Not(y < z)), sp.Not(x < y),
    x / 3 + sp.Rational(1, 4), sp.Float(0.1) * x - sp.Rational(3, 4) * y, sp.pi * x + sp.E,
    x * y / (z + 1), (x - y) ** 2 / sp.sqrt(x + z), sp.exp(-x ** 2 / 2) * sp.cos(y),
    sp.Integer(7), sp.oo * x, sp.nan,
]


def _same(a, b):
    if a == b:
        return True
    if isinstance(a, sp.core.relational.Relational):
        return a.reversed == b
    if isinstance(a, sp.Expr) and isinstance(b, sp.Expr):
        return sp.simplify(a - b) == 0
    return False


@pytest.mark.parametrize("expr", ROUND_TRIP, ids=[str(e) for e in ROUND_TRIP])
def test_round_trip(expr):
    g = from_sympy(expr, [x, y, z])
    back = graph_to_sympy(g, names=[[x, y, z]])
    assert len(back) == 1
    assert _same(back[0], expr), (back[0], expr)


def test_round_trip_keeps_shape_and_names():
    m = sp.Matrix([[x * y, sp.sin(y)], [x + 1, sp.Integer(0)]])
    g = from_sympy(m, [x, y], [z])
    assert g.outputs[0].shape == (2, 2)
    [back] = graph_to_sympy(g)
    assert isinstance(back, sp.Array) and back.shape == (2, 2)
    a, b = sp.symbols("x0_0 x0_1")
    assert back == sp.Array([[a * b, sp.sin(b)], [a + 1, 0]])
    assert g.to_sympy() == [back]


def test_graph_to_sympy_of_traced_numpy_matches_values():
    """Ops the SymPy front end only meets from NumPy: exp2, expm1, hypot,
    float conditions, arithmetic on booleans, logical ops on booleans."""

    def f(v):
        a, b, c = v[0], v[1], v[2]
        return np.array([
            np.exp2(a) + np.expm1(b) + np.log1p(c * c) + np.log2(c * c + 1) + np.log10(a * a + 2),
            np.hypot(a, b) * np.cbrt(c * c + 1),
            np.where(a, b, c) + (a > 0) * b,
            np.where(np.not_equal(a > b, b > c), 1.0, 2.0)
            + np.where(np.logical_or(np.logical_and(np.logical_not(a < c), b < 1), c > 2), a, b),
            np.sign(a) * np.arcsinh(b) + np.where(np.equal(a > 0, b > 0), a, c),
        ])

    g = symjac.trace(f, (3,))
    [back] = graph_to_sympy(g, names=[["a", "b", "c"]])
    fn = sp.lambdify([sp.symbols("a b c")], list(back), "numpy")
    rng = np.random.default_rng(0)
    for v in rng.uniform(-2, 2, (20, 3)):
        np.testing.assert_allclose(np.array(fn(v), dtype=float), g(v), rtol=1e-13, atol=1e-15)
    # and back again: the SymPy forms convert to graphs with the same values
    g2 = from_sympy(list(back), sp.symbols("a b c"))
    for v in rng.uniform(-2, 2, (5, 3)):
        np.testing.assert_allclose(g2(v), g(v), rtol=1e-13, atol=1e-15)


def test_to_latex():
    g = from_sympy([x ** 2, sp.sqrt(y)], [x, y])
    assert to_latex(g, names=[[x, y]]) == r"\left[\begin{matrix}x^{2} & \sqrt{y}\end{matrix}\right]"
    assert to_latex(from_sympy(x / y, [x, y])) == r"\frac{x_{0 0}}{x_{0 1}}"
    two = symjac.trace(lambda v: (v * 2.0, np.sin(v)), ())
    assert to_latex(two) == r"\left( 2 x_{0 0}, \  \sin{\left(x_{0 0} \right)}\right)"


# -- (c) the Jacobian against SymPy's ---------------------------------------------

JACOBIAN_TABLE = [
    [x0 * x1 + sp.sin(x0), x2 ** 2 / p0],
    [sp.exp(-x0 ** 2) * sp.cos(p1 * x1), sp.log(1 + x1 ** 2) - sp.tan(x2 / 3)],
    [sp.sqrt(x0 ** 2 + x1 ** 2 + 1), 1 / sp.sqrt(1 + x2 ** 2), (x0 ** 2 + 1) ** sp.Rational(1, 3)],
    [sp.asin(x0 / 2), sp.acos(x1 / 3), sp.atan(x2), sp.asinh(x0), sp.acosh(2 + x1 ** 2),
     sp.atanh(x2 / 2)],
    [sp.sinh(x0) * sp.cosh(x1), sp.tanh(x2 * p0)],
    [sp.erf(x0 * p0), sp.erfc(x1) * x2],
    [sp.atan2(x0, x1 + 3), sp.atan2(x2, x0)],
    [sp.Abs(x0) * x1, sp.Max(x0, x1, x2 * p1), sp.Min(x0, x1 ** 2)],
    [sp.Piecewise((x0 ** 2, x0 > 0.1), (sp.sin(x1), x1 < 0), (x2 * x0, True))],
    [sp.Piecewise((x0 * x1, (x0 > 0) & (x1 > 0)), (x0 + x2, sp.Or(x2 > 0.5, sp.Not(x0 < -0.5))),
                  (p0 * x1, True))],
    [(x1 ** 2 + 1) ** sp.Rational(-3, 2), x0 ** 3 * p0 - x1 ** -2, (x2 ** 2 + 1) ** p1],
    [sp.log(x0 ** 2 + 1, 2), sp.log(x1 ** 2 + 1, 10), sp.exp(x2) * 2 ** x0],
    [sp.Rational(3, 4) * x0 - 2.5 * x1 * p0 + x2 / 7 - 1, -x0 * x1 / (x2 ** 2 + 1)],
    [sp.sec(x0), sp.cot(x1 + 2), cf.expm1(x2) + cf.log1p(x0 ** 2) + cf.hypot(x0, x1)],
]


@pytest.mark.parametrize("exprs", JACOBIAN_TABLE, ids=[str(i) for i in range(len(JACOBIAN_TABLE))])
def test_jacobian_matches_sympy(exprs):
    g = from_sympy(exprs, XS, PS)
    J = symjac.jacobian(g, in_axes=(0, None), backend="numpy")
    rng = np.random.default_rng(1)
    X = rng.uniform(-1.5, 1.5, (16, 3))
    P = rng.uniform(0.5, 1.5, 2)
    got = J(X, P)
    ref_jac = sp.lambdify((XS, PS), sp.Matrix(exprs).jacobian(XS), "numpy")
    ref_val = sp.lambdify((XS, PS), list(exprs), "numpy")
    want = np.array([np.array(ref_jac(X[b], P), dtype=float) for b in range(len(X))])
    assert got.shape == (16, len(exprs), 3)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    for b in range(4):
        np.testing.assert_allclose(g(X[b], P), np.array(ref_val(X[b], P), dtype=float), rtol=1e-13)


def test_heaviside_and_sign_values():
    g = from_sympy([sp.Heaviside(x), sp.Heaviside(x, 0), sp.sign(x)], x)
    for v in (-2.0, 0.0, 3.0):
        assert g(v).tolist() == [np.heaviside(v, 0.5), np.heaviside(v, 0.0), np.sign(v)]


# -- shapes and arguments ------------------------------------------------------------

def test_shapes():
    g = from_sympy(x * y, [x, y])
    assert len(g.inputs) == 1 and g.inputs[0].shape == (2,) and g.outputs[0].shape == ()
    g = from_sympy([[x, y], [x * y, 1]], [x, y], [z])
    assert g.outputs[0].shape == (2, 2) and [a.shape for a in g.inputs] == [(2,), (1,)]
    g = from_sympy(sp.Array([x, 2 * x, 3 * x]), x)
    assert g.inputs[0].shape == () and g(2.0).tolist() == [2.0, 4.0, 6.0]
    g = from_sympy(sp.Matrix([x, y]), sp.Matrix([x]), y)
    assert g.outputs[0].shape == (2, 1) and g(np.array([5.0]), 7.0).tolist() == [[5.0], [7.0]]
    g = from_sympy((sp.true, sp.Integer(3), 0.5, sp.zoo, -sp.oo), [x])
    assert g(np.array([0.0])).tolist() == [1.0, 3.0, 0.5, math.inf, -math.inf]


def test_constant_of_unsupported_function_is_evaluated():
    g = from_sympy(sp.gamma(sp.Rational(1, 3)) * x, [x])
    assert g(np.array([2.0]))[()] == pytest.approx(2 * math.gamma(1 / 3), rel=1e-15)


def test_nodes_from_sympy_with_own_mapping():
    g = symjac.trace(lambda v: v * 2.0, (2,))
    [n] = nodes_from_sympy([2 * x], {x: g.inputs[0][0]})
    assert n is g.outputs[0][0]


# -- (d) errors ---------------------------------------------------------------------

@pytest.mark.parametrize("expr, name", [
    (sp.airyai(x), "airyai"),
    (sp.besselk(0, x), "besselk"),
    (sp.Function("f")(x) + 1, "'f'"),
    (sp.zeta(x), "zeta"),
    (sp.Derivative(sp.Function("u")(x), x), "Derivative"),
])
def test_unsupported_function(expr, name):
    with pytest.raises(UnsupportedOperationError, match=name):
        from_sympy(expr, [x])


def test_free_symbol_not_declared():
    with pytest.raises(ValueError, match=r"symbol\(s\) y, z"):
        from_sympy([x + y, sp.sin(z)], [x])


@pytest.mark.parametrize("inputs, params, match", [
    ([x, y, x], (), "inputs lists x"),
    ([x], [y, y], "params lists y"),
    ([x, y], [y], "y in both"),
])
def test_duplicate_symbols(inputs, params, match):
    with pytest.raises(ValueError, match=match):
        from_sympy(x + y, inputs, params)


def test_bad_arguments():
    with pytest.raises(TypeError, match="Symbol"):
        from_sympy(x, ["x"])
    with pytest.raises(TypeError, match="Symbol"):
        from_sympy(x, [x + 1])
    with pytest.raises(TypeError, match="Symbol"):
        from_sympy(x, 3)
    with pytest.raises(ValueError, match="ragged"):
        from_sympy([[x], [x, x]], [x])
    g = from_sympy(x * y, [x, y])
    with pytest.raises(ValueError, match="3 names"):
        graph_to_sympy(g, names=[["a", "b", "c"]])
    with pytest.raises(ValueError, match="2 entries"):
        graph_to_sympy(g, names=[["a", "b"], ["c"]])


# -- (e) deep expressions --------------------------------------------------------------

def test_deep_chain_converts_without_recursion():
    depth = 10_000
    e = x
    for _ in range(depth):
        e = sp.sin(e, evaluate=False)  # SymPy's own evaluation recurses on deep trees
    g = from_sympy(e, [x])
    assert len(g) == depth
    want = 0.7
    for _ in range(depth):
        want = math.sin(want)
    assert g(np.array([0.7]))[()] == pytest.approx(want, rel=1e-12)
    back = graph_to_sympy(g)[0]  # falls back to unevaluated SymPy
    assert back.func is sp.sin


def test_deep_arithmetic_chain():
    e = x
    for i in range(5_000):
        e = sp.Add(sp.Mul(sp.Rational(1, 2), e, evaluate=False), sp.cos(y, evaluate=False), evaluate=False)
    g = from_sympy(e, [x, y])
    want = 1.0
    for _ in range(5_000):
        want = want / 2 + math.cos(0.3)
    assert g(np.array([1.0, 0.3]))[()] == pytest.approx(want, rel=1e-12)
