"""Arithmetic: + - * / **, negation, and the binary functions of two numbers
(``arctan2``, ``hypot``, ``maximum``, ``minimum``, ``mod``, ``fmod``,
``copysign``, ``logaddexp``, ``logaddexp2``).

Each op's simplifications are IEEE-exact (``x+0 -> x`` since ``-0.0 + 0.0`` is
``+0.0``, ``0-x -> -x``, ``x*1``, ``x/1``, ``x-0``, ``--x``, ``x**1``, ``x**0 ->
1``, ``a + (-b) -> a - b``) except those guarded by `non_ieee`.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ir import ONE, ZERO, defufunc, is_one, is_zero, make, non_ieee
from symjac.ops.define import call, defelementwise, sympy_function

m = make


def _numeric(build):
    """A SymPy 'to' rule on the arguments as numbers."""
    return lambda sp, c: build(sp, *c.nums)


# -- + - * / ---------------------------------------------------------------------

def _add_simplify(a, b):
    if is_zero(a):
        return b
    if is_zero(b):
        return a
    if b.op == "neg":
        return m("sub", a, b.args[0])
    if a.op == "neg":
        return m("sub", b, a.args[0])
    return None


def _sub_simplify(a, b):
    if is_zero(b):
        return a
    if is_zero(a):
        return m("neg", b)
    if b.op == "neg":
        return m("add", a, b.args[0])
    if a is b and non_ieee():
        return ZERO
    return None


def _mul_simplify(a, b):
    if is_one(a):
        return b
    if is_one(b):
        return a
    if a.op == "const" and a.attr == -1.0:
        return m("neg", b)
    if b.op == "const" and b.attr == -1.0:
        return m("neg", a)
    if a.op == "neg" and b.op == "neg":
        return m("mul", a.args[0], b.args[0])
    if non_ieee() and (is_zero(a) or is_zero(b)):
        return ZERO
    return None


def _div_simplify(a, b):
    if is_one(b):
        return a
    if b.op == "const" and b.attr == -1.0:
        return m("neg", a)
    if a is b and non_ieee():
        return ONE
    return None


def _pow_simplify(a, b):
    if b.op == "const":
        if b.attr == 1.0:
            return a
        if b.attr == 0.0:
            return ONE
    return None


def _pow_cost(node):
    """Flops of a power: small integer powers are printed as products."""
    b = node.args[1]
    if not node.shape and b.op == "const" and float(b.attr).is_integer() and 1 <= abs(b.attr) <= 4:
        return int(abs(b.attr)) - 1 + (b.attr < 0) * 4
    return 20 * math.prod(node.shape)


def _pow_partials(n, a, b):
    if b.op == "const":
        # d/da a**c = c * a**(c-1); the exponent's partial is never needed.
        return m("mul", b, m("pow", a, b.attr - 1.0)), ZERO
    # d/db a**b = a**b log(a); at a = 0 the log of a replaced by log(1) = 0, as JAX and autograd:
    # 0 for b >= 0 (the limit from a > 0 for b > 0), NaN for b < 0 (inf * 0)
    safe = m("where", m("eq", a, 0.0), 1.0, a)
    return m("mul", b, m("pow", a, m("sub", b, 1.0))), m("mul", n, m("log", safe))


defelementwise("neg", 1, np.negative, ufuncs=("negative",), partials=lambda n, a: (m("neg", ONE),),
               simplify=lambda a: a.args[0] if a.op == "neg" else None,
               sympy=(_numeric(lambda sp, a: -a), lambda sp: ()), printing={"numpy": "-{0}"})
defelementwise("add", 2, np.add, commutative=True, ufuncs=("add",), partials=lambda n, a, b: (ONE, ONE),
               simplify=_add_simplify, sympy=(_numeric(lambda sp, a, b: a + b), lambda sp: ()),
               printing={"numpy": "{0} + {1}"})
defelementwise("sub", 2, np.subtract, ufuncs=("subtract",), partials=lambda n, a, b: (ONE, m("neg", ONE)),
               simplify=_sub_simplify, sympy=(_numeric(lambda sp, a, b: a - b), lambda sp: ()),
               printing={"numpy": "{0} - {1}"})
defelementwise("mul", 2, np.multiply, commutative=True, ufuncs=("multiply",), partials=lambda n, a, b: (b, a),
               simplify=_mul_simplify, sympy=(_numeric(lambda sp, a, b: a * b), lambda sp: ()),
               printing={"numpy": "{0} * {1}"})
defelementwise("div", 2, np.divide, cost=4, ufuncs=("true_divide", "divide"),
               partials=lambda n, a, b: (m("div", 1.0, b), m("neg", m("div", n, b))),
               simplify=_div_simplify, sympy=(_numeric(lambda sp, a, b: a / b), lambda sp: ()),
               printing={"numpy": "{0} / {1}"})
defelementwise("pow", 2, np.power, cost=_pow_cost, ufuncs=("power", "float_power"), partials=_pow_partials,
               simplify=_pow_simplify, sympy=(_numeric(lambda sp, a, b: a ** b), lambda sp: ()),
               printing={"numpy": "{0} ** {1}"})

defufunc("positive", lambda x: x)
defufunc("conjugate", lambda x: x)
defufunc("square", lambda x: m("mul", x, x))
defufunc("reciprocal", lambda x: m("div", 1.0, x))


# -- binary functions ---------------------------------------------------------------

def _atan2_partials(n, y, x):
    r2 = m("add", m("mul", x, x), m("mul", y, y))
    return m("div", x, r2), m("neg", m("div", y, r2))


def _hypot_partials(n, a, b):
    # at (0, 0), where hypot has no derivative: 0 for both, the minimum-norm subgradient (as abs'(0) = 0;
    # JAX gives 0.5 each)
    zero = m("eq", n, 0.0)
    return m("where", zero, 0.0, m("div", a, n)), m("where", zero, 0.0, m("div", b, n))


def _select_partials(first, tie):
    # Ties split the derivative evenly, as JAX does for maximum/minimum.  A NaN argument is what
    # np.maximum/minimum return (NaN propagates), so the derivative follows it (``first`` is true for a
    # NaN ``a``; a NaN ``b`` is neither first nor a tie).
    half_or_zero = m("where", tie, 0.5, 0.0)
    return m("where", first, 1.0, half_or_zero), m("where", first, 0.0, m("where", tie, 0.5, 1.0))


def _cfunction(name):
    def heads(sp):
        from sympy.codegen import cfunctions

        return (getattr(cfunctions, name),)

    return heads


defelementwise("atan2", 2, np.arctan2, cost=20, ufuncs=("arctan2",), partials=_atan2_partials,
               sympy=sympy_function("atan2"), printing=call("np.arctan2"))
defelementwise("hypot", 2, np.hypot, cost=6, commutative=True, ufuncs=("hypot",),
               partials=_hypot_partials,
               sympy=(_numeric(lambda sp, a, b: sp.sqrt(a ** 2 + b ** 2)), _cfunction("hypot")),
               printing=call("np.hypot"))
defelementwise("max", 2, np.maximum, commutative=True, ufuncs=("maximum",),
               partials=lambda n, a, b: _select_partials(m("or", m("gt", a, b), m("ne", a, a)), m("eq", a, b)),
               sympy=sympy_function("Max"), printing=call("np.maximum"))
# fmax/fmin ignore a NaN argument (NumPy): the other one is the value, and its derivative follows it
defufunc("fmax", lambda a, b: m("where", m("ne", b, b), a, m("where", m("ne", a, a), b, m("max", a, b))))
defufunc("fmin", lambda a, b: m("where", m("ne", b, b), a, m("where", m("ne", a, a), b, m("min", a, b))))
defelementwise("min", 2, np.minimum, commutative=True, ufuncs=("minimum",),
               partials=lambda n, a, b: _select_partials(m("or", m("lt", a, b), m("ne", a, a)), m("eq", a, b)),
               sympy=sympy_function("Min"), printing=call("np.minimum"))

# a - floor(a/b) b (the sign of b, as Python's %): d/da = 1, d/db = -floor(a/b)
defelementwise("mod", 2, np.mod, cost=8, ufuncs=("remainder",),
               partials=lambda n, a, b: (ONE, m("neg", m("floor", m("div", a, b)))),
               sympy=sympy_function("Mod"), printing=call("np.mod", cuda="_cu_mod"))
# a - trunc(a/b) b (the sign of a, as C's fmod): d/da = 1, d/db = -trunc(a/b)
defelementwise("fmod", 2, np.fmod, cost=8, ufuncs=("fmod",),
               partials=lambda n, a, b: (ONE, m("neg", m("trunc", m("div", a, b)))),
               sympy=(_numeric(lambda sp, a, b: a - b * sp.sign(a / b) * sp.floor(sp.Abs(a / b))), lambda sp: ()),
               printing=call("np.fmod", cuda="_cu_fmod"))
# |a| with the sign of b: d/da = sign(a) copysign(1, b) (0 at a = 0, as abs), d/db = 0
defelementwise("copysign", 2, np.copysign, ufuncs=("copysign",),
               partials=lambda n, a, b: (m("mul", m("sign", a), m("copysign", 1.0, b)), ZERO),
               sympy=(_numeric(lambda sp, a, b: sp.Abs(a) * sp.Piecewise((-1, b < 0), (1, True))), lambda sp: ()),
               printing=call("np.copysign", cuda="_cu_copysign"))
def _logaddexp_partials(power):
    """d/da log(e^a + e^b) = e^(a - n); where a == b (both infinite too) 1/2 each, as JAX."""
    def partials(n, a, b):
        tie = m("eq", a, b)
        return (m("where", tie, 0.5, m(power, m("sub", a, n))), m("where", tie, 0.5, m(power, m("sub", b, n))))

    return partials


# log(e^a + e^b): d/da = e^(a - n), finite for every a and b
defelementwise("logaddexp", 2, np.logaddexp, cost=40, commutative=True, ufuncs=("logaddexp",),
               partials=_logaddexp_partials("exp"),
               sympy=(_numeric(lambda sp, a, b: sp.log(sp.exp(a) + sp.exp(b))), lambda sp: ()),
               printing=call("np.logaddexp", cuda="_cu_logaddexp"))
defelementwise("logaddexp2", 2, np.logaddexp2, cost=40, commutative=True, ufuncs=("logaddexp2",),
               partials=_logaddexp_partials("exp2"),
               sympy=(_numeric(lambda sp, a, b: sp.log(2 ** a + 2 ** b) / sp.log(2)), lambda sp: ()),
               printing=call("np.logaddexp2", cuda="_cu_logaddexp2"))
