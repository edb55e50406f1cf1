"""Background Numba compiles: the first calls run the NumPy tier while a child
process compiles the kernel into the disk cache; later calls load it.

Every model here holds a random constant, so its kernel is in no cache (a
fresh program), and each test uses a cache directory of its own.
"""

import warnings

import numpy as np
import pytest

import symjac
from codegen import background
from codegen.backends import _CacheGuard


@pytest.fixture
def tiered(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMJAC_CACHE_DIR", str(tmp_path))
    symjac.set_background_compile(True)
    yield
    symjac.wait_compiled()
    symjac.set_background_compile(None)


def guard_of(kernel, dtype="float64"):
    f = kernel._compiled[(dtype, None)].func
    while not isinstance(f, _CacheGuard):
        f = f.func
    return f


def rhs(c):
    def f(x):
        return np.array([np.sin(x[0]) * x[1] + c, x[0] ** 2 * np.exp(-c * x[1])])

    return f


def exact_jacobian(X, c):
    J = np.zeros((len(X), 2, 2))
    J[:, 0, 0] = np.cos(X[:, 0]) * X[:, 1]
    J[:, 0, 1] = np.sin(X[:, 0])
    J[:, 1, 0] = 2 * X[:, 0] * np.exp(-c * X[:, 1])
    J[:, 1, 1] = -c * X[:, 0] ** 2 * np.exp(-c * X[:, 1])
    return J


@pytest.mark.parametrize("backend", ["numba", "numba-parallel"])
def test_first_calls_run_numpy_then_numba_from_the_cache(tiered, backend):
    c = float(np.random.default_rng().uniform(0.5, 1.5))
    J = symjac.jacobian(rhs(c), backend=backend)
    X = np.random.default_rng(1).random((9, 2))
    first = J(X)  # the NumPy tier, while the child compiles
    g = guard_of(J.kernel_for(X))
    assert g.job is not None and not g.checked
    np.testing.assert_allclose(first, exact_jacobian(X, c), rtol=1e-13, atol=1e-13)
    assert symjac.wait_compiled(timeout=300)
    assert g.job.returncode == 0, g.job.error()
    second = J(X)  # Numba, loaded from the cache the child wrote
    assert g.checked and g.numpy_tier is None
    np.testing.assert_allclose(second, first, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(second, exact_jacobian(X, c), rtol=1e-13, atol=1e-13)


def test_tensor_loss_gradient_sums_over_the_batch_in_both_tiers(tiered):
    """dlfeval's batch sums (reduced outputs, added to across calls of the NumPy
    tier's slices) and tiled kernels' workspaces (not passed to NumPy)."""
    rng = np.random.default_rng(2)
    W = rng.normal(size=(16, 3)) * float(rng.uniform(0.5, 1.0))
    X = rng.random((3, 40))

    def loss(X, W):
        y = np.tanh(W @ X)
        L = np.mean(y ** 2)
        return L, symjac.dlgradient(L, W)

    axes = (-1, None)
    L1, G1 = symjac.dlfeval(loss, X, W, batch_axis=axes, backend="numba")
    assert symjac.wait_compiled(timeout=300)
    L2, G2 = symjac.dlfeval(loss, X, W, batch_axis=axes, backend="numba")
    y = np.tanh(W @ X)
    G = (2 * y * (1 - y ** 2)) @ X.T / y.size  # the mean is over every entry of y
    for got in ((L1, G1), (L2, G2)):
        np.testing.assert_allclose(got[0], np.mean(y ** 2), rtol=1e-13)
        np.testing.assert_allclose(got[1], G, rtol=1e-12, atol=1e-14)


def test_switched_off_or_in_cache_or_large_batch_compiles_in_process(tiered, monkeypatch):
    c = float(np.random.default_rng().uniform(0.5, 1.5))
    X = np.random.default_rng(3).random((5, 2))
    symjac.set_background_compile(False)
    J = symjac.jacobian(rhs(c), backend="numba")
    J(X)
    g = guard_of(J.kernel_for(X))
    assert g.job is None and g.checked
    # the same kernel in a new process's view: Numba's cache has it, so no child
    symjac.set_background_compile(True)
    g2 = _CacheGuard(g.module, g.source, g.key, g.backend, g.numpy_tier or (lambda: None), g.extra_args)
    assert g2._in_numba_cache()
    assert not g2.numpy_tier_likely(10)  # so numba-parallel's first call spreads over its threads
    # a batch larger than the NumPy tier is worth: this call waits for Numba
    monkeypatch.setattr(background, "WAIT_SAMPLES", 4)
    J3 = symjac.jacobian(rhs(c + 1.0), backend="numba")
    J3(X)
    g3 = guard_of(J3.kernel_for(X))
    assert g3.job is None and g3.checked
    # numba-parallel: a call too large for the NumPy tier takes Numba even though its slices would not be
    J4 = symjac.jacobian(rhs(c + 2.0), backend="numba-parallel")
    np.testing.assert_allclose(J4(X), exact_jacobian(X, c + 2.0), rtol=1e-13, atol=1e-13)
    g4 = guard_of(J4.kernel_for(X))
    assert g4.job is None and g4.checked


def test_a_failed_background_compile_warns_and_compiles_in_process(tiered, monkeypatch):
    monkeypatch.setattr(background, "_CHILD", "import sys; sys.exit('deliberate failure')")
    c = float(np.random.default_rng().uniform(0.5, 1.5))
    X = np.random.default_rng(4).random((6, 2))
    J = symjac.jacobian(rhs(c), backend="numba")
    first = J(X)
    g = guard_of(J.kernel_for(X))
    assert g.job.wait(60)
    with pytest.warns(RuntimeWarning, match="(?s)background Numba compile .* failed .*deliberate failure"):
        second = J(X)
    assert g.checked
    np.testing.assert_allclose(first, exact_jacobian(X, c), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(second, exact_jacobian(X, c), rtol=1e-13, atol=1e-13)


def test_a_kernel_file_changed_after_it_was_written_is_not_compiled(tiered, tmp_path):
    import numba

    path = tmp_path / "k_test.py"
    path.write_text("import numba\n@numba.njit(cache=True)\ndef kernel(a):\n    return a + 1\n")
    job = background.submit(path, "symjac_kernel_test", (numba.int64,))
    path.write_text("raise SystemExit('planted')\n")
    job.wait(120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert job.returncode != 0 and "changed since it was written" in job.error()


def test_setting_is_checked():
    with pytest.raises(TypeError, match="enabled must be True, False or None"):
        symjac.set_background_compile("yes")


def test_numba_takes_the_rest_of_a_slice_once_ready(tiered):
    """A call that starts on the NumPy tier hands the samples it has not run yet
    to Numba when the compile finishes: batch sums add up across the tiers."""
    from codegen.backends import _LOADED

    rng = np.random.default_rng(5)
    W = rng.normal(size=(8, 3)) * float(rng.uniform(0.5, 1.0))

    def loss(X, W):
        y = np.tanh(W @ X)
        L = np.mean(y ** 2)
        return L, symjac.dlgradient(L, W)

    def exact(X):
        y = np.tanh(W @ X)
        return np.mean(y ** 2), (2 * y * (1 - y ** 2)) @ X.T / y.size

    X = rng.random((3, 10))
    symjac.dlfeval(loss, X, W, batch_axis=(-1, None), backend="numba")
    guards = [g for c in list(_LOADED.values()) if c.backend == "numba"
              for g in [c.func.func if not isinstance(c.func, _CacheGuard) else c.func]
              if isinstance(g, _CacheGuard) and g.job is not None and not g.checked]
    assert len(guards) == 1
    g = guards[0]
    assert g.job.wait(300) and g.job.returncode == 0
    answers = iter([False, True])
    g.job.done = lambda: next(answers, True)  # not ready at the first check, ready at the next
    g._tier = (g._tier[0], 4)  # slices of 4 samples
    X = rng.random((3, 23))
    L, G = symjac.dlfeval(loss, X, W, batch_axis=(-1, None), backend="numba")
    assert g.checked  # Numba ran the last 15 samples
    L0, G0 = exact(X)
    np.testing.assert_allclose(L, L0, rtol=1e-13)
    np.testing.assert_allclose(G, G0, rtol=1e-12, atol=1e-14)


def test_no_background_compile_in_a_frozen_application(monkeypatch):
    """A frozen application's executable is the application itself: never run it as a compiler."""
    monkeypatch.setattr(background.sys, "frozen", True, raising=False)
    symjac.set_background_compile(True)
    try:
        assert not background.background_enabled()
    finally:
        symjac.set_background_compile(None)


def test_the_child_does_not_import_from_its_working_directory(tiered, tmp_path):
    """A file named like a module the child imports, in the cache directory (its
    working directory), is not imported: the child runs with ``python -P``."""
    (tmp_path / "pickle.py").write_text("raise SystemExit('planted module imported')\n")
    c = float(np.random.default_rng().uniform(0.5, 1.5))
    X = np.random.default_rng(7).random((4, 2))
    J = symjac.jacobian(rhs(c), backend="numba")
    J(X)
    g = guard_of(J.kernel_for(X))
    assert g.job.wait(300)
    assert g.job.returncode == 0, g.job.error()
    J(X)  # Numba from the cache (and no guard left half-way for the tests after this one)
    assert g.checked


def test_blas_threads_are_limited_while_a_compile_runs_and_restored_after(tiered, monkeypatch):
    """The NumPy tier's matrix products leave the compiling cores alone: OpenBLAS's
    spinning threads on a core the compiler holds slowed pinn's first call 3x."""
    from codegen import blas

    before = blas.threads()
    if before is None:
        pytest.skip("NumPy's BLAS is not one codegen.blas knows (OpenBLAS or MKL on Linux)")
    with blas.limited(1):
        assert blas.threads() == 1
        with blas.limited(1):  # overlapping blocks share the limit; the last one out restores
            assert blas.threads() == 1
        assert blas.threads() == 1
    assert blas.threads() == before
    seen = []
    monkeypatch.setattr(background, "free_cores", lambda: 1)
    real = np.einsum

    def spy(*args, **kwargs):
        seen.append(blas.threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "einsum", spy)
    W = np.random.default_rng(3).normal(size=(16, 8))
    c = float(np.random.default_rng().uniform(0.5, 1.0))  # a fresh kernel (a constant in its source)
    k = symjac.compile(lambda x, W: np.tanh(W @ x) * c, in_axes=(0, None), backend="numba")  # a tensor op
    X = np.random.default_rng(4).random((40, 8))  # more than a quarter tile: the tiled kernel
    np.testing.assert_allclose(k(X, W), np.tanh(X @ W.T) * c, rtol=1e-13)
    assert guard_of(k).job is not None  # the NumPy tier ran ...
    assert seen and set(seen) == {1}  # ... its products on one BLAS thread
    assert blas.threads() == before
