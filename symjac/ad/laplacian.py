"""Forward Laplacian: value, gradient and Laplacian in one forward sweep.

For every node ``n = op(a_1..a_k)`` the sweep carries the gradient with
respect to the chosen variables (a sparse dict, as the forward Jacobian
sweep does) and the Laplacian (the sum of the second derivatives with
respect to every variable):

    grad n = sum_m  p_m grad a_m
    lap n  = sum_m  p_m lap a_m  +  sum_{m,l}  q_ml <grad a_m, grad a_l>

with ``p_m`` the op's partials and ``q_ml`` its second partials (Li et al.,
"Forward Laplacian", 2023).  No Hessian entry is ever built: the cost is the
gradient sweep plus one scalar per node and one dot product per pair of
arguments.  The step of each op follows from its registry entry: second
partials come from differentiating the op's own partial rules on placeholder
arguments (every elementwise op with a first-derivative rule has them); an
op linear in its differentiable arguments (``where``, reshapes, sums) maps
the Laplacians with its JVP; a bilinear op (contractions, convolutions) adds
twice the sum of B(d_i a, d_i b); any other tensor op with a JVP (``lsolve``,
``det``, ``eigh``) adds, per variable, the derivative of its JVP along that
variable's gradient.  No op is special-cased here.
"""

from __future__ import annotations

from symjac.ad.rules import differentiable, jvp, partials, placeholders, template_key, uses_partials
from symjac.ad.sweeps import depends, jacobian_nodes, leaf_blocks_without
from symjac.errors import MissingRuleError
from symjac.ir import ONE, ZERO, broadcast_scalar, lookup, make, rebuild, substitute, toposort

__all__ = ["laplacian_nodes", "second_partials"]

_TEMPLATES: dict = {}


def second_partials(node):
    """``(p, q)``: first partials and the matrix of second partials of ``node``
    with respect to its arguments, as nodes in terms of those arguments.

    Worked out once per (op, constant arguments) on placeholder leaves, so the
    cost per node does not depend on the size of the graph below it.
    """
    key = template_key(node)
    template = _TEMPLATES.get(key)
    if template is None:
        ph, n_ph = placeholders(node)
        by_arg = dict(zip((a.id for a in n_ph.args), partials(n_ph)))
        p_ph = [by_arg[a.id] for a in ph]  # aligned with node.args (make may reorder)
        q_ph = jacobian_nodes(p_ph, ph, "fwd")
        template = _TEMPLATES[key] = (ph, p_ph, q_ph)
    ph, p_ph, q_ph = template
    mapping = {leaf.id: a for leaf, a in zip(ph, node.args) if leaf.op != "const"}
    new = substitute(p_ph + list(q_ph.ravel()), mapping, rebuild)
    k = len(node.args)
    return new[:k], [new[k + m * k: k + (m + 1) * k] for m in range(k)]


def _dot(ga, gb):
    acc = None
    small, big = (ga, gb) if len(ga) <= len(gb) else (gb, ga)
    for i, x in small.items():
        y = big.get(i)
        if y is not None:
            term = make("mul", x, y)
            acc = term if acc is None else make("add", acc, term)
    return acc


def _add(acc, term):
    return term if acc is None else make("add", acc, term)


def _bilinear_step(node, info, gs, ls):
    """Laplacian of a bilinear op B(a, b): B(lap a, b) + B(a, lap b) + 2 sum_i
    B(d_i a, d_i b); no second partials are needed."""
    a, b = node.args
    (ga, gb), (la, lb) = gs, ls
    L = None
    if la is not None:
        L = _add(L, info.build((la, b), node.attr))
    if lb is not None:
        L = _add(L, info.build((a, lb), node.attr))
    if ga and gb:
        cross = None
        for i, x in ga.items():
            y = gb.get(i)
            if y is not None:
                cross = _add(cross, info.build((x, y), node.attr))
        if cross is not None:
            L = _add(L, make("mul", 2.0, cross))
    return L


