"""Every supported op, against complex-step and central differences, in both
modes, as unrolled scalars (on every backend) and as tensor ops (NumPy
backend; the Numba loop forms of the structural ops are checked against it
on a compact model of their rows, in values and reverse mode); and every
op's second derivatives (Hessian against differences of the gradient, forward
Laplacian against the Hessian's trace), in both runs.  The whole table is
one fused model, so each (backend, mode, run) compiles one kernel; each op is
still its own test.  (The tensor run's whole table takes Numba minutes to
compile: many tiny tensor ops make a tiled kernel of thousands of lines.)"""

import functools

import numpy as np
import pytest

import symjac
from conftest import BACKENDS
from optable import OPS, TENSOR, fused, layout, sample

B = 5
X = sample(np.random.default_rng(42), B)
OFFSETS, N_IN = layout()
RUNS = {"scalar": {"min_array": None}, "tensor": TENSOR}  # tensor_policy settings of the two runs
IDS = [entry[0] for entry in OPS]
WEIGHTS = np.random.default_rng(7).uniform(0.5, 1.5, 400)


@functools.cache
def out_layout():
    sizes = [np.size(fn(X[0, o: o + k])) for (_, fn, k, *_), o in zip(OPS, OFFSETS)]
    return np.concatenate([[0], np.cumsum(sizes)])


def traced(run, make):
    """``make()`` (which traces) under the run's tensor policy."""
    with symjac.tensor_policy(**RUNS[run]):
        return make()


@functools.cache
def jac(backend, mode, run, dtype="float64"):
    return traced(run, lambda: symjac.jacobian(fused, mode=mode, backend=backend)(X.astype(dtype)))


@functools.cache
def oracle(i):
    """(B, out, k) Jacobian of op i by complex step (if analytic) and central differences."""
    name, fn, k, lo, hi, analytic = OPS[i]
    o = OFFSETS[i]
    cs = np.empty((B, out_layout()[i + 1] - out_layout()[i], k))
    fd = np.empty_like(cs)
    for b in range(B):
        x = X[b, o: o + k]
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1.0
            h = 1e-5 * max(1.0, abs(x[j]))
            fd[b, :, j] = (np.ravel(fn(x + h * e)) - np.ravel(fn(x - h * e))) / (2 * h)
            if analytic:
                cs[b, :, j] = np.ravel(fn(x + 1e-30j * e)).imag / 1e-30
    return (cs if analytic else None), fd


CASES = [(b, "scalar") for b in BACKENDS] + [("numpy", "tensor")]


