"""The IR: hash-consing, simplification, iterative walks at scale."""

import math
import sys

import numpy as np
import pytest

import symjac
from symjac.ad import jacobian_nodes
from symjac.ir import ONE, ZERO, const, evaluate_nodes, make, make_inputs, toposort, tree_size
from symjac.lower import lower


def leaves(n):
    return list(make_inputs([(n,)])[0])


def test_hash_consing_identical_nodes_are_one():
    a, b = leaves(2)
    assert make("mul", make("sin", a), b) is make("mul", make("sin", a), b)
    assert make("add", a, b) is make("add", b, a)  # canonical order of commutative args
    assert make("sub", a, b) is not make("sub", b, a)
    g1 = symjac.trace(lambda x: np.sin(x[0]) * x[1], (2,))
    assert len(g1) == 2


def test_intern_table_keeps_live_nodes_and_sweeps_dropped_graphs():
    from symjac.ir import node as ir_node

    a, b = leaves(2)
    kept = make("mul", make("sin", a), b)
    ir_node._sweep()  # what earlier tests left; the table is now far below the next automatic sweep
    size = len(ir_node._TABLE)
    ids = []
    for k in range(200):  # a dead chain: each node holds the one before
        y = make("add", make("cos", a), const(float(k)))
        for _ in range(50):
            y = make("sin", y)
        ids.append(y.id)
        del y
    assert len(ir_node._TABLE) >= size + 200 * 51
    ir_node._sweep()
    assert len(ir_node._TABLE) <= size  # every dead chain went in one pass, newest first
    assert make("mul", make("sin", a), b) is kept  # a live node stays the node of its key
    sin_a = make("sin", a)
    assert any(arg is sin_a for arg in kept.args)  # and so do its arguments
    y = make("add", make("cos", a), const(199.0))
    for _ in range(50):
        y = make("sin", y)
    assert y.id not in ids  # built again: a new node


def test_garbage_collector_is_paused_while_building_and_restored_after():
    import gc

    seen = []

    def f(x):
        seen.append(gc.isenabled())
        return np.sin(x)

    assert gc.isenabled()
    symjac.compile(f, backend="numpy")(np.ones((2, 3)))
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        symjac.compile(lambda x: f(x) * 2.0, backend="numpy")(np.ones((2, 3)))
        assert seen == [False, False] and not gc.isenabled()  # left off, as the caller had it
    finally:
        gc.enable()


def test_constant_folding_and_ieee_exact_identities():
    a, = leaves(1)
    assert make("add", 2.0, 3.0) is const(5.0)
    assert make("sin", 0.0) is ZERO
    assert make("add", a, 0.0) is a and make("mul", a, 1.0) is a and make("div", a, 1.0) is a
    assert make("sub", a, 0.0) is a and make("sub", 0.0, a) is make("neg", a)
    assert make("neg", make("neg", a)) is a and make("pow", a, 1.0) is a and make("pow", a, 0.0) is ONE
    assert make("add", a, make("neg", a)).op == "sub"
    assert make("where", make("gt", a, 0.0), a, a) is a
    # not IEEE-exact, so not applied by default: inf*0 is nan, inf-inf is nan
    assert make("mul", a, 0.0) is not ZERO
    assert make("sub", a, a) is not ZERO
    with symjac.non_ieee_rewrites():
        assert make("mul", a, 0.0) is ZERO and make("sub", a, a) is ZERO and make("div", a, a) is ONE
    assert make("mul", a, 0.0) is not ZERO


def test_signed_zero_and_nan_constants_are_distinct():
    assert const(0.0) is not const(-0.0)
    assert const(float("nan")) is const(float("nan"))
    assert math.isnan(make("div", 0.0, 0.0).attr)


def test_structural_zeros_in_jacobian():
    x = leaves(3)
    J = jacobian_nodes([make("mul", x[0], x[1]), make("sin", x[2])], x)
    assert [[n is ZERO for n in row] for row in J] == [[False, False, True], [True, True, False]]


def test_derivative_is_a_graph_of_the_same_kind():
    x, = leaves(1)
    y = make("mul", make("sin", x), x)
    d1 = jacobian_nodes([y], [x])[0, 0]
    d2 = jacobian_nodes([d1], [x])[0, 0]
    v = 0.7
    (got,) = evaluate_nodes([d2], {x.id: v})
    assert got == pytest.approx(2 * np.cos(v) - v * np.sin(v), rel=1e-14)


def chain(x, n):
    y = x[0]
    for i in range(n):
        y = np.sin(y) * 0.5 + x[1] if i % 2 else y * x[2] + 0.25
    return y


def test_chain_of_1e5_nodes_traces_and_differentiates_iteratively():
    limit = sys.getrecursionlimit()
    g = symjac.trace(lambda x: chain(x, 40_000), (3,))  # about 10^5 operations
    assert len(g) >= 100_000
    xs = list(g.inputs[0].ravel())
    for mode in ("fwd", "rev"):
        J = jacobian_nodes(g.output_nodes(), xs, mode)
        assert J.shape == (1, 3)
    nodes = toposort(list(J.ravel()))
    assert len(nodes) > 200_000
    assert tree_size(g.output_nodes()) > 0
    program = lower(g, [True])
    assert len(program.body) > 100_000
    assert sys.getrecursionlimit() == limit
    # and the numbers are right (reference interpreter vs a plain loop)
    x = np.array([0.3, -0.2, 0.9])
    assert g(x) == pytest.approx(chain(x, 40_000), rel=1e-12)


def test_graph_stats_count_sharing():
    k = symjac.compile(lambda x: (np.sin(x[0]) + x[1]) * (np.sin(x[0]) + x[1]) + x[0], backend="numpy")
    k(np.ones((1, 2)))
    s = k.stats
    assert s["dag_ops"] == 4 and s["tree_ops"] == 6
    assert s["flops_per_sample"] == 20 + 1 + 1 + 1


def test_missing_rule_is_an_error_naming_the_op(monkeypatch):
    import dataclasses

    from symjac.ir import REGISTRY

    monkeypatch.setitem(REGISTRY, "tanh", dataclasses.replace(REGISTRY["tanh"], partials=None))
    with pytest.raises(symjac.MissingRuleError, match="tanh"):
        symjac.jacobian(np.tanh, backend="numpy")(np.ones((1, 2)))
