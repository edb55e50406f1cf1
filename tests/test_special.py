"""SciPy's special functions (`symjac.ops.special`): their own table, one
fused model over all of them (tests/optable.py's kernel is shared by many
tests, so these rows stay apart).

Each row: values against ``scipy.special``; first derivatives against
central differences (the complex step does not apply: SciPy's functions of
a real argument) in both modes, on every backend, as scalars and as tensor
ops; second derivatives of a sum of the functions the Hessian paths use;
the error for a parameter without a closed-form derivative (and a constant
parameter that works); float32 kernels; the Numba bindings bit for bit
against SciPy over each function's domain; the CUDA printer's libdevice
forms and its error for the others.  Kernels are shared (`functools.cache`).
"""

import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special as sc

import symjac
from codegen.backends import print_program
from codegen.printers import PrinterError
from conftest import BACKENDS
from symjac.ops.special import NAMES, PARAMETERS

RUNS = {"scalar": {"min_array": None}, "tensor": {"min_array": 1}}
V2 = np.array([0.0, 2.0])  # constant orders: arrays too

# name, per-sample function of a 1-D slice, slice length, sampling interval
ROWS = [
    ("gamma", sc.gamma, 2, 0.3, 4.0),
    ("gamma_negative", sc.gamma, 2, -2.8, -2.2),
    ("gammaln", sc.gammaln, 2, 0.3, 6.0),
    ("digamma", sc.digamma, 2, 0.3, 5.0),
    ("psi", sc.psi, 2, -1.8, -1.2),
    ("beta", lambda x: sc.beta(x[:2], x[2:]), 4, 0.5, 3.0),
    ("betaln", lambda x: sc.betaln(x[:2], x[2:]), 4, 0.5, 3.0),
    ("erfinv", sc.erfinv, 2, -0.9, 0.9),
    ("erfcinv", sc.erfcinv, 2, 0.1, 1.9),
    ("xlogy", lambda x: sc.xlogy(x[:2], x[2:]), 4, 0.2, 3.0),
    ("xlog1py", lambda x: sc.xlog1py(x[:2], x[2:]), 4, -0.8, 3.0),
    ("entr", sc.entr, 2, 0.1, 3.0),
    ("ndtr", sc.ndtr, 2, -3.0, 3.0),
    ("log_ndtr", sc.log_ndtr, 2, -8.0, 3.0),
    ("j0", sc.j0, 2, 0.1, 8.0),
    ("j1", sc.j1, 2, -8.0, 8.0),
    ("y0", sc.y0, 2, 0.3, 8.0),
    ("y1", sc.y1, 2, 0.3, 8.0),
    ("i0", sc.i0, 2, -3.0, 3.0),
    ("i1", sc.i1, 2, -3.0, 3.0),
    ("iv", lambda x: sc.iv(1.5, x) + sc.iv(V2, x), 2, 0.2, 3.0),
    ("ive", lambda x: sc.ive(V2, x) + sc.ive(2.5, np.abs(x) + 0.1), 2, -3.0, 3.0),
    ("jn", lambda x: sc.jn(2, x) + sc.jv(0.5, x), 2, 0.5, 8.0),
    ("yn", lambda x: sc.yn(2, x) + sc.yn(V2, x), 2, 0.5, 8.0),
    ("gammainc", lambda x: sc.gammainc(1.5, x) + sc.gammainc(V2 + 0.5, x), 2, 0.1, 4.0),
    ("gammaincc", lambda x: sc.gammaincc(2.5, x), 2, 0.1, 4.0),
    ("betainc", lambda x: sc.betainc(1.5, 2.5, x) + sc.betainc(V2 + 0.5, 0.7, x), 2, 0.05, 0.95),
    ("stdtr", lambda x: sc.stdtr(3.5, x) + sc.stdtr(1e3, x * 0.5), 2, -3.0, 3.0),
    # traced parameters held constant: through the ops that carry them, never differentiated
    ("held_parameters", lambda x: _held_parameters(symjac.nn.stop_gradient(x[0]), x[1]), 2, 1.1, 2.9),
]