@pytest.mark.parametrize("backend, run", CASES)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("i", range(len(OPS)), ids=IDS)
def test_op_derivative(i, backend, mode, run):
    J = jac(backend, mode, run)
    lo, hi = out_layout()[i], out_layout()[i + 1]
    o, k = OFFSETS[i], OPS[i][2]
    block = J[:, lo:hi, o: o + k]
    rest = np.delete(J[:, lo:hi, :], np.s_[o: o + k], axis=2)
    assert not np.any(rest), "an op's outputs depend on another op's inputs"
    cs, fd = oracle(i)
    if cs is not None:
        np.testing.assert_allclose(block, cs, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(block, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend, run", CASES)
def test_values_match_numpy(backend, run):
    kernel = traced(run, lambda: symjac.compile(fused, backend=backend))
    got = traced(run, lambda: kernel(X))
    want = np.stack([fused(x) for x in X])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def test_the_tensor_run_uses_tensor_ops():
    ops = set()
    value = traced("tensor", lambda: symjac.compile(fused, backend="numpy"))
    traced("tensor", lambda: value(X))
    for kernel in [value] + [traced("tensor", lambda: symjac.jacobian(fused, mode=mode, backend="numpy")
                                    .kernel_for(X)) for mode in ("fwd", "rev")]:
        ops |= {s.op for s in kernel.program.body if kernel.program.is_structural(s)}
    expected = {"view", "embed", "cumsum", "einsum", "tsum", "tmax", "tmin", "bcast", "reshape", "transpose",
                "conv2d", "conv2d_bx", "conv2d_bw", "pack", "elem"}
    assert expected <= ops, expected - ops
    assert any(s.shape and not kernel.program.is_structural(s) for s in kernel.program.body)  # tensor math


STRUCTURAL_ROWS = [r for r in OPS if r[0] in ("cumsum", "diff", "flip", "roll", "trace", "diag", "diagonal",
                                                  "tril_triu", "outer_kron", "conv2d", "max", "min", "sum_axis",
                                                  "transpose", "mean", "norm_axis", "concatenate",
                                                  "int_index", "scatter_assign", "add_at")]
S_OFFSETS = np.cumsum([0] + [r[2] for r in STRUCTURAL_ROWS])
XS = np.random.default_rng(3).uniform(-2.0, 2.0, (4, S_OFFSETS[-1]))


def weighted_rows(x):
    """One weighted sum per structural row: few outputs, so reverse mode is cheap."""
    parts = []
    for (_, fn, k, *_), o in zip(STRUCTURAL_ROWS, S_OFFSETS):
        y = np.ravel(fn(x[o: o + k]))
        parts.append(np.sum(y * WEIGHTS[: y.size]))
    return np.stack(parts)


@functools.cache
def structural(backend):
    value = traced("tensor", lambda: symjac.compile(weighted_rows, backend=backend)(XS))
    J = traced("tensor", lambda: symjac.jacobian(weighted_rows, mode="rev", backend=backend)(XS))
    return value, J


DIRECTIONS = np.random.default_rng(11).normal(size=(S_OFFSETS[-1], 2))


def along(u, x):
    """The structural rows along two directions: forward mode with two seeds."""
    return weighted_rows(x + DIRECTIONS @ u)


@functools.cache
def directional(backend):
    U = np.zeros((XS.shape[0], 2))
    kw = dict(in_axes=(0, 0), backend=backend)
    J = traced("tensor", lambda: symjac.jacobian(along, mode="fwd", **kw)(U, XS))
    H = traced("tensor", lambda: symjac.hessian(lambda u, x: np.sum(along(u, x)), **kw)(U, XS))
    L = traced("tensor", lambda: symjac.laplacian(along, **kw)(U, XS))
    return J, H, L


def test_structural_ops_forward_and_second_derivatives_in_numba_loops():
    J, H, L = directional("numba")
    Jn, Hn, Ln = directional("numpy")
    np.testing.assert_allclose(J, structural("numpy")[1] @ DIRECTIONS, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(J, Jn, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H, Hn, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(L, Ln, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sum(L, axis=1), np.trace(H, axis1=1, axis2=2), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("backend", ["numba", "numba-parallel"])
@pytest.mark.parametrize("r", range(len(STRUCTURAL_ROWS)), ids=[r[0] for r in STRUCTURAL_ROWS])
def test_structural_ops_in_numba_loops(r, backend):
    value, J = structural(backend)
    ref_value, ref_J = structural("numpy")
    np.testing.assert_allclose(value[:, r], ref_value[:, r], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(J[:, r], ref_J[:, r], rtol=1e-12, atol=1e-12)
    o, k = S_OFFSETS[r], STRUCTURAL_ROWS[r][2]
    if STRUCTURAL_ROWS[r][5]:  # and the numpy reference against the complex step
        fn = lambda x: weighted_rows(x)[r]  # noqa: E731
        for b in range(XS.shape[0]):
            for j in range(o, o + k):
                x = XS[b].astype(complex)
                x[j] += 1e-30j
                assert abs(fn(x).imag / 1e-30 - ref_J[b, r, j]) <= 1e-11 * max(1.0, abs(ref_J[b, r, j]))


def test_float32_end_to_end():
    J32 = jac("numpy", "fwd", "scalar", "float32")
    assert J32.dtype == np.float32
    J64 = jac("numpy", "fwd", "scalar")
    scale = np.maximum(1.0, np.abs(J64))
    assert np.max(np.abs(J32 - J64) / scale) < 1e-4


def test_float32_in_numba_loops():
    # (the whole table in float32 takes Numba as long again to compile: the tensor rows, in loops, instead)
    J32 = traced("tensor", lambda: symjac.jacobian(weighted_rows, mode="rev", backend="numba")(XS.astype(np.float32)))
    assert J32.dtype == np.float32
    J64 = structural("numpy")[1]
    assert np.max(np.abs(J32 - J64) / np.maximum(1.0, np.abs(J64))) < 1e-4


@pytest.mark.parametrize("run", RUNS)
def test_modes_agree_exactly_on_structure(run):
    Jf, Jr = jac("numpy", "fwd", run), jac("numpy", "rev", run)
    assert np.array_equal(Jf == 0, Jr == 0)
    np.testing.assert_allclose(Jf, Jr, rtol=1e-13, atol=1e-14)


# -- second derivatives -------------------------------------------------------------------------

def per_op_values(x):
    """One weighted sum of each op's outputs: one scalar per op."""
    parts = []
    for (_, fn, k, *_), o in zip(OPS, OFFSETS):
        y = np.ravel(fn(x[o: o + k]))
        parts.append(np.sum(y * WEIGHTS[: y.size]))
    return np.stack(parts)


def total(x):
    return np.sum(per_op_values(x))


@functools.cache
def second(run):
    """(Hessian of the total, its gradient's central differences, forward Laplacian per op)."""
    H = traced(run, lambda: symjac.hessian(total, backend="numpy")(X))
    grad = traced(run, lambda: symjac.gradient(total, backend="numpy"))
    L = traced(run, lambda: symjac.laplacian(per_op_values, backend="numpy")(X))
    Hfd = np.empty_like(H)
    for j in range(N_IN):
        h = 1e-5 * np.maximum(1.0, np.abs(X[:, j]))[:, None]
        e = np.zeros(N_IN)
        e[j] = 1.0
        up, down = X + h * e, X - h * e
        Hfd[:, :, j] = (traced(run, lambda: grad(up)) - traced(run, lambda: grad(down))) / (2 * h)
    return H, Hfd, L


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("i", range(len(OPS)), ids=IDS)
def test_op_second_derivatives(i, run):
    H, Hfd, L = second(run)
    o, k = OFFSETS[i], OPS[i][2]
    block, ref = H[:, o: o + k, o: o + k], Hfd[:, o: o + k, o: o + k]
    np.testing.assert_allclose(block, np.swapaxes(block, 1, 2), rtol=1e-12, atol=1e-12)  # symmetric
    np.testing.assert_allclose(block, ref, rtol=1e-5, atol=1e-6 * max(1.0, np.max(np.abs(ref))))
    np.testing.assert_allclose(L[:, i], np.trace(block, axis1=1, axis2=2), rtol=1e-11, atol=1e-11)
