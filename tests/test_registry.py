"""The op registry: every op is declared whole (derivative, printing, NumPy and
SymPy names), the op table covers every op, and ops defined or changed
through `symjac.extend` reach every transform, forward Laplacian included."""

import functools

import numpy as np
import pytest

import symjac
import symjac.extend as ext
from codegen import STRUCTURAL
from optable import TENSOR, fused, sample
from symjac.ad import forget
from symjac.ir import REGISTRY, UFUNCS, lookup, make
from symjac.testing import complex_step_jvp

BUILTIN = dict(REGISTRY)  # before any test defines ops


def test_every_op_is_declared_whole():
    for name, op in BUILTIN.items():
        if op.kind == "leaf":
            continue
        if op.differentiable:
            if op.kind == "elementwise":
                assert op.partials is not None or op.jvp is not None or op.transpose is not None, name
            else:
                assert op.jvp is not None and op.transpose is not None, name
        assert op.doc or op.kind == "elementwise", f"structural op {name!r} has no description"


def test_every_op_prints_on_every_printer():
    for name, op in BUILTIN.items():
        if op.kind == "elementwise":
            for target in ("numpy", "numba"):
                template = op.printing.get(target, op.printing.get("numpy"))
                assert template is not None, (name, target)
                assert template.format(*[f"a{i}" for i in range(op.nargs)])
        elif op.kind == "structural":
            form = STRUCTURAL.get(name)
            assert form is not None and hasattr(form, "numpy"), name
            # pack and elem are written by the Numba printers' scalar blocks
            assert hasattr(form, "loops") or name in ("pack", "elem"), name


def test_every_ufunc_name_is_a_numpy_ufunc():
    import scipy.special

    for name in UFUNCS:  # np.i0 is a function, scipy.special.i0 the ufunc
        assert any(isinstance(getattr(mod, name, None), np.ufunc) for mod in (np, scipy.special)), name


def _tables():
    """(fused model, inputs) of each op table: tests/optable.py and the tables of
    the op families with test files of their own."""
    import test_linalg
    import test_selection
    import test_special

    return [(fused, sample(np.random.default_rng(0), 2)), (test_selection.fused, test_selection.X[:2]),
            (test_special.fused, test_special.X[:2]), (test_linalg.fused, test_linalg.X[:2])]


@functools.cache
def _ops_in_the_table():
    used = set()
    for model, X in _tables():
        for policy in ({"min_array": None}, TENSOR):
            for mode in ("fwd", "rev"):
                with symjac.tensor_policy(**policy):
                    k = symjac.jacobian(model, mode=mode, backend="numpy").kernel_for(X)
                    v = symjac.compile(model, backend="numpy")
                    v(X)
                for program in (k.program, v.program):
                    used |= {s.op for s in program.body}
    return used


def test_the_op_table_covers_every_op():
    # stop reaches kernels through dlfeval's enable_higher_derivatives=False and nn.stop_gradient
    # (tests/test_dl.py); tconst through captured weights (tests/test_tensor.py)
    exempt = {"input", "const", "tconst", "stop"}
    missing = {n for n, op in BUILTIN.items() if op.kind != "leaf"} - _ops_in_the_table() - exempt
    assert not missing, f"ops with no row in an op table (tests/optable.py, test_selection.py...): {sorted(missing)}"


# -- symjac.extend ---------------------------------------------------------------------------------

def _softplus_partials(node, x):
    return (make("expit", x),)


def _softplus_jvp(node, tangents):
    (t,) = tangents
    return None if t is None else make("mul", make("expit", node.args[0]), t)


def _softplus_transpose(node, g):
    return (make("mul", g, make("expit", node.args[0])),)


@pytest.fixture
def restore_registry():
    saved = dict(REGISTRY)
    yield
    for name in set(REGISTRY) - set(saved):
        del REGISTRY[name]
        forget(name)
    for name, op in saved.items():
        if REGISTRY.get(name) is not op:
            REGISTRY[name] = op
            forget(name)