def _held_parameters(p, x):
    return (sc.iv(p, x) + sc.ive(p, x) + sc.jv(p, x) + sc.yn(np.floor(p), x) + sc.gammainc(p, x)
            + sc.gammaincc(p, x) + sc.betainc(p, p + 1.0, x / 3.0) + sc.stdtr(p + 1.0, x))
IDS = [r[0] for r in ROWS]
OFFSETS = np.concatenate([[0], np.cumsum([r[2] for r in ROWS])])
N = int(OFFSETS[-1])
B = 4


def sample(rng, b):
    x = np.empty((b, N))
    for (_, _, k, lo, hi), o in zip(ROWS, OFFSETS):
        x[:, o: o + k] = rng.uniform(lo, hi, (b, k))
    return x


X = sample(np.random.default_rng(15), B)


def fused(x):
    return np.concatenate([np.ravel(fn(x[o: o + k])) for (_, fn, k, *_), o in zip(ROWS, OFFSETS)])


@functools.cache
def out_layout():
    sizes = [np.size(fn(X[0, o: o + k])) for (_, fn, k, *_), o in zip(ROWS, OFFSETS)]
    return np.concatenate([[0], np.cumsum(sizes)])


def traced(run, make):
    with symjac.tensor_policy(**RUNS[run]):
        return make()


@functools.cache
def jac(backend, mode, run):
    return traced(run, lambda: symjac.jacobian(fused, mode=mode, backend=backend)(X))


@functools.cache
def oracle(i):
    """(B, out, k) central differences of row i."""
    _, fn, k, _, _ = ROWS[i]
    o = OFFSETS[i]
    fd = np.empty((B, out_layout()[i + 1] - out_layout()[i], k))
    for b in range(B):
        x = X[b, o: o + k]
        for j in range(k):
            e = np.zeros(k)
            e[j] = h = 1e-6 * max(1.0, abs(x[j]))
            fd[b, :, j] = (np.ravel(fn(x + e)) - np.ravel(fn(x - e))) / (2 * h)
    return fd


CASES = [(b, r) for r in RUNS for b in BACKENDS]
# the tensor run's reverse-mode Numba kernel is many tiny tiled tensor ops: minutes of Numba compile on
# two cores (138 s measured), so reverse mode's tensor rules run on NumPy, forward mode's on every backend
SLOW = {("rev", "numba", "tensor"), ("rev", "numba-parallel", "tensor")}
DERIVATIVE_CASES = [(m, b, r) for m in ("fwd", "rev") for b, r in CASES if (m, b, r) not in SLOW]


def test_the_table_covers_every_special_op():
    used = set()
    for run in RUNS:
        for mode in ("fwd", "rev"):
            kernel = traced(run, lambda: symjac.jacobian(fused, mode=mode, backend="numpy").kernel_for(X))
            used |= {s.op for s in kernel.program.body}
        value = traced(run, lambda: symjac.compile(fused, backend="numpy"))
        traced(run, lambda: value(X))
        used |= {s.op for s in value.program.body}
    # polygamma: as digamma's derivative (SciPy's polygamma is Python code; test_polygamma has its values)
    missing = set(NAMES) - used
    assert not missing, missing
    assert {op for (f, a), op in PARAMETERS.items()} <= set(NAMES)


@pytest.mark.parametrize("backend, run", CASES)
def test_values_match_scipy(backend, run):
    kernel = traced(run, lambda: symjac.compile(fused, backend=backend))
    got = traced(run, lambda: kernel(X))
    want = np.stack([fused(x) for x in X])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("mode, backend, run", DERIVATIVE_CASES)
