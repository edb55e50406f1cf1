"""The one door for extending symjac's derivative rules.

``defpartials(op, rule)`` sets the local partial derivatives of an op (both
forward and reverse mode derive from them); ``defjvp``/``defvjp`` replace a
mode's rule outright, for ops whose derivative should select rather than
multiply (see ``where`` in `symjac.rules`).

>>> from symjac.extend import defpartials
>>> from symjac.rules import PARTIALS
>>> tanh_rule = PARTIALS["tanh"]   # (node, arg) -> (1 - node**2,)
>>> defpartials("tanh", tanh_rule)
"""

from symjac.rules import JVP, VJP, defpartials
from symjac.simplify import make

__all__ = ["defpartials", "defjvp", "defvjp", "make"]


def defjvp(op, rule):
    """Register ``rule(node, tangents) -> dict`` as the forward rule of ``op``."""
    JVP[op] = rule


def defvjp(op, rule):
    """Register ``rule(node, cotangent) -> tuple`` as the reverse rule of ``op``."""
    VJP[op] = rule
