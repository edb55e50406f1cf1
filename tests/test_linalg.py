"""np.linalg on traced arrays: one row per function, against NumPy's values and
against complex-step (where NumPy's function is complex-analytic on real
input) and central differences, in forward and reverse mode, on every
backend, unrolled (small arrays as scalars) and as tensor ops; second
derivatives (Hessian against differences of the gradient); conventions and
errors.

The table is its own fused model (not tests/optable.py's, which many tests
share): each (backend, mode, run) compiles one kernel for all rows.  Every
row draws its raw inputs from U(-1, 1) and builds a well-conditioned matrix
from them (a general matrix plus 3I, a symmetric one with separated
eigenvalues...).  Eigenvectors and singular vectors are compared squared:
their signs are a convention of the factorization.
"""

import functools

import numpy as np
import pytest

import symjac
from conftest import BACKENDS
from symjac.errors import UnsupportedOperationError

B = 4
RUNS = {"scalar": {"min_array": None}, "tensor": {"min_array": 1}}


def general(x, n, shift=None):
    return x.reshape(n, n) + np.diag(np.full(n, 3.0) if shift is None else shift)


def sym(x, n, diag):
    a = x.reshape(n, n)
    return 0.25 * (a + a.T) + np.diag(diag)


def rect(x, m, n):
    base = np.zeros((m, n))
    base[0, 0], base[1, 1] = 3.0, 1.5
    return 0.3 * x.reshape(m, n) + base


def _slogdet(x):
    sign, logdet = np.linalg.slogdet(general(x, 3, [3.0, 3.0, -3.0]))
    return np.stack([sign, logdet])


def _eigh(x):
    w, v = np.linalg.eigh(sym(x, 3, [0.0, 4.0, 8.0]))
    return np.concatenate([w, np.ravel(v ** 2)])


def _svd(m, n):
    def fn(x):
        u, s, vt = np.linalg.svd(rect(x, m, n), full_matrices=False)
        return np.concatenate([s, np.ravel(u ** 2), np.ravel(vt ** 2)])
    return fn


def _stack(x):
    a = np.stack([general(x[:9], 3), general(x[9:18], 3)])
    return np.concatenate([np.linalg.det(a), np.ravel(np.linalg.solve(a, x[18:21]))])


def _stack_symmetric(x):
    a = np.stack([sym(x[:9], 3, [4.0, 6.0, 8.0]), sym(x[9:], 3, [5.0, 7.0, 11.0])])
    w, v = np.linalg.eigh(a)
    return np.concatenate([np.ravel(np.linalg.inv(a)), np.ravel(np.linalg.cholesky(a)), np.ravel(w),
                           np.ravel(v ** 2), np.linalg.norm(a, "nuc", axis=(1, 2))])


# name, per-sample function of a 1-D slice, slice length, complex step valid
ROWS = [
    ("solve_vector", lambda x: np.linalg.solve(general(x[:9], 3), x[9:]), 12, True),
    ("solve_matrix", lambda x: np.linalg.solve(general(x[:9], 3), x[9:].reshape(3, 2)), 15, True),
    ("inv", lambda x: np.linalg.inv(general(x, 3)), 9, True),
    ("det", lambda x: np.stack([np.linalg.det(general(x[:9], 3)), np.linalg.det(general(x[9:], 4))]), 25, True),
    ("slogdet", _slogdet, 9, False),  # log|det|: abs is not analytic
    # np.linalg.cholesky of complex input takes the conjugate transpose: no complex step
    ("cholesky", lambda x: np.linalg.cholesky(sym(x, 3, [4.0, 4.0, 4.0])), 9, False),
    ("cholesky_upper", lambda x: np.linalg.cholesky(sym(x, 3, [4.0, 4.0, 4.0]), upper=True), 9, False),
    ("eigh", _eigh, 9, False),
    ("eigh_upper", lambda x: np.linalg.eigh(sym(x, 3, [0.0, 4.0, 8.0]), UPLO="U")[0], 9, False),
    ("eigvalsh", lambda x: np.linalg.eigvalsh(sym(x, 3, [0.0, 4.0, 8.0])), 9, False),
    ("svd_tall", _svd(3, 2), 6, False),
    ("svd_wide", _svd(2, 3), 6, False),
    ("svd_values", lambda x: np.linalg.svd(rect(x, 3, 2), compute_uv=False), 6, False),
    ("pinv_tall", lambda x: np.linalg.pinv(rect(x, 3, 2)), 6, False),
    ("pinv_wide", lambda x: np.linalg.pinv(rect(x, 2, 3)), 6, False),
    ("norm_nuc", lambda x: np.stack([np.linalg.norm(rect(x[:6], 3, 2), "nuc"),
                                     np.linalg.norm(general(x[6:], 3), ord="nuc")]), 15, False),
    ("stack", _stack, 21, True),
    ("stack_symmetric", _stack_symmetric, 18, False),
]
IDS = [r[0] for r in ROWS]
OFFSETS = np.cumsum([0] + [r[2] for r in ROWS])
N_IN = int(OFFSETS[-1])
X = np.random.default_rng(5).uniform(-1.0, 1.0, (B, N_IN))
WEIGHTS = np.random.default_rng(7).uniform(0.5, 1.5, 64)


