"""Comparisons, logic, selection and the stop-gradient identity.

Comparisons and logic give booleans and have no derivative.  ``where``
selects a tangent rather than multiplying it by 0 or 1, so a NaN or an
infinity on the branch not taken stays out of the derivative; it is linear
in its two branches, which gives its forward-Laplacian step.  ``stop`` is the
identity with a zero derivative: a derivative taken with
``enable_higher_derivatives=False`` is a constant for later sweeps.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ir import ZERO, defufunc, lookup, make
from symjac.ops.define import defelementwise

m = make


def _relation(name, fn, ufunc, infix, sympy_cls, bool_cls=None, commutative=False):
    def to(sp, c):
        if bool_cls is not None and all(c.bools):
            return getattr(sp, bool_cls)(*c.conds)
        return getattr(sp, sympy_cls)(*c.nums)

    defelementwise(name, 2, fn, dtype="bool", differentiable=False, commutative=commutative, ufuncs=(ufunc,),
                   sympy=(to, lambda sp: (getattr(sp, sympy_cls),)), printing={"numpy": f"{{0}} {infix} {{1}}"})


_relation("lt", np.less, "less", "<", "StrictLessThan")
_relation("le", np.less_equal, "less_equal", "<=", "LessThan")
_relation("gt", np.greater, "greater", ">", "StrictGreaterThan")
_relation("ge", np.greater_equal, "greater_equal", ">=", "GreaterThan")
_relation("eq", np.equal, "equal", "==", "Equality", "Equivalent", commutative=True)
_relation("ne", np.not_equal, "not_equal", "!=", "Unequality", "Xor", commutative=True)


def _logic(name, nargs, fn, ufuncs, numpy_form, numba_form, sympy_cls, commutative=False):
    defelementwise(name, nargs, fn, dtype="bool", differentiable=False, commutative=commutative, ufuncs=ufuncs,
                   sympy=(lambda sp, c: getattr(sp, sympy_cls)(*c.conds), lambda sp: (getattr(sp, sympy_cls),)),
                   printing={"numpy": numpy_form, "numba": numba_form})


_logic("and", 2, np.logical_and, ("logical_and",), "np.logical_and({0}, {1})", "{0} and {1}", "And", True)
_logic("or", 2, np.logical_or, ("logical_or",), "np.logical_or({0}, {1})", "{0} or {1}", "Or", True)
_logic("not", 1, np.logical_not, ("logical_not",), "np.logical_not({0})", "not {0}", "Not")
# On the boolean results of comparisons, NumPy's & | ^ ~ are logical.
defufunc("bitwise_and", lambda a, b: m("and", a, b))
defufunc("bitwise_or", lambda a, b: m("or", a, b))
defufunc("bitwise_xor", lambda a, b: m("ne", a, b))
defufunc("logical_xor", lambda a, b: m("ne", a, b))
defufunc("invert", lambda a: m("not", a))


# -- where ---------------------------------------------------------------------------

def _where_simplify(c, a, b):
    if a is b:
        return a
    if c.op == "const":
        return a if c.attr else b
    if c.op == "not":
        return m("where", c.args[0], b, a)
    return None


def _where_jvp(node, tangents):
    c = node.args[0]
    _, ta, tb = tangents
    if ta is None and tb is None:
        return None
    return m("where", c, ZERO if ta is None else ta, ZERO if tb is None else tb)


def _where_transpose(node, g):
    c = node.args[0]
    return None, m("where", c, g, ZERO), m("where", c, ZERO, g)


def _where_sympy(sp, c):
    cond, x, y = c.conds[0], c.nums[1], c.nums[2]
    otherwise = c.nodes[2]
    if otherwise.op == "const" and math.isnan(otherwise.attr):
        # the form from_sympy gives a Piecewise without a final True clause
        return sp.Piecewise((x, cond))
    return sp.Piecewise((x, cond), (y, True))


defelementwise("where", 3, np.where, jvp=_where_jvp, transpose=_where_transpose, linearity="linear",
               simplify=_where_simplify, sympy=(_where_sympy, lambda sp: ()),
               printing={"numpy": "np.where({0}, {1}, {2})", "numba": "{1} if {0} else {2}"})


# -- stop --------------------------------------------------------------------------------

def _stop_simplify(a):
    if a.op in ("const", "stop"):
        return a
    if a.op == "elem":  # stop the whole tensor once: its elements stay elements (block stores)
        return lookup("elem").build((m("stop", a.args[0]),), a.attr)
    return None


defelementwise("stop", 1, lambda x: x, cost=0, differentiable=False, simplify=_stop_simplify,
               sympy=(lambda sp, c: c.nums[0], lambda sp: ()), printing={"numpy": "{0}"})


# -- tests of the value: NaN, infinity ----------------------------------------------------

def _test(name, fn):
    # symbolic values are finite real numbers: the SymPy form is the constant answer for them
    defelementwise(name, 1, fn, dtype="bool", differentiable=False, ufuncs=(name,),
                   sympy=(lambda sp, c: sp.true if name == "isfinite" else sp.false, lambda sp: ()),
                   printing={"numpy": f"np.{name}({{0}})", "numba": f"math.{name}({{0}})"})


_test("isnan", np.isnan)
_test("isinf", np.isinf)
_test("isfinite", np.isfinite)
