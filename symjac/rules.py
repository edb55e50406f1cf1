"""Derivative rules: one entry per op, written with graph ops.

Most ops are described by their local partial derivatives (``PARTIALS``);
forward (JVP) and reverse (VJP) mode are both derived from them, so every op
has both.  Ops whose derivative is better written directly (``where``, which
must select a tangent rather than multiply it by 0 or 1, so a NaN on the
branch not taken stays out) have their own JVP and VJP.  A derivative is a
graph of the same kind, so it can be differentiated again.  An op missing from
the tables raises `MissingRuleError`, never a silent zero.
"""

from __future__ import annotations

import math

from symjac.errors import MissingRuleError
from symjac.simplify import ONE, ZERO, make
from symjac.tensor import BILINEAR, TENSOR_OPS, fit, linear_apply, transpose_rule, tsum

__all__ = ["PARTIALS", "JVP", "VJP", "partials", "jvp", "vjp", "defpartials", "NONDIFFERENTIABLE"]

LN2 = math.log(2.0)
LN10 = math.log(10.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def m(op, *args):
    return make(op, *args)


# node n = op(a[, b]) -> tuple of d n / d arg
PARTIALS = {
    "neg": lambda n, a: (m("neg", ONE),),
    "abs": lambda n, a: (m("sign", a),),
    "sign": lambda n, a: (ZERO,),
    "sqrt": lambda n, a: (m("div", 0.5, n),),
    "cbrt": lambda n, a: (m("div", 1.0, m("mul", 3.0, m("mul", n, n))),),
    "exp": lambda n, a: (n,),
    "exp2": lambda n, a: (m("mul", n, LN2),),
    "expm1": lambda n, a: (m("add", n, 1.0),),
    "log": lambda n, a: (m("div", 1.0, a),),
    "log2": lambda n, a: (m("div", 1.0, m("mul", a, LN2)),),
    "log10": lambda n, a: (m("div", 1.0, m("mul", a, LN10)),),
    "log1p": lambda n, a: (m("div", 1.0, m("add", a, 1.0)),),
    "sin": lambda n, a: (m("cos", a),),
    "cos": lambda n, a: (m("neg", m("sin", a)),),
    "tan": lambda n, a: (m("add", 1.0, m("mul", n, n)),),
    "asin": lambda n, a: (m("div", 1.0, m("sqrt", m("sub", 1.0, m("mul", a, a)))),),
    "acos": lambda n, a: (m("neg", m("div", 1.0, m("sqrt", m("sub", 1.0, m("mul", a, a))))),),
    "atan": lambda n, a: (m("div", 1.0, m("add", 1.0, m("mul", a, a))),),
    "sinh": lambda n, a: (m("cosh", a),),
    "cosh": lambda n, a: (m("sinh", a),),
    "tanh": lambda n, a: (m("sub", 1.0, m("mul", n, n)),),
    "asinh": lambda n, a: (m("div", 1.0, m("sqrt", m("add", m("mul", a, a), 1.0))),),
    "acosh": lambda n, a: (m("div", 1.0, m("mul", m("sqrt", m("sub", a, 1.0)), m("sqrt", m("add", a, 1.0)))),),
    "atanh": lambda n, a: (m("div", 1.0, m("sub", 1.0, m("mul", a, a))),),
    "erf": lambda n, a: (m("mul", TWO_OVER_SQRT_PI, m("exp", m("neg", m("mul", a, a)))),),
    "erfc": lambda n, a: (m("mul", -TWO_OVER_SQRT_PI, m("exp", m("neg", m("mul", a, a)))),),
    # n (1 - n): finite for every x, where the quotient rule on 1/(1+exp(-x)) gives inf/inf
    "expit": lambda n, a: (m("mul", n, m("sub", 1.0, n)),),
    "add": lambda n, a, b: (ONE, ONE),
    "sub": lambda n, a, b: (ONE, m("neg", ONE)),
    "mul": lambda n, a, b: (b, a),
    "div": lambda n, a, b: (m("div", 1.0, b), m("neg", m("div", n, b))),
    "pow": lambda n, a, b: _pow_partials(n, a, b),
    "atan2": lambda n, y, x: _atan2_partials(y, x),
    "hypot": lambda n, a, b: (m("div", a, n), m("div", b, n)),
    # Ties split the derivative evenly, as JAX does for maximum/minimum.
    "max": lambda n, a, b: _select_partials(m("gt", a, b), m("eq", a, b)),
    "min": lambda n, a, b: _select_partials(m("lt", a, b), m("eq", a, b)),
}

# Ops whose derivative is zero wherever it exists (piecewise constant results).
NONDIFFERENTIABLE = {"lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not", "const", "input", "stop", "tconst"}


def _pow_partials(n, a, b):
    if b.op == "const":
        # d/da a**c = c * a**(c-1); the exponent's partial is never needed.
        return m("mul", b, m("pow", a, b.attr - 1.0)), ZERO
    return m("mul", b, m("pow", a, m("sub", b, 1.0))), m("mul", n, m("log", a))


def _atan2_partials(y, x):
    r2 = m("add", m("mul", x, x), m("mul", y, y))
    return m("div", x, r2), m("neg", m("div", y, r2))


def _select_partials(first, tie):
    half_or_zero = m("where", tie, 0.5, 0.0)
    return m("where", first, 1.0, half_or_zero), m("where", first, 0.0, m("where", tie, 0.5, 1.0))


def defpartials(op, rule):
    """Register ``rule(node, *args) -> tuple of partials`` for ``op``."""
    PARTIALS[op] = rule


def partials(node):
    if node.op in TENSOR_OPS:
        raise MissingRuleError(f"tensor op {node.op!r} has no elementwise partials (it is linear; "
                               "use jvp/vjp)")
    rule = PARTIALS.get(node.op)
    if rule is None:
        raise MissingRuleError(f"no derivative rule for op {node.op!r}; register one with "
                               "symjac.extend.defpartials")
    return rule(node, *node.args)


# -- JVP and VJP ----------------------------------------------------------
# A tangent is a dict {seed index: node}; a missing entry (or None for the
# whole dict) is a symbolic zero and costs nothing.


def _accumulate(acc, key, term):
    prev = acc.get(key)
    acc[key] = term if prev is None else make("add", prev, term)


def _jvp_where(node, tangents):
    c, a, b = node.args
    ta, tb = tangents[1] or {}, tangents[2] or {}
    return {k: make("where", c, ta.get(k, ZERO), tb.get(k, ZERO)) for k in {**ta, **tb}}


def _vjp_where(node, g):
    c = node.args[0]
    return None, make("where", c, g, ZERO), make("where", c, ZERO, g)


JVP = {"where": _jvp_where}
VJP = {"where": _vjp_where}


def _tensor_jvp(node, tangents):
    """Linear ops: the op on the tangents; bilinear ops: one term per argument."""
    seeds = {k for t in tangents if t for k in t}
    out = {}
    for k in seeds:
        ts = [t.get(k) if t else None for t in tangents]
        if node.op in BILINEAR:
            for m, tm in enumerate(ts):
                if tm is not None:
                    args = list(node.args)
                    args[m] = tm
                    _accumulate(out, k, linear_apply(node, args))
        else:
            term = linear_apply(node, ts)
            if term is not None:
                out[k] = term
    return out


def jvp(node, tangents):
    """Tangent dict of ``node`` from its arguments' tangent dicts."""
    if node.op in NONDIFFERENTIABLE:
        return None
    if node.op in TENSOR_OPS:
        return _tensor_jvp(node, tangents) or None
    special = JVP.get(node.op)
    if special is not None:
        out = special(node, tangents) or None
    else:
        out = {}
        parts = partials(node)
        for p, t in zip(parts, tangents):
            if not t or p is ZERO:
                continue
            for k, tk in t.items():
                _accumulate(out, k, make("mul", p, tk))
    if out and node.shape:  # a scalar argument's tangent broadcasts over a tensor result
        out = {k: fit(t, node.shape) for k, t in out.items()}
    return out or None


def _unbroadcast(ct, arg):
    """A cotangent of a tensor result, for a scalar argument: its sum."""
    if ct is None or ct.shape == arg.shape:
        return ct
    return tsum(ct, range(len(ct.shape)))


def vjp(node, cotangent, parts=None):
    """Cotangents of ``node``'s arguments (None = zero) for ``cotangent``."""
    if node.op in NONDIFFERENTIABLE:
        return (None,) * len(node.args)
    if node.op in TENSOR_OPS:
        return tuple(transpose_rule(node, cotangent))
    special = VJP.get(node.op)
    if special is not None:
        cts = special(node, cotangent)
    else:
        parts = partials(node) if parts is None else parts
        cts = tuple(None if p is ZERO else make("mul", cotangent, p) for p in parts)
    return tuple(_unbroadcast(ct, a) for ct, a in zip(cts, node.args))
