"""Differentiation: the rules read from the registry (`rules`), the forward and
reverse sweeps that build Jacobians and the choice between them (`sweeps`),
and the forward Laplacian (`laplacian`)."""

from symjac.ad import laplacian as _laplacian, rules as _rules
from symjac.ad.laplacian import laplacian_nodes, second_partials
from symjac.ad.rules import differentiable, jvp, partials, vjp
from symjac.ad.sweeps import depends, estimate_costs, jacobian_nodes, jvp_nodes, vjp_nodes

__all__ = ["jacobian_nodes", "jvp_nodes", "vjp_nodes", "estimate_costs", "depends", "laplacian_nodes", "second_partials", "jvp", "vjp",
           "partials", "differentiable", "forget"]


def forget(op):
    """Drop what was derived from rules (after ``op``'s change): every template,
    since another op's second partials may have differentiated ``op``."""
    _rules._TEMPLATES.clear()
    _laplacian._TEMPLATES.clear()