@pytest.mark.parametrize("i", range(len(ROWS)), ids=IDS)
def test_derivative(i, mode, backend, run):
    J = jac(backend, mode, run)
    lo, hi = out_layout()[i], out_layout()[i + 1]
    o, k = OFFSETS[i], ROWS[i][2]
    block = J[:, lo:hi, o: o + k]
    fd = oracle(i)
    assert not np.any(np.delete(J[:, lo:hi, :], np.s_[o: o + k], axis=2)), "a row depends on another's inputs"
    if ROWS[i][0] == "held_parameters":  # a stopped gradient in the parameter
        assert not np.any(block[:, :, 0])
        block, fd = block[:, :, 1:], fd[:, :, 1:]
    np.testing.assert_allclose(block, fd, rtol=2e-6, atol=1e-7)


# -- second derivatives -------------------------------------------------------------------------

SECOND = [sc.gamma, sc.gammaln, sc.digamma, sc.erfinv, sc.ndtr, sc.log_ndtr, sc.j0, sc.i0]
XS = np.random.default_rng(2).uniform(0.3, 0.8, (B, len(SECOND) + 2))


def scalar_sum(x):
    terms = [fn(x[i]) for i, fn in enumerate(SECOND)]
    return sum(terms) + sc.xlogy(x[-2], x[-1]) * x[-2]


@functools.cache
def second(backend, run):
    H = traced(run, lambda: symjac.hessian(scalar_sum, backend=backend)(XS))
    g = symjac.gradient(scalar_sum, backend="numpy")
    fd = np.empty_like(H)
    for j in range(XS.shape[1]):
        e = np.zeros(XS.shape[1])
        e[j] = 1e-5
        fd[:, :, j] = (g(XS + e) - g(XS - e)) / 2e-5
    return H, fd


@pytest.mark.parametrize("backend, run", [("numpy", "scalar"), ("numba", "scalar"), ("numpy", "tensor")])
def test_second_derivatives(backend, run):
    H, fd = second(backend, run)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(H, np.swapaxes(H, 1, 2), rtol=1e-12)


def test_polygamma():
    """polygamma(n, x) (from SymPy; psi's derivatives) against SciPy, and its
    Numba form (printed, not SciPy's C code) over its domain."""
    import sympy as sp

    t = sp.Symbol("t")
    g = symjac.from_sympy([sp.polygamma(n, t) for n in range(5)], [t])
    x = np.concatenate([np.linspace(-4.9, 12.0, 97), [1e9, 0.5, 30.0]])[:, None]
    want = np.stack([sc.polygamma(n, x[:, 0]) for n in range(5)], axis=1)
    for backend in ("numpy", "numba"):
        got = symjac.compile(g, backend=backend)(x)
        np.testing.assert_allclose(got, want, rtol=4e-15 if backend == "numpy" else 2e-13)
    d = symjac.jacobian(g, backend="numba")(x[:8])[:, :, 0]
    np.testing.assert_allclose(d[:, :4], want[:8, 1:], rtol=2e-13)
    with pytest.raises(symjac.UnsupportedOperationError, match="order n must be a constant non-negative integer"):
        symjac.from_sympy(sp.polygamma(t, t), [t])


# -- parameters without a closed-form derivative --------------------------------------------------

