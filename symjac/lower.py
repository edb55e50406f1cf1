"""Lowering: a traced `Graph` to a `codegen.Program` (plain data for the printers).

The graph's reachable nodes are numbered in topological order (dead code is
never visited); constants are hoisted; a consecutive run of one input's
leaves is loaded as a block; each output entry is written once, runs of one
tensor's elements by one block store; outputs with many structural zeros are
zero-filled per sample instead of storing each zero.  Every elementwise op
in the program brings its printing templates from the registry.
"""

from __future__ import annotations

import math
import numpy as np

from codegen import Param, Program, Stmt
from symjac.frontend.graph import Graph, Whole
from symjac.ir import constant_value, lookup, toposort

__all__ = ["lower"]

ZERO_FILL_MIN = 4  # an output with at least this many structural zeros is zero-filled
BLOCK_MIN = 4  # a run of at least this many tensor entries is stored by one loop


def _is_plus_zero(node):
    return node.op == "const" and node.attr == 0.0 and math.copysign(1.0, node.attr) > 0


def _input_block(node, where):
    """(k, offset) when ``node`` packs a consecutive run of input k's leaves."""
    if node.op != "pack" or node.args[0].id not in where:
        return None
    k, i0 = where[node.args[0].id]
    for j, a in enumerate(node.args):
        if where.get(a.id) != (k, i0 + j):
            return None
    return k, i0


def _runs(flat):
    """Split an output's entries into block stores (runs of consecutive
    elements of one tensor) and single entries."""
    blocks, singles, i = [], [], 0
    while i < len(flat):
        n = flat[i]
        if n.op == "elem":
            t, j0, j = n.args[0], n.attr, i + 1
            while j < len(flat) and flat[j].op == "elem" and flat[j].args[0] is t \
                    and flat[j].attr == j0 + (j - i):
                j += 1
            if j - i >= BLOCK_MIN:
                blocks.append((i, t, j0, j - i))
                i = j
                continue
        singles.append((i, n))
        i += 1
    return blocks, singles


def lower(graph: Graph, batched, title="kernel", reduced=()):
    """The `codegen.Program` of ``graph``; ``batched[k]`` says if input k has a
    batch axis; outputs in ``reduced`` are sums over the batch."""
    where = {}
    for k, leaf in enumerate(graph.inputs):
        for i, node in enumerate(leaf.ravel()):
            where[node.id] = (k, i)
    stores, block_stores, zero_fill, roots = [], [], set(), []
    plan = []
    for k, out in enumerate(graph.outputs):
        if isinstance(out, Whole):  # one tensor: one block store
            plan.append((k, [(0, out.node, 0, out.size)] if out.size else [], []))
            roots.append(out.node)
            continue
        flat = list(out.ravel())
        zeros = sum(1 for n in flat if _is_plus_zero(n))
        fill = k not in reduced and zeros >= ZERO_FILL_MIN
        if fill:
            zero_fill.add(k)
        blocks, singles = _runs(flat)
        # accumulators start at zero, as do zero-filled rows: a structural zero needs no store
        singles = [(i, n) for i, n in singles if not ((k in reduced or fill) and _is_plus_zero(n))]
        plan.append((k, blocks, singles))
        roots += [t for _, t, _, _ in blocks] + [n for _, n in singles]
    input_blocks = {}

    def is_input_block(node):  # a consecutive run of one input's leaves: loaded as a block, not one by one
        blk = _input_block(node, where)
        if blk is not None:
            input_blocks[node.id] = blk
        return blk is not None

    stmts, body, functions, ops = {}, [], {}, {}  # stmts: node id -> its statement
    # the model's constant tensors, pooled by dtype: one hidden input per dtype, each tensor a block of it at an
    # offset (a multiple of 8 entries).  An input each made mechanisms with hundreds of index and rate tables
    # into kernels of hundreds of parameters, whose typing and unboxing cost Numba ~30 ms a parameter
    pools = {}  # dtype key -> [input index, arrays, entries so far]
    emit = body.append
    nv = nc = nt = 0
    for node in toposort(roots, opaque=is_input_block):
        op = node.op
        if op == "input":
            if node.id not in where:
                raise ValueError("the function's result depends on a traced value that is not one of "
                                 "its arguments (a value captured from another trace?); pass it as an argument")
            k, i = where[node.id]
            stmt = Stmt(f"v{nv}", "load", (k, i), None, (), bool(batched[k]))
            nv += 1
        elif op == "const":
            stmt = Stmt(f"c{nc}", "const", (node.attr,), None, (), False)
            nc += 1
        elif op in ("tconst", "iconst"):
            value = np.ravel(np.asarray(constant_value(node)))
            key = "f" if value.dtype.kind == "f" else value.dtype.str
            pool = pools.setdefault(key, [len(graph.inputs) + len(pools), [], 0])
            offset = pool[2]
            pool[1] += [value, np.zeros(-value.size % 8, dtype=value.dtype)]
            pool[2] += value.size + (-value.size % 8)
            stmt = Stmt(f"t{nt}", "loadblock", (pool[0], offset), None, node.shape, False, lookup(op).dtype)
            nt += 1
        elif node.id in input_blocks:
            k, i0 = input_blocks[node.id]
            stmt = Stmt(f"t{nt}", "loadblock", (k, i0), None, node.shape, bool(batched[k]))
            nt += 1
        else:
            known = ops.get(op)
            if known is None:  # once per op: its registry entry
                info = lookup(op)
                known = ops[op] = (info.kind == "structural", info.dtype)
                if info.kind == "elementwise":
                    functions[op] = dict(info.printing)
            structural, dtype = known
            if node.shape:
                name = f"t{nt}"
                nt += 1
            else:
                name = f"v{nv}"
                nv += 1
            args = node.args
            if len(args) == 2:
                s0, s1 = stmts[args[0].id], stmts[args[1].id]
                names, b = (s0.name, s1.name), s0.batched or s1.batched
            elif len(args) == 1:
                s0 = stmts[args[0].id]
                names, b = (s0.name,), s0.batched
            else:
                parts = [stmts[a.id] for a in args]
                names, b = tuple([p.name for p in parts]), any([p.batched for p in parts])
            stmt = Stmt(name, op, names, node.attr if structural else None, node.shape, b, dtype)
        stmts[node.id] = stmt
        emit(stmt)
    for k, blocks, singles in plan:
        for i, t, j0, n in blocks:
            block_stores.append((k, i, stmts[t.id].name, j0, n))
        stores += [(k, i, stmts[n.id].name) for i, n in singles]
    inputs = [Param(int(leaf.size), bool(b)) for leaf, b in zip(graph.inputs, batched)]
    hidden = [np.concatenate(arrays) for _, arrays, _ in sorted(pools.values(), key=lambda p: p[0])]
    inputs += [Param(int(c.size), False) for c in hidden]
    outputs = [Param(int(out.size), k not in reduced, k in reduced) for k, out in enumerate(graph.outputs)]
    return Program(inputs, outputs, body, stores, frozenset(zero_fill), title, block_stores, hidden, functions)