def _partials_step(node, gs, ls):
    """Gradient and Laplacian from first and second partials (elementwise ops)."""
    p, q = second_partials(node)
    g, L = {}, None
    for m, (pm, gm) in enumerate(zip(p, gs)):
        if not gm or pm is ZERO:
            continue
        for i, t in gm.items():
            g[i] = _add(g.get(i), make("mul", pm, t))
        if ls[m] is not None:
            L = _add(L, make("mul", pm, ls[m]))
    for m in range(len(node.args)):
        if not gs[m]:
            continue
        for l in range(m, len(node.args)):
            if not gs[l] or q[m][l] is ZERO:
                continue
            d = _dot(gs[m], gs[l])
            if d is None:
                continue
            factor = q[m][l] if l == m else make("mul", 2.0, q[m][l])
            L = _add(L, make("mul", factor, d))
    return g or None, L


def _nonlinear_step(node, info, gs, ls):
    """A nonlinear tensor op with a JVP (``lsolve``, ``det``, ``eigh``...):
    lap n = J[lap a] + sum_i D^2 n[g_i, g_i], the second term for each
    variable i the derivative of the JVP along g_i (the tangents g_i held
    fixed), by a forward sweep over the JVP's expression."""
    g = jvp(node, gs)
    L = info.jvp(node, list(ls)) if any(x is not None for x in ls) else None
    for i in sorted({i for gm in gs if gm for i in gm}):
        ti = [gm.get(i) if gm else None for gm in gs]
        first = info.jvp(node, ti)
        if first is None:
            continue
        seeds = {a.id: t for a, t in zip(node.args, ti) if t is not None}
        seeds[node.id] = g.get(i) if g else None
        fixed = {t.id for t in ti if t is not None}
        second = _along(first, seeds, fixed)
        if second is not None:
            L = _add(L, second)
    return g, L


def _along(expr, seeds, fixed):
    """The derivative of ``expr`` when each node ``id`` in ``seeds`` moves along
    ``seeds[id]`` (None: held), nodes in ``fixed`` held constant."""
    tangents = {}
    for n in toposort([expr], opaque=lambda n: n.id in seeds or n.id in fixed):
        if n.id in seeds:
            tangents[n.id] = seeds[n.id]
            continue
        if n.id in fixed or not differentiable(n):
            continue
        ts = [tangents.get(a.id) for a in n.args]
        if all(t is None for t in ts):
            continue
        out = jvp(n, [None if t is None else {0: t} for t in ts])
        if out:
            tangents[n.id] = out[0]
    return tangents.get(expr.id)


def _step(node, gs, ls):
    """(gradient dict, Laplacian) of one node from its arguments'."""
    info = lookup(node.op)
    if info.laplacian is not None:
        return info.laplacian(node, gs, ls)
    if info.linearity == "linear" and info.jvp is not None:  # linear in its differentiable arguments: lap = the JVP of the laps
        return jvp(node, gs), info.jvp(node, ls)
    if info.linearity == "bilinear":
        return jvp(node, gs), _bilinear_step(node, info, gs, ls)
    if uses_partials(node):
        return _partials_step(node, gs, ls)
    if info.kind == "structural" and info.jvp is not None:
        return _nonlinear_step(node, info, gs, ls)
    raise MissingRuleError(f"op {node.op!r} has no forward-Laplacian rule: declare its linearity, partials, or "
                           "a laplacian rule")


def laplacian_nodes(outputs, variables):
    """``(laplacians, gradients)`` of ``outputs`` with respect to ``variables``.

    ``laplacians[k]`` is the node sum_j d^2 outputs[k] / d variables[j]^2 (ZERO
    when structurally zero); ``gradients[k]`` the dict {j: d outputs[k]/d v_j}.
    """
    outputs, variables = list(outputs), list(variables)
    order = toposort(outputs, opaque=leaf_blocks_without(variables))
    inbits = depends(order, variables)
    pos = {v.id: j for j, v in enumerate(variables)}
    grad, lap = {}, {}
    for node in order:
        if node.id in pos:
            grad[node.id] = {pos[node.id]: ONE}
            continue
        if node.id not in inbits or not node.args or not differentiable(node):
            continue
        gs = [grad.get(a.id) for a in node.args]
        ls = [lap.get(a.id) for a in node.args]
        g, L = _step(node, gs, ls)
        if g:
            grad[node.id] = {i: broadcast_scalar(t, node.shape) for i, t in g.items()}
        if L is not None:
            lap[node.id] = broadcast_scalar(L, node.shape)
    return [lap.get(o.id, ZERO) for o in outputs], [grad.get(o.id, {}) for o in outputs]