@pytest.mark.parametrize("rule", ["partials", "jvp", "transpose"])
def test_a_user_op_reaches_every_transform(rule, restore_registry):
    name = f"softplus_{rule}"
    kw = {"partials": _softplus_partials, "jvp": _softplus_jvp, "transpose": _softplus_transpose}[rule]
    softplus = ext.defop(name, 1, lambda x: np.logaddexp(0.0, x), **{rule: kw},
                         printing={"numpy": "np.logaddexp(_F(0.0), {0})"})

    def f(x):
        return softplus(x * x[0]) * np.sin(x)

    x = np.array([0.3, -0.7, 1.2])
    ref = np.stack([complex_step_jvp(_np_f, [x], 0, e) for e in np.eye(3)], axis=1)
    for backend in ("numpy", "numba"):
        for mode in ("fwd", "rev"):
            J = symjac.jacobian(f, mode=mode, backend=backend)(x[None])[0]
            np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(symjac.compile(f, backend="numba")(x[None])[0], _np_f(x), rtol=1e-14)
    g = lambda z: np.sum(f(z))  # noqa: E731
    H = symjac.hessian(g, backend="numpy")(x[None])[0]
    grad = symjac.gradient(g, backend="numpy")
    h = 1e-6
    Hfd = np.stack([(grad((x + h * e)[None])[0] - grad((x - h * e)[None])[0]) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(H, Hfd, rtol=1e-6, atol=1e-8)
    lap = symjac.laplacian(g, backend="numpy")(x[None])[0]
    assert lap == pytest.approx(np.trace(H), rel=1e-12)


def _np_f(z):
    w = z * z[0]
    sp = np.log1p(np.exp(w)) if np.iscomplexobj(w) else np.logaddexp(0.0, w)
    return sp * np.sin(z)


def test_defjvp_reaches_the_forward_laplacian(restore_registry):
    # a deliberately different rule for tanh's derivative: 2 x (the derivative of x**2)
    ext.defjvp("tanh", lambda node, ts: None if ts[0] is None else make("mul", make("mul", 2.0, node.args[0]), ts[0]))
    g = lambda x: np.sum(np.tanh(x))  # noqa: E731
    x = np.array([[0.5, -1.5]])
    np.testing.assert_allclose(symjac.gradient(g, backend="numpy")(x), 2 * x)
    np.testing.assert_allclose(symjac.laplacian(g, backend="numpy")(x), [4.0])  # sum of d2/dx2 x**2
    np.testing.assert_allclose(symjac.hessian(g, backend="numpy")(x)[0], 2 * np.eye(2))


def test_a_changed_rule_reaches_templates_derived_from_it(restore_registry):
    f = lambda x: np.sum(np.sin(x))  # noqa: E731  (sin's second partial differentiates cos)
    x = np.array([[0.5, -1.5]])
    np.testing.assert_allclose(symjac.laplacian(f, backend="numpy")(x), -np.sum(np.sin(x), keepdims=True)[0])
    ext.defjvp("cos", lambda n, t: None if t[0] is None else make("mul", make("mul", -2.0, make("sin", n.args[0])), t[0]))
    lap = symjac.laplacian(f, backend="numpy")(x)
    np.testing.assert_allclose(lap, np.trace(symjac.hessian(f, backend="numpy")(x)[0], axis1=-2, axis2=-1))
    np.testing.assert_allclose(lap, [-2.0 * np.sum(np.sin(x))])


def test_defop_checks_its_arguments(restore_registry):
    with pytest.raises(ValueError, match="identifier"):
        ext.defop("not a name", 1, np.sin, partials=_softplus_partials, printing={"numpy": "np.sin({0})"})
    with pytest.raises(ValueError, match="derivative"):
        ext.defop("nod", 1, np.sin, printing={"numpy": "np.sin({0})"})
    with pytest.raises(ValueError, match="'numpy' template"):
        ext.defop("noprint", 1, np.sin, partials=_softplus_partials)
    with pytest.raises(ValueError, match="does not fit 2 arguments"):
        ext.defop("bad", 2, np.add, partials=_softplus_partials, printing={"numpy": "{0} + {2}"})
    with pytest.raises(ValueError, match="built-in structural"):
        ext.defop("einsum", 2, np.add, partials=_softplus_partials, printing={"numpy": "{0}"})
    with pytest.raises(symjac.UnsupportedOperationError, match="structural"):
        ext.defpartials("einsum", _softplus_partials)


def test_lookup_names_the_known_ops():
    with pytest.raises(KeyError, match="no op 'frobnicate'.*sin"):
        lookup("frobnicate")
