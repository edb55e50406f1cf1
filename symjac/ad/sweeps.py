"""Jacobians of node lists: forward and reverse sweeps, and the choice
between them.

Both sweeps carry, for every node, a sparse dict of derivatives (forward: one
entry per variable the node depends on; reverse: one per output it reaches),
so all seeds are pushed in one pass and a structural zero is simply an absent
entry.  `estimate_costs` counts those entries exactly with bitsets, which is
the number of multiply-adds each mode would build; ``mode="auto"`` takes the
cheaper.  The count is of terms before simplification (``x * 1`` is one, a
sum of zeros is some): when the two counts are close, both sweeps are built
and the one with fewer new nodes is kept.
"""

from __future__ import annotations

import numpy as np

from symjac.ad.rules import accumulate, differentiable, jvp, partials, uses_partials, vjp
from symjac.ir import ONE, ZERO, lookup, toposort

__all__ = ["jacobian_nodes", "jvp_nodes", "vjp_nodes", "estimate_costs", "depends", "seeded_forward",
           "leaf_blocks_without", "built_size"]


def _reach(order, outputs, variables):
    """Bitsets: variables each node depends on, outputs each node reaches."""
    pos = {v.id: j for j, v in enumerate(variables)}
    inbits = {}
    for node in order:
        bits = 1 << pos[node.id] if node.id in pos else 0
        if node.id not in pos and differentiable(node):
            for a in _carrying(node):
                bits |= inbits.get(a.id, 0)
        if bits:
            inbits[node.id] = bits
    outbits = {}
    for k, o in enumerate(outputs):
        outbits[o.id] = outbits.get(o.id, 0) | (1 << k)
    for node in reversed(order):
        bits = outbits.get(node.id, 0)
        if not bits or node.id in pos or node.id not in inbits:
            continue
        for a in node.args:
            if a.id in inbits:
                outbits[a.id] = outbits.get(a.id, 0) | bits
    return inbits, outbits


def _carrying(node):
    """The arguments a node's derivative passes on: all, except the other factor
    of a product with the constant 0 (whose partial, 0, the rules drop)."""
    if node.op == "mul":
        a, b = node.args
        if a.op == "const" and a.attr == 0.0:
            return (a,)
        if b.op == "const" and b.attr == 0.0:
            return (b,)
    return node.args


def leaf_blocks_without(variables):
    """``opaque`` for `toposort`: a pack of input leaves none of which is a
    variable (a weight held whole, when the derivative is by other arguments)
    is a constant of the sweep; its leaves (81,920 for seedcnn's last layer)
    need no visit."""
    ids = {v.id for v in variables}
    return lambda node: node.op == "pack" and all(a.op == "input" and a.id not in ids for a in node.args)


def depends(order, variables):
    """Nodes that depend on any variable (as a dict id -> 1, like the bitsets
    of `_reach` without their width: a gradient of a million weights needs no
    million-bit set per node)."""
    pos = {v.id for v in variables}
    dep = {}
    for node in order:
        if node.id in pos or (differentiable(node) and any(a.id in dep for a in node.args)):
            dep[node.id] = 1
    return dep


def estimate_costs(outputs, variables):
    """(forward cost, reverse cost): derivative terms each sweep would build."""
    order = toposort(outputs, opaque=leaf_blocks_without(variables))
    inbits, outbits = _reach(order, outputs, variables)
    return _costs(order, inbits, outbits)


# arguments whose partial is 1: their tangent (forward) or the cotangent (reverse) passes through
# without a new node; only where two entries for one seed meet is an addition built
_UNIT_PARTIALS = {"add": (True, True), "sub": (True, False)}


def _costs(order, inbits, outbits):
    """(forward, reverse) counts of the derivative statements each sweep would
    build (a tensor op is one: a loop): per node and seed, a product with each
    non-unit partial, and an addition wherever two entries for the same seed
    meet (forward: in the node's own tangent dict; reverse: in an argument's
    adjoint, from its consumers)."""
    fwd = rev = 0
    into = {}  # node id -> adjoint entries its consumers send it (reverse)
    for node in order:
        i, o = inbits.get(node.id, 0), outbits.get(node.id, 0)
        if not (i and o and node.args):
            continue
        ni, no = i.bit_count(), o.bit_count()
        unit = _UNIT_PARTIALS.get(node.op, ())
        carried = 0
        for m, a in enumerate(_carrying(node)):
            ai = inbits.get(a.id, 0)
            if not ai:
                continue
            na = ai.bit_count()
            carried += na
            if not (m < len(unit) and unit[m]):
                fwd += na
                rev += no
            into[a.id] = into.get(a.id, 0) + no
        fwd += carried - ni  # entries that meet in this node's tangent
    for node in order:
        got = into.get(node.id)
        if got:
            rev += got - outbits.get(node.id, 0).bit_count()
    return fwd, rev


def _forward(order, variables, inbits):
    return seeded_forward(order, {v.id: {j: ONE} for j, v in enumerate(variables)}, inbits)


def seeded_forward(order, seeds, inbits):
    """Tangent dicts of the nodes in ``order`` that depend on a seeded node
    (``inbits``), from ``seeds`` (node id -> tangent dict, taken as given)."""
    tan = dict(seeds)
    for node in order:
        if node.id not in tan and node.id in inbits and node.args:
            t = jvp(node, [tan.get(a.id) for a in node.args])
            if t:
                tan[node.id] = t
    return tan