@pytest.mark.parametrize("fn, argument", [
    (lambda x: sc.iv(x[0], x[1]), "iv: no derivative with respect to its argument 'v'"),
    (lambda x: sc.ive(x[0], x[1]), "ive: no derivative with respect to its argument 'v'"),
    (lambda x: sc.jn(x[0], x[1]), "jv: no derivative with respect to its argument 'v'"),
    (lambda x: sc.yn(x[0], x[1]), "yn: no derivative with respect to its argument 'n'"),
    (lambda x: sc.gammainc(x[0], x[1]), "gammainc: no derivative with respect to its argument 'a'"),
    (lambda x: sc.gammaincc(x[0], x[1]), "gammaincc: no derivative with respect to its argument 'a'"),
    (lambda x: sc.betainc(x[0], 2.0, x[1]), "betainc: no derivative with respect to its argument 'a'"),
    (lambda x: sc.betainc(2.0, x[0], x[1]), "betainc: no derivative with respect to its argument 'b'"),
    (lambda x: sc.stdtr(x[0], x[1]), "stdtr: no derivative with respect to its argument 'df'"),
])
@pytest.mark.parametrize("how", ["fwd", "rev", "laplacian"])
def test_a_parameter_derivative_is_a_clear_error(fn, argument, how):
    x = np.array([[2.0, 0.5]])
    with pytest.raises(symjac.MissingRuleError, match="scipy.special." + argument):
        if how == "laplacian":
            symjac.laplacian(lambda x: fn(x) * 1.0, backend="numpy")(x)
        else:
            symjac.jacobian(fn, mode=how, backend="numpy")(x)
    # held constant: a stopped gradient, or an argument not differentiated
    held = symjac.jacobian(lambda x: fn(np.stack([symjac.nn.stop_gradient(x[0]), x[1]])), backend="numpy")(x)
    apart = symjac.jacobian(lambda p, y: fn(np.stack([p, y])), argnums=1, backend="numpy")(x[:, 0], x[:, 1])
    np.testing.assert_allclose(held[0, 1], apart[0], rtol=1e-14)
    assert held[0, 0] == 0