def fused(x):
    return np.concatenate([np.ravel(fn(x[o: o + k])) for (_, fn, k, _), o in zip(ROWS, OFFSETS)])


@functools.cache
def out_offsets():
    return np.cumsum([0] + [np.size(fn(X[0, o: o + k])) for (_, fn, k, _), o in zip(ROWS, OFFSETS)])


def traced(run, make):
    with symjac.tensor_policy(**RUNS[run]):
        return make()


@functools.cache
def jac(backend, mode, run):
    return traced(run, lambda: symjac.jacobian(fused, mode=mode, backend=backend)(X))


@functools.cache
def values(backend, run):
    return traced(run, lambda: symjac.compile(fused, backend=backend)(X))


@functools.cache
def oracle(i):
    """(B, out, k) Jacobians of row i: complex step (None where invalid), central differences."""
    _, fn, k, analytic = ROWS[i]
    o = OFFSETS[i]
    cs = np.empty((B, out_offsets()[i + 1] - out_offsets()[i], k))
    fd = np.empty_like(cs)
    for b in range(B):
        x = X[b, o: o + k]
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1.0
            h = 1e-6
            fd[b, :, j] = (np.ravel(fn(x + h * e)) - np.ravel(fn(x - h * e))) / (2 * h)
            if analytic:
                cs[b, :, j] = np.ravel(fn(x + 1e-30j * e)).imag / 1e-30
    return (cs if analytic else None), fd


CASES = [("numpy", "scalar"), ("numpy", "tensor")]