def _reverse(order, outputs, variables, inbits, seeds=None):
    """Adjoint dicts (seed -> node) of the nodes; output k is seeded with ``{k: 1}``,
    or with ``{0: seeds[k]}`` (one cotangent column: a vector-Jacobian product)."""
    pos = {v.id for v in variables}
    adj = {}
    for k, o in enumerate(outputs):
        if o.id in inbits:
            if seeds is None:
                accumulate(adj.setdefault(o.id, {}), k, ONE)
            elif seeds[k] is not ZERO:
                accumulate(adj.setdefault(o.id, {}), 0, seeds[k])
    # ops with a transpose_many rule (elem): the cotangents of all such nodes reading one
    # argument are gathered, and transposed once when the sweep reaches that argument
    picked = {}  # argument id -> (op, seed -> {attr: cotangent})
    for node in reversed(order):
        if node.id in picked:
            op, by_seed = picked.pop(node.id)
            for k, entries in by_seed.items():
                accumulate(adj.setdefault(node.id, {}), k, lookup(op).transpose_many(node, entries))
        g = adj.get(node.id)
        if not g or node.id in pos or not differentiable(node):
            continue
        if lookup(node.op).transpose_many is not None:
            a = node.args[0]
            if a.id in inbits:
                slots = picked.setdefault(a.id, (node.op, {}))[1]
                for k, gk in g.items():
                    accumulate(slots.setdefault(k, {}), node.attr, gk)
            continue
        parts = partials(node) if uses_partials(node) else None
        for k, gk in g.items():
            for a, ct in zip(node.args, vjp(node, gk, parts)):
                if ct is not None and a.id in inbits:
                    accumulate(adj.setdefault(a.id, {}), k, ct)
    return adj


def jvp_nodes(outputs, variables, tangents):
    """``sum_j d outputs[k] / d variables[j] * tangents[j]`` for each k: one forward
    column seeded with the tangent nodes (no Jacobian is built)."""
    outputs, variables = list(outputs), list(variables)
    order = toposort(outputs, opaque=leaf_blocks_without(variables))
    inbits = depends(order, variables)
    seeds = {}
    for v, t in zip(variables, tangents):
        if t is not ZERO:
            seeds[v.id] = {0: t}
    tan = seeded_forward(order, seeds, inbits)
    return [(tan.get(o.id) or {}).get(0, ZERO) for o in outputs]


def vjp_nodes(outputs, variables, cotangents):
    """``sum_k cotangents[k] * d outputs[k] / d variables[j]`` for each j: one reverse
    sweep seeded with the cotangent nodes (no Jacobian is built)."""
    outputs, variables = list(outputs), list(variables)
    order = toposort(outputs, opaque=leaf_blocks_without(variables))
    inbits = depends(order, variables)
    adj = _reverse(order, outputs, variables, inbits, list(cotangents))
    return [(adj.get(v.id) or {}).get(0, ZERO) for v in variables]


def jacobian_nodes(outputs, variables, mode="auto"):
    """Object array ``J[k, j] = d outputs[k] / d variables[j]`` of nodes.

    ``variables`` are distinct nodes held independent (normally input
    leaves).  Structural zeros are the constant node 0.
    """
    outputs, variables = list(outputs), list(variables)
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
    order = toposort(outputs, opaque=leaf_blocks_without(variables))
    if mode == "auto" and len(outputs) == 1 and len(variables) > 64:
        mode = "rev"  # a gradient of many variables: reverse, without a bitset of their count per node
    if mode == "rev":
        inbits = depends(order, variables)
    else:
        inbits, outbits = _reach(order, outputs, variables)
    if mode == "auto":
        fwd, rev = _costs(order, inbits, outbits)
        if max(fwd, rev) <= TRY_BOTH_RATIO * min(fwd, rev) + TRY_BOTH_FLOOR and max(fwd, rev) <= TRY_BOTH_MAX:
            # close estimates: the estimate counts terms, not what simplification and the rules
            # leave of them, so build both sweeps and keep the one with fewer new nodes
            built = [_sweep(m, order, outputs, variables, inbits) for m in ("fwd", "rev")]
            counts = [built_size(J, order) for J in built]
            return built[0] if counts[0] <= counts[1] else built[1]
        mode = "fwd" if fwd <= rev else "rev"
    return _sweep(mode, order, outputs, variables, inbits)


# Both sweeps are built and measured when their estimates are within this ratio, and the costlier
# estimate is at most this many terms (a few seconds of building); beyond, the estimate decides.
TRY_BOTH_RATIO = 4.0
TRY_BOTH_MAX = 2_000_000
# ... and always when the cheaper estimate is within this many terms of the ratio: on small graphs the estimate's
# misses (a `where` whose branches both carry one variable: 6 vs 1 estimated, 3 vs 7 built) are large in ratio
# and building both costs nothing
TRY_BOTH_FLOOR = 256


def _sweep(mode, order, outputs, variables, inbits):
    J = np.full((len(outputs), len(variables)), ZERO, dtype=object)
    if mode == "fwd":
        tan = _forward(order, variables, inbits)
        for k, o in enumerate(outputs):
            for j, d in (tan.get(o.id) or {}).items():
                J[k, j] = d
    else:
        adj = _reverse(order, outputs, variables, inbits)
        for j, v in enumerate(variables):
            for k, d in (adj.get(v.id) or {}).items():
                J[k, j] = d
    return J


def built_size(J, order):
    """Nodes the Jacobian ``J`` (an object array) needs beyond the program ``order``."""
    have = {n.id for n in order}
    return sum(1 for n in toposort([d for d in J.ravel() if d.op != "const"]) if n.id not in have)
