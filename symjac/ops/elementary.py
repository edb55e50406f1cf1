"""Elementary and special functions of one number: roots, exponentials and
logarithms, trigonometric and hyperbolic functions and their inverses,
``erf``, ``erfc``, ``expit``, ``sinc``, ``abs``, ``sign`` and rounding.

Conventions at kinks: ``abs`` has derivative ``sign(x)`` (0 at 0); ``sign``,
``floor``, ``ceil``, ``trunc`` and ``rint`` are piecewise constant, with
derivative 0 wherever it exists (as in JAX); ``heaviside`` too, except
that ``heaviside(x, h0)`` has derivative 1 in ``h0`` where ``x == 0``.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.errors import UnsupportedOperationError
from symjac.ir import ONE, defufunc, defunction, make
from symjac.ops.define import call, defelementwise, sympy_function

m = make
LN2 = math.log(2.0)
LN10 = math.log(10.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _vectorize(fn):
    ufunc = np.frompyfunc(fn, 1, 1)

    def apply(x):
        return np.asarray(ufunc(np.asarray(x, dtype=float)), dtype=float)[()]

    return apply


# Numba compiles math.f(x) of a scalar about a sixth faster than np.f(x), to the same code: 3,005-statement
# sin chain 3.65 -> 3.05 s; identical values and result types for float64 and float32 on +-0, +-inf, NaN,
# subnormals and out-of-domain arguments (`tests/test_numerics.py`).
# no NumPy ufunc in a CUDA kernel: libdevice through codegen.cuda's helper of this name (`_cu_<op>`)
CUDA_HELPER = {"cbrt", "exp2", "sinc", "sign", "floor", "ceil", "trunc", "rint"}
MATH_SPELLING = {"sqrt", "exp", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan", "asin", "acos",
                 "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh"}


def _unary(name, fn, partial, *, cost=20, ufunc=None, sympy=None, printing=None, **kw):
    """An elementwise function of one number with derivative ``partial(node, arg)``
    (the NumPy ufunc of the same name traces to it, unless ``ufunc=""``)."""
    ufuncs = () if ufunc == "" else (ufunc or name,)
    if printing is None:
        printing = call(f"np.{ufunc or name}", f"math.{name}" if name in MATH_SPELLING else None,
                        f"_cu_{name}" if name in CUDA_HELPER else None)
    defelementwise(name, 1, fn, cost=cost, ufuncs=ufuncs, partials=lambda n, a: (partial(n, a),),
                   sympy=sympy or sympy_function(name), printing=printing, **kw)


def _numeric(build):
    return lambda sp, c: build(sp, *c.nums)


def _inverse_sqrt_rule(inner):
    return lambda n, a: m("div", 1.0, m("sqrt", inner(a)))


_unary("sqrt", np.sqrt, lambda n, a: m("div", 0.5, n), cost=4,
       sympy=(_numeric(lambda sp, a: sp.sqrt(a)), lambda sp: _cfunctions("Sqrt")))
_unary("cbrt", np.cbrt, lambda n, a: m("div", 1.0, m("mul", 3.0, m("mul", n, n))),
       sympy=(_numeric(lambda sp, a: sp.cbrt(a)), lambda sp: _cfunctions("Cbrt")))
_unary("exp", np.exp, lambda n, a: n)
_unary("exp2", np.exp2, lambda n, a: m("mul", n, LN2), sympy=(_numeric(lambda sp, a: sp.Integer(2) ** a),
                                                              lambda sp: _cfunctions("exp2")))
_unary("expm1", np.expm1, lambda n, a: m("add", n, 1.0), sympy=(_numeric(lambda sp, a: sp.exp(a) - 1),
                                                                 lambda sp: _cfunctions("expm1")))
_unary("log", np.log, lambda n, a: m("div", 1.0, a))
_unary("log2", np.log2, lambda n, a: m("div", 1.0, m("mul", a, LN2)),
       sympy=(_numeric(lambda sp, a: sp.log(a) / sp.log(2)), lambda sp: _cfunctions("log2")))
_unary("log10", np.log10, lambda n, a: m("div", 1.0, m("mul", a, LN10)),
       sympy=(_numeric(lambda sp, a: sp.log(a) / sp.log(10)), lambda sp: _cfunctions("log10")))
_unary("log1p", np.log1p, lambda n, a: m("div", 1.0, m("add", a, 1.0)),
       sympy=(_numeric(lambda sp, a: sp.log(1 + a)), lambda sp: _cfunctions("log1p")))
_unary("sin", np.sin, lambda n, a: m("cos", a))
_unary("cos", np.cos, lambda n, a: m("neg", m("sin", a)))
_unary("tan", np.tan, lambda n, a: m("add", 1.0, m("mul", n, n)))
_unary("asin", np.arcsin, _inverse_sqrt_rule(lambda a: m("sub", 1.0, m("mul", a, a))), ufunc="arcsin")
_unary("acos", np.arccos, lambda n, a: m("neg", m("div", 1.0, m("sqrt", m("sub", 1.0, m("mul", a, a))))),
       ufunc="arccos")
_unary("atan", np.arctan, lambda n, a: m("div", 1.0, m("add", 1.0, m("mul", a, a))), ufunc="arctan")
_unary("sinh", np.sinh, lambda n, a: m("cosh", a))
_unary("cosh", np.cosh, lambda n, a: m("sinh", a))
_unary("tanh", np.tanh, lambda n, a: m("sub", 1.0, m("mul", n, n)))
_unary("asinh", np.arcsinh, _inverse_sqrt_rule(lambda a: m("add", m("mul", a, a), 1.0)), ufunc="arcsinh")
_unary("acosh", np.arccosh,
       lambda n, a: m("div", 1.0, m("mul", m("sqrt", m("sub", a, 1.0)), m("sqrt", m("add", a, 1.0)))),
       ufunc="arccosh")
_unary("atanh", np.arctanh, lambda n, a: m("div", 1.0, m("sub", 1.0, m("mul", a, a))), ufunc="arctanh")
_unary("erf", _vectorize(math.erf), lambda n, a: m("mul", TWO_OVER_SQRT_PI, m("exp", m("neg", m("mul", a, a)))),
       printing={"numpy": "_erf({0})", "numba": "math.erf({0})"})
_unary("erfc", _vectorize(math.erfc),
       lambda n, a: m("mul", -TWO_OVER_SQRT_PI, m("exp", m("neg", m("mul", a, a)))),
       printing={"numpy": "_erfc({0})", "numba": "math.erfc({0})"})
# n (1 - n): finite for every x, where the quotient rule on 1/(1+exp(-x)) gives inf/inf
_unary("expit", lambda x: 1.0 / (1.0 + np.exp(-x)), lambda n, a: m("mul", n, m("sub", 1.0, n)), cost=24,
       sympy=(_numeric(lambda sp, a: 1 / (1 + sp.exp(-a))), lambda sp: ()),
       printing={"numpy": "_F(1.0) / (_F(1.0) + np.exp(-{0}))", "cuda": "_F(1.0) / (_F(1.0) + math.exp(-{0}))"})
_unary("abs", np.abs, lambda n, a: m("sign", a), cost=1, ufunc="absolute", sympy=sympy_function("Abs"),
       printing=call("np.abs", cuda="abs"))
defufunc("fabs", lambda x: m("abs", x))
# np.nan_to_num with its defaults: NaN -> 0, +-inf -> the largest finite number of the kernel's dtype
# (so one op: the bound is the printed kernel's, float32 or float64); derivative 1 where x is finite
_unary("nan_to_num", np.nan_to_num, lambda n, a: m("where", m("isfinite", a), 1.0, 0.0), cost=3, ufunc="",
       sympy=(lambda sp, c: c.nums[0], lambda sp: ()),
       printing={"numpy": "np.nan_to_num({0})", "numba": "_F(np.nan_to_num({0}))", "cuda": "_cu_nan_to_num({0})"})


def _sinc_partial(n, x):
    """d/dx sin(pi x)/(pi x) = (cos(pi x) - sinc(x)) / x, from its series near 0
    (where the difference cancels)."""
    px2 = m("mul", m("mul", x, x), math.pi ** 2)
    # -pi^2 x/3 (1 - (pi x)^2/10 + (pi x)^4/280 - (pi x)^6/15120 + (pi x)^8/1330560)
    poly = 1.0 / 1330560.0
    for c in (-1.0 / 15120.0, 1.0 / 280.0, -1.0 / 10.0, 1.0):
        poly = m("add", m("mul", poly, px2), c)
    series = m("mul", m("mul", x, -math.pi ** 2 / 3.0), poly)
    direct = m("div", m("sub", m("cos", m("mul", x, math.pi)), n), x)
    return m("where", m("lt", m("abs", x), 1e-2), series, direct)


# SymPy's sinc is sin(x)/x; NumPy's is sin(pi x)/(pi x)
_unary("sinc", np.sinc, _sinc_partial, cost=30, ufunc="", printing=call("np.sinc", cuda="_cu_sinc"),
       sympy=(_numeric(lambda sp, a: sp.sinc(sp.pi * a)), lambda sp: (sp.sinc,),
              lambda e, a: m("sinc", m("div", a[0], math.pi))))
defunction(np.sinc, lambda x: m("sinc", x), elementwise=True)  # a NumPy function, not a ufunc


def _round(x, decimals=0, out=None):
    """``np.round``: half to even, at ``decimals`` digits (negative: tens, hundreds...)."""
    if out is not None:
        raise UnsupportedOperationError("np.round(..., out=...) on traced arrays")
    if decimals == 0:
        return m("rint", x)
    scale = 10.0 ** decimals
    return m("div", m("rint", m("mul", x, scale)), scale)


defunction(np.round, _round, elementwise=True)
defunction(np.around, _round, elementwise=True)

defufunc("deg2rad", lambda x: m("mul", x, math.pi / 180.0))
defufunc("radians", lambda x: m("mul", x, math.pi / 180.0))
defufunc("rad2deg", lambda x: m("mul", x, 180.0 / math.pi))
defufunc("degrees", lambda x: m("mul", x, 180.0 / math.pi))
defufunc("logit", lambda x: m("log", m("div", x, m("sub", 1.0, x))))


def _cfunctions(name):
    from sympy.codegen import cfunctions

    return (getattr(cfunctions, name),)


# -- piecewise constant: zero derivative wherever it exists -----------------------------

def _constant(name, fn, sympy=None, ufunc=None):
    defelementwise(name, 1, fn, differentiable=False, ufuncs=(ufunc or name,),
                   sympy=sympy, printing=call(f"np.{ufunc or name}", cuda=f"_cu_{name}" if name in CUDA_HELPER else None))


_constant("sign", np.sign, sympy=sympy_function("sign"))
_constant("floor", np.floor, sympy=sympy_function("floor"))
_constant("ceil", np.ceil, sympy=(_numeric(lambda sp, a: sp.ceiling(a)), lambda sp: (sp.ceiling,)))
_constant("trunc", np.trunc, sympy=(_numeric(lambda sp, a: sp.sign(a) * sp.floor(sp.Abs(a))), lambda sp: ()))
# SymPy has no round-half-to-even function: an undefined function of that name both ways
_constant("rint", np.rint, sympy=(_numeric(lambda sp, a: sp.Function("rint")(a)), lambda sp: (sp.Function("rint"),)))


def _heaviside(x, h0):
    """0 for x < 0, h0 at 0, 1 for x > 0, NaN for NaN (with a zero derivative there too)."""
    nan_or_h0 = m("where", m("eq", x, x), h0, m("stop", x))
    return m("where", m("gt", x, 0.0), ONE, m("where", m("lt", x, 0.0), 0.0, nan_or_h0))


defufunc("heaviside", _heaviside)