# -- float32, Numba's bindings, printing ----------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_float32_kernels_stay_float32(backend):
    f = lambda x: np.stack([sc.gamma(x[0]), sc.psi(x[0]), sc.iv(1.5, x[1]), sc.betainc(1.5, 2.5, x[1])])
    x = np.array([[1.5, 0.25], [3.0, 0.75]])
    got = symjac.compile(f, backend=backend)(x.astype(np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack([f(r) for r in x]), rtol=1e-6)
    J = symjac.jacobian(f, backend=backend)(x.astype(np.float32))
    assert J.dtype == np.float32
    np.testing.assert_allclose(J, symjac.jacobian(f, backend=backend)(x), rtol=1e-5)


DOMAINS = {  # op: (function on a (n, k) grid, interval); SciPy's own C code: the same bits
    "gamma": (sc.gamma, -6, 30), "gammaln": (sc.gammaln, -6, 200), "psi": (sc.psi, -6, 50),
    "beta": (sc.beta, 0.01, 20), "betaln": (sc.betaln, 0.01, 100), "erfinv": (sc.erfinv, -1, 1),
    "erfcinv": (sc.erfcinv, 0, 2), "xlogy": (sc.xlogy, 0, 5), "xlog1py": (sc.xlog1py, -1, 5),
    "entr": (sc.entr, -1, 5), "ndtr": (sc.ndtr, -10, 10), "log_ndtr": (sc.log_ndtr, -40, 10),
    "j0": (sc.j0, -30, 30), "j1": (sc.j1, -30, 30), "y0": (sc.y0, 0, 30), "y1": (sc.y1, 0, 30),
    "i0": (sc.i0, -30, 30), "i1": (sc.i1, -30, 30), "iv": (sc.iv, 0, 12), "ive": (sc.ive, 0, 12),
    "jv": (sc.jv, 0, 12), "yn": (lambda n, x: sc.yn(np.round(n), x), 0, 12), "gammainc": (sc.gammainc, 0, 8),
    "gammaincc": (sc.gammaincc, 0, 8), "betainc": (sc.betainc, 0, 1), "stdtr": (sc.stdtr, 0.1, 12),
}


@functools.cache
def grid():
    x = np.random.default_rng(5).uniform(0.0, 1.0, (256, 3))
    x[:4] = [[0.0, 0.5, 1.0], [1.0, 0.0, 0.5], [0.5, 1.0, 0.0], [0.25, 0.75, 0.999]]
    return x


def test_numba_calls_scipys_c_code_bit_for_bit():
    names = list(DOMAINS)

    def model(u):
        outs = []
        for name in names:
            fn, lo, hi = DOMAINS[name]
            nargs = {"beta": 2, "betaln": 2, "xlogy": 2, "xlog1py": 2, "iv": 2, "ive": 2, "jv": 2, "yn": 2,
                     "gammainc": 2, "gammaincc": 2, "betainc": 3, "stdtr": 2}.get(name, 1)
            args = [lo + (hi - lo) * u[i] for i in range(nargs)]
            if name == "yn":
                args[0] = np.floor(args[0])
            if name == "betainc":
                args[:2] = [0.05 + 8 * u[0], 0.05 + 8 * u[1]]
            outs.append(fn(*args))
        return np.stack(outs)

    got = symjac.compile(model, backend="numba")(grid())
    want = np.stack([model(u) for u in grid()])
    np.testing.assert_array_equal(got, want)


def _program(f, k=2):
    kernel = symjac.compile(f, backend="numpy")
    kernel(np.full((1, k), 0.5))
    return kernel.program


def test_cuda_prints_libdevice_forms_and_refuses_the_others():
    src = print_program(_program(lambda x: sc.erfinv(x[0]) + sc.gamma(x[1]) + sc.ndtr(x[0]) + sc.j0(x[1])),
                        "cuda", "float32")
    assert "_ld.erfinvf" in src and "_ld.normcdff" in src and "_ld.j0f" in src and "math.gamma(" in src
    assert "cython" not in src
    assert "def _cu_psi(" in print_program(_program(lambda x: sc.gammaln(x[0]) + sc.psi(x[1])), "cuda", "float64")
    for f, name in [(lambda x: sc.iv(1.5, x[0]), "iv"), (lambda x: sc.betaln(x[0], x[1]), "betaln"),
                    (lambda x: sc.gamma(x[0]) + sc.betainc(1.0, 2.0, x[1]), "betainc")]:
        with pytest.raises(PrinterError, match=f"cuda backend cannot run scipy.special.{name}:"):
            print_program(_program(f), "cuda", "float64")


def test_exported_module_runs_without_symjac(tmp_path):
    f = lambda x: np.stack([sc.psi(x[0]), sc.iv(1.5, x[1])])
    x = np.array([[1.5, 0.25], [3.0, 0.75]])
    kernel = symjac.compile(f, backend="numba")
    kernel(x)
    path = tmp_path / "special_kernel.py"
    kernel.export(path)
    code = ("import sys; sys.modules['symjac'] = None; sys.modules['codegen'] = None\n"
            "import numpy as np, importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('m', {str(path)!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(repr(m.evaluate(np.array([[1.5, 0.25], [3.0, 0.75]])).tolist()))\n")
    env = dict(os.environ, PYTHONPATH="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.array(eval(out.stdout)), kernel(x))


def test_ufunc_names_and_sympy():
    import sympy as sp

    assert sc.digamma is sc.psi and sc.jn.__name__ == "jv"
    t, u = sp.symbols("t u")
    g = symjac.from_sympy([sp.gamma(t), sp.besselj(u, t), sp.besseli(1, t), sp.erfinv(t / 4)], [t, u])
    x = np.array([[1.5, 0.5]])
    got = symjac.compile(g, backend="numpy")(x)
    np.testing.assert_allclose(got[0], [sc.gamma(1.5), sc.jv(0.5, 1.5), sc.i1(1.5), sc.erfinv(1.5 / 4)],
                               rtol=1e-14)
    with pytest.raises(symjac.MissingRuleError, match="jv: no derivative with respect to its argument 'v'"):
        symjac.jacobian(g, backend="numpy")(x)
    from symjac.frontend.sympy_out import graph_to_sympy

    back = graph_to_sympy(symjac.trace(lambda x: sc.gamma(x[0]) * sc.iv(2.0, x[1]), (2,)))
    assert "gamma" in str(back) and "besseli" in str(back)
