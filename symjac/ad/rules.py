"""Derivative rules read from the registry: the JVP and the VJP of one node.

A tangent is a dict ``{seed: node}``; a missing entry (or None for the whole
dict) is a symbolic zero and costs nothing.  An op's registry entry gives
its local partials (elementwise ops: forward and reverse mode both come from
them), or a JVP and a transpose.  An elementwise op declared with only a JVP
or only a transpose (a user's op, through `symjac.extend`) gets its partials
derived from that rule on placeholder arguments, once per op: the JVP is
linear in the tangents, so the partial in argument m is its derivative in
tangent m.  No op is special-cased here.
"""

from __future__ import annotations

from symjac.errors import MissingRuleError
from symjac.ir import ONE, ZERO, broadcast_scalar, lookup, make, make_inputs, substitute, rebuild

__all__ = ["differentiable", "partials", "uses_partials", "jvp", "vjp", "accumulate", "sum_over_broadcast",
           "placeholders", "template_key"]


def differentiable(node):
    """False for leaves and ops whose derivative is zero wherever it exists."""
    info = lookup(node.op)
    return info.kind != "leaf" and info.differentiable


def uses_partials(node):
    """True when the node's derivative is built from local partials (given, or
    derived from the op's JVP or transpose); False for elementwise ops with
    both a JVP and a transpose of their own (``where``) and for tensor ops."""
    info = lookup(node.op)
    return info.kind == "elementwise" and (info.partials is not None or info.jvp is None or info.transpose is None)


def partials(node):
    """The local partial derivatives of an elementwise node, one per argument."""
    info = lookup(node.op)
    if info.kind != "elementwise":
        raise MissingRuleError(f"op {node.op!r} is {info.kind}: it has no elementwise partials (use jvp/vjp)")
    if info.partials is not None:
        return info.partials(node, *node.args)
    if info.jvp is not None or info.transpose is not None:
        return _derived_partials(node, info)
    raise MissingRuleError(f"no derivative rule for op {node.op!r}; give it partials, a jvp or a transpose "
                           "with symjac.extend.defop")


_TEMPLATES: dict = {}


def _derived_partials(node, info):
    """Partials from a JVP (linear in the tangents: the JVP with tangent 1 in
    argument m and none elsewhere) or a transpose (its cotangents for a
    cotangent of 1), worked out on scalar placeholders and substituted."""
    key = template_key(node)
    template = _TEMPLATES.get(key)
    if template is None:
        ph, n_ph = placeholders(node)
        if info.jvp is not None:
            parts = []
            for j in range(len(ph)):
                p = info.jvp(n_ph, [ONE if i == j else None for i in range(len(ph))])
                parts.append(ZERO if p is None else p)
        else:
            parts = [ZERO if ct is None else ct for ct in info.transpose(n_ph, ONE)]
        by_arg = dict(zip((a.id for a in n_ph.args), parts))  # make may have reordered the arguments
        template = _TEMPLATES[key] = (ph, [by_arg[a.id] for a in ph])
    ph, parts = template
    mapping = {leaf.id: a for leaf, a in zip(ph, node.args) if leaf.op != "const"}
    return substitute(parts, mapping, rebuild)


def template_key(node):
    """Rules worked out on placeholders are shared by nodes of one op with the
    same constant arguments."""
    return node.op, tuple(a if a.op == "const" else None for a in node.args)


def placeholders(node):
    """``(ph, n_ph)``: scalar placeholder leaves for ``node``'s arguments (its
    constants kept) and the op applied to them."""
    leaves = [arr[()] for arr in make_inputs([()] * len(node.args))]
    ph = [a if a.op == "const" else leaf for a, leaf in zip(node.args, leaves)]
    n_ph = make(node.op, *ph)
    if n_ph.op != node.op or sorted(a.id for a in n_ph.args) != sorted(a.id for a in ph):
        raise MissingRuleError(f"op {node.op!r} does not rebuild on placeholder arguments (it simplified "
                               "away); give it partials")
    return ph, n_ph


def accumulate(acc, key, term):
    prev = acc.get(key)
    acc[key] = term if prev is None else make("add", prev, term)


def jvp(node, tangents):
    """Tangent dict of ``node`` from its arguments' tangent dicts."""
    info = lookup(node.op)
    if info.kind == "leaf" or not info.differentiable:
        return None
    if info.kind == "structural":
        out = {}
        for k in sorted({k for t in tangents if t for k in t}):
            term = info.jvp(node, [t.get(k) if t else None for t in tangents])
            if term is not None:
                out[k] = term
        return out or None
    if uses_partials(node):
        out = {}
        for p, t in zip(partials(node), tangents):
            if not t or p is ZERO:
                continue
            for k, tk in t.items():
                accumulate(out, k, make("mul", p, tk))
    else:
        out = {}
        for k in dict.fromkeys(k for t in tangents if t for k in t):
            term = info.jvp(node, [t.get(k) if t else None for t in tangents])
            if term is not None:
                out[k] = term
    if out and node.shape:  # a scalar argument's tangent broadcasts over a tensor result
        out = {k: broadcast_scalar(t, node.shape) for k, t in out.items()}
    return out or None


def sum_over_broadcast(ct, arg):
    """A cotangent of a tensor result, for a scalar argument: its sum."""
    if ct is None or ct.shape == arg.shape:
        return ct
    return lookup("tsum").build((ct,), tuple(range(len(ct.shape))))


def vjp(node, cotangent, parts=None):
    """Cotangents of ``node``'s arguments (None = zero) for ``cotangent``;
    ``parts`` are the node's partials when the caller has them already."""
    info = lookup(node.op)
    if info.kind == "leaf" or not info.differentiable:
        return (None,) * len(node.args)
    if info.kind == "structural":
        return tuple(info.transpose(node, cotangent))
    if uses_partials(node):
        parts = partials(node) if parts is None else parts
        cts = tuple(None if p is ZERO else make("mul", cotangent, p) for p in parts)
    else:
        cts = info.transpose(node, cotangent)
    return tuple(sum_over_broadcast(ct, a) for ct, a in zip(cts, node.args))