@pytest.mark.parametrize("backend, run", CASES)
def test_values_match_numpy(backend, run):
    want = np.stack([fused(x) for x in X])
    np.testing.assert_allclose(values(backend, run), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend, run", CASES)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
@pytest.mark.parametrize("i", range(len(ROWS)), ids=IDS)
def test_derivative(i, mode, backend, run):
    J = jac(backend, mode, run)
    lo, hi = out_offsets()[i], out_offsets()[i + 1]
    o, k = OFFSETS[i], ROWS[i][2]
    block = J[:, lo:hi, o: o + k]
    assert not np.any(np.delete(J[:, lo:hi, :], np.s_[o: o + k], axis=2)), "a row depends on another row's inputs"
    cs, fd = oracle(i)
    if cs is not None:
        np.testing.assert_allclose(block, cs, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(block, fd, rtol=1e-6, atol=1e-7)


# -- the Numba loop forms ----------------------------------------------------------------------------
# A compact model, one weighted sum per row, covers every op's loop form in values, reverse mode and
# forward mode along two directions, on the Numba backends against the NumPy backend (checked above
# against the oracles): the whole table's Jacobian is a kernel of thousands of lines.

def _loops_row_solve(x):
    a = general(x[:9], 3)
    return np.concatenate([np.linalg.solve(a, x[9:]), np.ravel(np.linalg.inv(a))])


def _loops_row_det(x):
    a = general(x, 3, [3.0, -3.0, 3.0])
    sign, logdet = np.linalg.slogdet(a)
    return np.stack([np.linalg.det(a), sign * logdet])


def _loops_row_cholesky(x):
    a = x[:6].reshape(3, 2)
    return np.ravel(np.linalg.cholesky(a @ a.T + 2.0 * np.eye(3)))


def _loops_row_eigh(x):
    a = sym(x, 3, [0.0, 4.0, 8.0])
    w, v = np.linalg.eigh(a)
    return np.concatenate([w, np.ravel(v ** 2), np.linalg.eigvalsh(a) ** 2])


def _loops_row_svd(x):
    a = rect(x, 2, 3)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    return np.concatenate([s, np.ravel(u ** 2), np.ravel(vt ** 2), np.ravel(np.linalg.pinv(a)),
                           [np.linalg.norm(a, "nuc")]])


LOOP_ROWS = [("solve", _loops_row_solve, 12), ("det", _loops_row_det, 9), ("cholesky", _loops_row_cholesky, 6),
             ("eigh", _loops_row_eigh, 9), ("svd", _loops_row_svd, 6)]
L_OFFSETS = np.cumsum([0] + [r[2] for r in LOOP_ROWS])
XL = np.random.default_rng(3).uniform(-1.0, 1.0, (40, L_OFFSETS[-1]))  # full tiles: one kernel variant
DIRECTIONS = np.random.default_rng(11).normal(size=(L_OFFSETS[-1], 1))


def loop_rows(x, rows=len(LOOP_ROWS)):
    parts = []
    for (_, fn, k), o in zip(LOOP_ROWS[:rows], L_OFFSETS):
        y = np.ravel(fn(x[o: o + k]))
        parts.append(np.sum(y * WEIGHTS[: y.size]))
    return np.stack(parts)


def along(u, x):
    """The rows along a direction (forward mode), and their values (aux)."""
    return loop_rows(x + DIRECTIONS @ u), loop_rows(x)


@functools.cache
def loops(backend):
    """(values, reverse-mode Jacobian, forward mode along DIRECTIONS) of the compact model: two kernels.
    Reverse mode takes the first three rows: its only loop form of its own is the transposed solve
    (the other rows' transposes are einsums, solves and elementwise math), and a kernel's compile
    time grows with its lines."""
    with symjac.tensor_policy(min_array=1):
        J = symjac.jacobian(lambda x: loop_rows(x, 3), mode="rev", backend=backend)(XL)
        Jd, value = symjac.jacobian(along, mode="fwd", in_axes=(0, 0), backend=backend, has_aux=True)(
            np.zeros((len(XL), 1)), XL)
    return value, J, Jd


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_loop_forms_match_numpy(backend):
    # the NumPy run first (numba-parallel reuses numba's kernel)
    ref_value, ref_J, ref_Jd = loops("numpy")
    value, J, Jd = loops(backend)
    np.testing.assert_allclose(ref_value, np.stack([loop_rows(x) for x in XL]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref_Jd[:, :3], ref_J @ DIRECTIONS, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(J, ref_J, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(Jd, ref_Jd, rtol=1e-10, atol=1e-10)


# -- second derivatives ------------------------------------------------------------------------------

def per_row(x):
    """One weighted sum of each row's outputs."""
    parts = []
    for (_, fn, k, _), o in zip(ROWS, OFFSETS):
        y = np.ravel(fn(x[o: o + k]))
        parts.append(np.sum(y * WEIGHTS[: y.size]))
    return np.stack(parts)


def total(x):
    return np.sum(per_row(x))


@functools.cache
def second(run):
    """(Hessian of the total, central differences of its gradient, forward Laplacian per row)."""
    H = traced(run, lambda: symjac.hessian(total, backend="numpy")(X))
    L = traced(run, lambda: symjac.laplacian(per_row, backend="numpy")(X))
    grad = traced(run, lambda: symjac.gradient(total, backend="numpy"))
    Hfd = np.empty_like(H)
    for j in range(N_IN):
        e = np.zeros(N_IN)
        e[j] = 1e-5
        Hfd[:, :, j] = (traced(run, lambda: grad(X + e)) - traced(run, lambda: grad(X - e))) / 2e-5
    return H, Hfd, L


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("i", range(len(ROWS)), ids=IDS)
def test_second_derivatives(i, run):
    H, Hfd, L = second(run)
    o, k = OFFSETS[i], ROWS[i][2]
    block, ref = H[:, o: o + k, o: o + k], Hfd[:, o: o + k, o: o + k]
    np.testing.assert_allclose(block, np.swapaxes(block, 1, 2), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(block, ref, rtol=1e-5, atol=1e-6 * max(1.0, np.max(np.abs(ref))))
    np.testing.assert_allclose(L[:, i], np.trace(block, axis1=1, axis2=2), rtol=1e-10, atol=1e-10)


# -- conventions ---------------------------------------------------------------------------------------

def _central(fn, x, h=1e-6):
    return np.stack([(np.ravel(fn(x + h * e)) - np.ravel(fn(x - h * e))) / (2 * h) for e in np.eye(x.size)], -1)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_cholesky_and_eigh_differentiate_the_symmetrized_matrix(mode):
    # the values read the lower triangle (as NumPy's); the derivatives are those of the function of
    # (A + A^T)/2, as JAX's: a perturbation of A_ij (i != j) counts half in each triangle
    def f(x):
        a = x.reshape(3, 3)
        return np.concatenate([np.ravel(np.linalg.cholesky(a)), np.linalg.eigh(a)[0], np.linalg.eigvalsh(a)])

    rng = np.random.default_rng(2)
    m = rng.uniform(-1, 1, (3, 3))
    a = m @ m.T + np.diag([1.0, 3.0, 5.0])
    a[0, 2] += 0.3  # not symmetric: the upper triangle is not read
    x = a.reshape(1, 9)
    with symjac.tensor_policy(min_array=1):
        got = symjac.compile(f, backend="numpy")(x)[0]
        J = symjac.jacobian(f, mode=mode, backend="numpy")(x)[0]
    np.testing.assert_allclose(got, f(a.ravel()), rtol=1e-13, atol=1e-13)
    lower = np.tril(a) + np.tril(a, -1).T
    sym_f = lambda y: f(0.5 * (y.reshape(3, 3) + y.reshape(3, 3).T).ravel())  # noqa: E731
    np.testing.assert_allclose(J, _central(sym_f, lower.ravel()), rtol=1e-6, atol=1e-7)


def _singular(x):
    a = x[:4].reshape(2, 2)
    sign, logdet = np.linalg.slogdet(a)
    return np.concatenate([[np.linalg.det(a), sign, logdet], np.linalg.solve(a, x[4:])])


@pytest.mark.parametrize("backend", BACKENDS)
def test_singular_matrices_give_nan_or_inf_never_a_finite_solution(backend):
    x = np.array([[1.0, 2.0, 2.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0], [2.0, 1.0, 1.0, 3.0, 1.0, 1.0]])
    got = symjac.compile(_singular, backend=backend)(x)  # the default policy: a 2 x 2 matrix of scalars, packed
    for row in got[:2]:  # singular: det 0, slogdet (0, -inf) as NumPy's; the solve is not finite
        np.testing.assert_array_equal(row[:3], [0.0, 0.0, -np.inf])
        assert not np.all(np.isfinite(row[3:]))
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(got[2], _singular(x[2]), rtol=1e-13)  # the batch's other samples: unharmed


# -- errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn, match", [
    (lambda x: np.linalg.svd(x.reshape(2, 3)), "full_matrices"),
    (lambda x: np.linalg.svd(x.reshape(2, 3), full_matrices=False, hermitian=True), "hermitian"),
    (lambda x: np.linalg.pinv(x.reshape(2, 3), hermitian=True), "hermitian"),
    (lambda x: np.linalg.pinv(x.reshape(2, 3), rcond=1e-3), "rcond"),
    (lambda x: np.linalg.solve(np.eye(2) * 1j, x[:2]), "complex"),
    (lambda x: np.linalg.solve(x[:4].reshape(1, 2, 2), x.reshape(3, 2, 1)), "stack shape"),
])
def test_unsupported_arguments_are_named(fn, match):
    with pytest.raises(UnsupportedOperationError, match=match):
        symjac.trace(fn, (6,))


def test_a_matrix_that_is_not_square_is_a_linalg_error():
    with pytest.raises(np.linalg.LinAlgError, match="np.linalg.inv.*square"):
        symjac.trace(lambda x: np.linalg.inv(x.reshape(2, 3)), (6,))


def test_the_cuda_printer_names_what_it_cannot_print():
    from codegen import PrinterError
    from codegen.backends import print_program

    with symjac.tensor_policy(min_array=1):
        kernel = symjac.compile(lambda x: np.linalg.eigh(x.reshape(2, 2))[0], backend="numpy")
        kernel(np.eye(2).reshape(1, 4))
    with pytest.raises(PrinterError, match="np.linalg.eigh"):
        print_program(kernel.program, "cuda", "float64")


def _cuda_row(x):
    a = x[:9].reshape(3, 3) + 3.0 * np.eye(3)
    sign, logdet = np.linalg.slogdet(a)
    low = np.linalg.cholesky(a @ a.T)
    return np.concatenate([np.linalg.solve(a, x[9:]), [np.linalg.det(a), sign * logdet], np.ravel(low)])


def test_the_hand_written_loops_compile_for_the_gpu():
    # NVVM compiles the CUDA kernel (and ptxas assembles it, where installed) without a GPU
    test_cuda = pytest.importorskip("test_cuda")
    if not test_cuda._nvvm():
        pytest.skip("no NVVM (CUDA toolkit) here")
    with symjac.tensor_policy(min_array=1):
        kernel = symjac.jacobian(lambda x: (np.sum(_cuda_row(x) * WEIGHTS[:14]), _cuda_row(x)), mode="rev",
                                 backend="numpy", has_aux=True)
        program = kernel.kernel_for(X[:2, :12]).program
    assert {"lu", "lsolve", "det", "logabsdet", "detsign", "cholesky"} <= {s.op for s in program.body}
    for dtype in ("float64", "float32"):
        test_cuda.ptx(program, dtype)


# -- degenerate and invalid matrices ---------------------------------------------------------------------

def _values_only(x):
    """Eigenvalues and singular values of matrices with repeated (and zero) ones at x = (1, 0), the
    vectors unused or used with no derivative (floor): each row's reverse mode is eigvalsh's rule."""
    a = x[0] * np.eye(2) + x[1] * np.array([[0.0, 1.0], [1.0, 0.0]])
    tall = np.array([[1.0], [0.0], [0.0]]) * np.stack([x[0], x[1]])  # [[x0, x1], [0, 0], [0, 0]]
    w, v = np.linalg.eigh(a)
    u, s, vt = np.linalg.svd(tall, full_matrices=False)
    return np.stack([np.sum(w), np.sum(np.linalg.eigh(a)[0] * x[0]) + np.floor(v[0, 0]),
                     np.sum(np.linalg.svd(a)[1]), np.sum(s) + np.floor(u[0, 0] + vt[0, 0])])


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_eigenvalues_alone_differentiate_at_repeated_ones(mode, run):
    # the eigenvectors' (singular vectors') cotangent is structurally zero: it adds nothing, so the
    # 1 / (w_j - w_i) and 1 / s factors (inf here) never multiply it (NaN before)
    x = np.array([[1.0, 0.0], [2.0, 0.5]])
    J = traced(run, lambda: symjac.jacobian(_values_only, mode=mode, backend="numpy")(x))
    np.testing.assert_allclose(J[0], [[2.0, 0.0], [4.0, 0.0], [2.0, 0.0], [1.0, 0.0]], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(J[1], _central(_values_only, x[1]), rtol=1e-6, atol=1e-7)


def _invalid_lapack(a):
    w, v = np.linalg.eigh(a, UPLO="u")  # UPLO in lower case, as NumPy takes it
    return np.concatenate([w, np.ravel(v ** 2), np.linalg.eigvalsh(a, UPLO="l"), np.linalg.svd(a)[1],
                           np.ravel(np.linalg.pinv(a))])


def _invalid(x):
    a = x.reshape(2, 2)
    sign, logdet = np.linalg.slogdet(a)
    return np.concatenate([np.ravel(np.linalg.cholesky(a)), [sign, logdet, np.linalg.det(a)], _invalid_lapack(a)])


# not positive definite (singular, indefinite, zero), NaN (read by every op; in the upper triangle,
# read by eigh with UPLO='U' only), inf, and a valid matrix between them
INVALID = np.array([[1.0, 2.0, 2.0, 4.0], [1.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, 0.0, 1.0],
                    [4.0, 1.0, 1.0, 3.0], [1.0, np.nan, 0.0, 1.0], [1.0, 0.0, 0.0, np.inf]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_matrices_give_their_own_sample_nan(backend):
    with np.errstate(all="ignore"):
        got = symjac.compile(_invalid, backend=backend)(INVALID)
    low, (sign, logdet, det) = got[:, :4], got[:, 4:7].T
    assert np.all(np.isnan(low[[0, 1, 2, 3]]))  # every pivot <= 0 or NaN: all of L NaN, as np.linalg's form
    np.testing.assert_allclose(low[4], np.ravel(np.linalg.cholesky(INVALID[4].reshape(2, 2))), rtol=1e-14)
    np.testing.assert_array_equal(low[5], [1.0, 0.0, 0.0, 1.0])  # the upper triangle is not read
    np.testing.assert_array_equal(low[6], [1.0, 0.0, 0.0, np.inf])
    assert np.all(np.isnan([sign[[3, 5]], logdet[[3, 5]], det[[3, 5]]]))  # NumPy: sign 1, log|det| NaN
    np.testing.assert_array_equal(np.abs(sign[[0, 1, 2, 4]]), [0.0, 1.0, 0.0, 1.0])
    lapack = got[:, 7:]  # eigh (U), eigvalsh (L), svd, pinv: a non-finite matrix gives its sample NaN
    assert np.all(np.isnan(lapack[[3, 6]]))
    assert np.all(np.isnan(lapack[5, :6])) and np.all(np.isnan(lapack[5, 8:]))
    np.testing.assert_array_equal(lapack[5, 6:8], [1.0, 1.0])  # eigvalsh reads the finite lower triangle
    with np.errstate(all="ignore"):
        for b in (0, 1, 2, 4):
            np.testing.assert_allclose(lapack[b], _invalid_lapack(INVALID[b].reshape(2, 2)), rtol=1e-12, atol=1e-12)
