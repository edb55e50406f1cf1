"""dlfeval and the dljacobian family: MATLAB shape rules (0-based dim, batch
first or last, 2-D and 4-D x), against per-sample complex-step and
finite-difference constructions of the same arrays."""

import numpy as np
import pytest

import symjac
from symjac.dl import BatchMixingError

rng = np.random.default_rng(21)
B = 5
W = rng.normal(size=(4, 3))
W2 = rng.normal(size=(5, 12)) / 4


def cs_jac(g, x):
    """Complex-step Jacobian of a per-sample function: (out..., in...)."""
    cols = [np.asarray(g(x + 1e-30j * e.reshape(x.shape))).imag / 1e-30 for e in np.eye(x.size)]
    return np.stack(cols, axis=-1).reshape(np.shape(g(x)) + x.shape)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dljacobian_cb_layout_dim0(dtype):
    X = rng.normal(size=(3, B)).astype(dtype)
    J = symjac.dlfeval(lambda X: symjac.dljacobian(np.tanh(W @ X) * X[0], X, 0), X, backend="numpy")
    assert J.shape == (4, 3, B) and J.dtype == dtype
    for b in range(B):
        ref = cs_jac(lambda x: np.tanh(W @ x) * x[0], X[:, b].astype(float))
        np.testing.assert_allclose(J[:, :, b], ref, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-6)


def test_dljacobian_batch_first_dim1():
    X = rng.normal(size=(B, 3))
    J = symjac.dlfeval(lambda X: symjac.dljacobian(np.sin(X @ W.T), X, 1), X, batch_axis=0, backend="numpy")
    assert J.shape == (4, B, 3)
    for b in range(B):
        np.testing.assert_allclose(J[:, b, :], cs_jac(lambda x: np.sin(W @ x), X[b]), rtol=1e-13)


def test_dljacobian_4d_sscb_input():
    X = rng.normal(size=(2, 2, 3, B))

    def model(X):
        U = np.tanh(W2 @ X.reshape(12, X.shape[-1]))
        return U, symjac.dljacobian(U, X, 0)

    U, J = symjac.dlfeval(model, X, backend="numpy")
    assert U.shape == (5, B) and J.shape == (5, 2, 2, 3, B)
    for b in range(B):
        ref = cs_jac(lambda x: np.tanh(W2 @ x.reshape(12)), X[..., b])
        np.testing.assert_allclose(J[..., b], ref, rtol=1e-13, atol=1e-15)


def test_one_component_and_unused_x():
    X, Z = rng.normal(size=(3, B)), rng.normal(size=(2, B))
    J, Jz = symjac.dlfeval(lambda X, Z: (symjac.dljacobian(np.sum(X ** 2, axis=0, keepdims=True), X, 0),
                                         symjac.dljacobian(X * 2.0, Z, 0)), X, Z, backend="numpy")
    assert J.shape == (1, 3, B)
    np.testing.assert_allclose(J[0], 2 * X)
    assert Jz.shape == (3, 2, B) and not Jz.any()


def test_dldivergence_and_dllaplacian():
    X = rng.normal(size=(3, B))

    def field(x):
        return np.sin(x) * x[::-1] + x[0] * x[1] * x[2]

    def model(X):
        U = np.sin(X) * X[::-1] + X[0] * X[1] * X[2]
        return symjac.dldivergence(U, X, 0), symjac.dllaplacian(U, X, 0)

    div, lap = symjac.dlfeval(model, X, backend="numpy")
    assert div.shape == (1, B) and lap.shape == (3, B)
    for b in range(B):
        J = cs_jac(field, X[:, b])
        np.testing.assert_allclose(div[0, b], np.trace(J), rtol=1e-13)
        h = 1e-4
        fd = sum((field(X[:, b] + h * e) - 2 * field(X[:, b]) + field(X[:, b] - h * e)) / h ** 2 for e in np.eye(3))
        np.testing.assert_allclose(lap[:, b], fd, rtol=1e-5, atol=1e-5)


def test_higher_derivatives_and_stopping_them():
    X = rng.normal(size=(2, B))

    def second(X, enable):
        U = np.sin(X[0] * X[1]).reshape(1, X.shape[-1])
        J = symjac.dljacobian(U, X, 0, enable_higher_derivatives=enable)   # (1, 2, B)
        return symjac.dljacobian(J.reshape(2, X.shape[-1]), X, 0)         # (2, 2, B)

    H = symjac.dlfeval(lambda X: second(X, True), X, backend="numpy")
    Hh = symjac.hessian(lambda x: np.sin(x[0] * x[1]), backend="numpy")(X.T)
    np.testing.assert_allclose(np.moveaxis(H, -1, 0), Hh, rtol=1e-13)
    H0 = symjac.dlfeval(lambda X: second(X, False), X, backend="numpy")
    assert H0.shape == (2, 2, B) and not H0.any()


def test_numba_backend_and_shared_weights():
    X = rng.normal(size=(3, 7))
    J_np = symjac.dlfeval(lambda X, W: symjac.dljacobian(np.tanh(W @ X), X, 0), X, W,
                          batch_axis=(-1, None), backend="numpy")
    J_nb = symjac.dlfeval(lambda X, W: symjac.dljacobian(np.tanh(W @ X), X, 0), X, W,
                          batch_axis=(-1, None), backend="numba")
    np.testing.assert_allclose(J_nb, J_np, rtol=1e-13)


def test_errors_name_the_problem():
    X = rng.normal(size=(3, B))
    run = lambda fn, *a, **k: symjac.dlfeval(fn, *a, backend="numpy", **k)  # noqa: E731
    with pytest.raises(ValueError, match="dim must be 0 or 1"):
        run(lambda X: symjac.dljacobian(X * 2, X, 2), X)
    with pytest.raises(ValueError, match="use dim=0"):
        run(lambda X: symjac.dljacobian(X * 2, X, 1), X)
    with pytest.raises(ValueError, match="must be 2-D"):
        run(lambda X: symjac.dljacobian(X.reshape(3, 1, B), X, 0), X)
    with pytest.raises(TypeError, match="x must be a traced array"):
        run(lambda X: symjac.dljacobian(X * 2, np.ones((3, B)), 0), X)
    with pytest.raises(BatchMixingError, match="mixes samples"):
        run(lambda X: X.prod(axis=1), X)
    with pytest.raises(BatchMixingError, match="per-sample data"):  # a derivative through batch mixing
        run(lambda X: symjac.dljacobian(X - X.mean(axis=1), X, 0), X)
    with pytest.raises(BatchMixingError, match="every sample at once"):
        run(lambda X: np.log(np.sum(X ** 2)), X)
    with pytest.raises(BatchMixingError, match="batch axis"):
        run(lambda X: X.reshape(3 * B), X)
    with pytest.raises(BatchMixingError, match="selects samples"):
        run(lambda X: X[:, 0], X)
    with pytest.raises(ValueError, match="different batch sizes"):
        run(lambda X, Y: X * Y, X, np.ones((3, B + 1)))
    with pytest.raises(TypeError, match="real numeric"):
        run(lambda X: X, np.array([["a"]]))
    with pytest.raises(TypeError, match="floating point"):
        run(lambda X: X * 2, np.ones((3, B), dtype=int))
    with pytest.raises(TypeError, match="np.where"):
        run(lambda X: X if X[0] > 0 else -X, X)


# -- batch-reduced losses and dlgradient ---------------------------------------

def net(X, W1, b1, w2):
    """A small tanh network on "CB" data: X (2, B) -> (1, B)."""
    return w2 @ np.tanh(W1 @ X + b1[:, None])


def net_np(X, W1, b1, w2):
    return (w2 @ np.tanh(W1 @ X + b1[:, None]))[None]


WEIGHTS = [rng.normal(size=(6, 2)) / 2, rng.normal(size=6) * 0.1, rng.normal(size=(1, 6)) / 3]


def numeric_grad(loss, params, k, h=1e-6):
    g = np.zeros_like(params[k])
    for idx in np.ndindex(g.shape):
        p_plus = [p.copy() for p in params]
        p_minus = [p.copy() for p in params]
        p_plus[k][idx] += h
        p_minus[k][idx] -= h
        g[idx] = (loss(*p_plus) - loss(*p_minus)) / (2 * h)
    return g


@pytest.mark.parametrize("backend, batch", [("numpy", 7), ("numba-parallel", 4100)])
def test_dlgradient_of_a_mean_squared_loss_with_shared_weights(backend, batch):
    X = rng.normal(size=(2, batch))
    T = rng.normal(size=(1, batch))

    def model(X, T, W1, b1, w2):
        Y = w2 @ np.tanh(W1 @ X + b1[:, None])
        loss = np.mean((Y - T) ** 2) + 0.1 * np.sum(W1 ** 2)   # data term + regularizer on a weight
        return (loss, *symjac.dlgradient(loss, W1, b1, w2, X))

    loss, g1, gb, g2, gX = symjac.dlfeval(model, X, T, *WEIGHTS, batch_axis=(-1, -1, None, None, None),
                                          backend=backend)

    def loss_np(X, W1, b1, w2):
        return np.mean((net_np(X, W1, b1, w2) - T) ** 2) + 0.1 * np.sum(W1 ** 2)

    assert loss.shape == () and g1.shape == (6, 2) and gb.shape == (6,) and g2.shape == (1, 6)
    assert gX.shape == (2, batch)
    np.testing.assert_allclose(loss, loss_np(X, *WEIGHTS), rtol=1e-12)
    params = [X[:, :0], *WEIGHTS]  # numeric gradients with respect to the weights
    f = lambda _, W1, b1, w2: loss_np(X, W1, b1, w2)  # noqa: E731
    for k, g in zip((1, 2, 3), (g1, gb, g2)):
        np.testing.assert_allclose(g, numeric_grad(f, params, k), rtol=1e-5, atol=1e-8)
    # per-sample gradient with respect to the batched input
    h = 1e-6
    E = np.zeros_like(X)
    E[1, 3] = h
    fd = (loss_np(X + E, *WEIGHTS) - loss_np(X - E, *WEIGHTS)) / (2 * h)
    np.testing.assert_allclose(gX[1, 3], fd, rtol=1e-5, atol=1e-10)


def test_pinn_loss_with_laplacian_differentiated_with_respect_to_weights():
    X = rng.uniform(-1, 1, size=(2, 6))
    F = np.sin(X[0]) * X[1]

    def model(X, W1, b1, w2):
        U = w2 @ np.tanh(W1 @ X + b1[:, None])
        residual = symjac.dllaplacian(U, X, 0) - np.sin(X[0]) * X[1]
        loss = np.mean(residual ** 2)
        return (loss, *symjac.dlgradient(loss, W1, b1, w2))

    loss, g1, gb, g2 = symjac.dlfeval(model, X, *WEIGHTS, batch_axis=(-1, None, None, None), backend="numpy")

    def laplacian_np(W1, b1, w2):
        # closed form: lap u = sum_j w2_j tanh''(z_j) |W1_j|^2, tanh'' = -2 tanh (1 - tanh^2)
        t = np.tanh(W1 @ X + b1[:, None])
        return (w2 * np.sum(W1 ** 2, axis=1)) @ (-2 * t * (1 - t ** 2))

    def loss_np(W1, b1, w2):
        return np.mean((laplacian_np(W1, b1, w2) - F) ** 2)

    np.testing.assert_allclose(loss, loss_np(*WEIGHTS), rtol=1e-12)
    for k, g in enumerate((g1, gb, g2)):
        np.testing.assert_allclose(g, numeric_grad(loss_np, WEIGHTS, k), rtol=1e-6, atol=1e-9)


def test_contraction_over_the_batch_is_a_batch_sum():
    X = rng.normal(size=(3, 9))
    G = symjac.dlfeval(lambda X: X @ X.T, X, backend="numpy")
    np.testing.assert_allclose(G, X @ X.T, rtol=1e-13)
    S = symjac.dlfeval(lambda X: (np.sum(X, axis=1), np.mean(X), X * 2), X, backend="numpy")
    np.testing.assert_allclose(S[0], X.sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(S[1], X.mean(), rtol=1e-13)
    np.testing.assert_allclose(S[2], 2 * X)


def test_dlgradient_errors():
    X = rng.normal(size=(3, 4))
    run = lambda fn: symjac.dlfeval(fn, X, backend="numpy")  # noqa: E731
    with pytest.raises(ValueError, match="reduce them over the batch"):
        run(lambda X: symjac.dlgradient(X[0] * 2, X))
    with pytest.raises(ValueError, match="must be a scalar"):
        run(lambda X: symjac.dlgradient(np.sum(X, axis=1), X))
    with pytest.raises(TypeError, match="x number 0"):
        run(lambda X: symjac.dlgradient(np.sum(X), np.ones(3)))


def test_dlgradient_stops_higher_derivatives_by_default():
    X = rng.normal(size=(2, 4))

    def model(X, enable):
        loss = np.sum(np.sin(X) ** 2)
        g = symjac.dlgradient(loss, X, enable_higher_derivatives=enable)   # per sample, (2, B)
        return symjac.dljacobian(g, X, 0)

    assert not symjac.dlfeval(lambda X: model(X, False), X, backend="numpy").any()
    H = symjac.dlfeval(lambda X: model(X, True), X, backend="numpy")
    np.testing.assert_allclose(H[0, 0], 2 * np.cos(2 * X[0]), rtol=1e-13)


def test_disabling_higher_derivatives_builds_less():
    from symjac.dl import _trace_dlfeval

    def model(enable):
        def fn(X, W):
            U = np.tanh(W @ X)
            J = symjac.dljacobian(U, X, 0, enable_higher_derivatives=enable)      # (2, 2, B)
            loss = np.mean(J ** 2) + np.mean(U ** 2)
            return symjac.dlgradient(loss, W)
        return fn

    sizes = {}
    for enable in (True, False):
        kernel, _, _ = _trace_dlfeval(model(enable), [(2,), (2, 2)], [1, None], 4, "numpy")
        sizes[enable] = kernel.stats["dag_ops"]
    assert sizes[False] < sizes[True]


def test_dlfeval_cache_is_bounded():
    from symjac import dl

    X = rng.normal(size=(2, 3))
    for k in range(dl._CACHE_SIZE + 6):  # a new lambda each call is a new cache key
        symjac.dlfeval(lambda X: X * float(k), X, backend="numpy")
    assert len(dl._CACHE) <= dl._CACHE_SIZE


def test_new_batch_size_renamed_function_and_recreated_lambda_compile_nothing(monkeypatch):
    """A new batch size traces again but compiles nothing (a mean over the batch
    reads 1 / B at run time); a renamed function compiles nothing; a lambda
    re-created on every step is not even traced again; a captured array
    changed in place is traced again (its values are part of the key)."""
    import types

    from codegen.backends import kernels_loaded
    from symjac import dl

    traces = []
    real = dl._trace_dlfeval
    monkeypatch.setattr(dl, "_trace_dlfeval", lambda *a: traces.append(a[3]) or real(*a))
    axes = (-1, -1, None, None, None)

    def step(X, T, W1, b1, w2):
        Y = w2 @ np.tanh(W1 @ X + b1[:, None])
        loss = np.mean((Y - T) ** 2)
        return (loss, *symjac.dlgradient(loss, W1, b1, w2))

    def check(fn, B, scale=1.0):
        X, T = rng.normal(size=(2, B)), rng.normal(size=(1, B))
        loss, g1, gb, g2 = symjac.dlfeval(fn, X, T, *WEIGHTS, batch_axis=axes, backend="numpy")

        def f(_, W1, b1, w2):
            return np.mean((net_np(X, W1, b1, w2) - T * scale) ** 2)

        np.testing.assert_allclose(loss, f(None, *WEIGHTS), rtol=1e-12)
        for k, g in zip((1, 2, 3), (g1, gb, g2)):
            np.testing.assert_allclose(g, numeric_grad(f, [X[:, :0], *WEIGHTS], k), rtol=1e-5, atol=1e-8)

    check(step, 9)
    compiled = kernels_loaded()
    check(step, 23)  # a new batch size: the mean's 1 / B is an argument of the kernel
    assert traces == [9, 23] and kernels_loaded() == compiled

    def renamed(X, T, W1, b1, w2):  # the same model under another name: traced, not compiled
        Y = w2 @ np.tanh(W1 @ X + b1[:, None])
        loss = np.mean((Y - T) ** 2)
        return (loss, *symjac.dlgradient(loss, W1, b1, w2))

    check(renamed, 9)
    assert traces == [9, 23, 9] and kernels_loaded() == compiled
    alias = types.FunctionType(step.__code__, step.__globals__, "alias", step.__defaults__, step.__closure__)
    check(alias, 9)  # same code, same closure: not traced again
    assert traces == [9, 23, 9]

    for _ in range(3):  # a lambda re-created on every step
        check(lambda *a: step(*a), 9)
    assert traces == [9, 23, 9, 9] and kernels_loaded() == compiled

    scale = np.array([1.0])

    def scaled(X, T, W1, b1, w2):
        return step(X, T * scale[0], W1, b1, w2)

    check(scaled, 9)
    scale[0] = 2.0  # changed in place: a new trace, and the new value is used
    check(scaled, 9, scale=2.0)
    assert len(traces) == 6


GAIN = 1.0  # module globals read by a model below
OFFSET = np.zeros(3)


def test_dlfeval_traces_again_when_a_value_the_function_reads_changed():
    """dlfeval evaluates the function anew on each call, as MATLAB's does: its
    trace cache must never return a value computed from a stale capture,
    whether the captured value is a list changed in place, a rebound module
    global, an attribute of a captured object, or a global read by a helper."""
    import functools
    from types import SimpleNamespace

    from symjac import dl

    global GAIN
    copy_bytes = dl.COPY_BYTES
    X = rng.normal(size=(3, 5))
    run = lambda fn: symjac.dlfeval(fn, X, backend="numpy")  # noqa: E731
    params, cfg = [1.0], SimpleNamespace(a=1.0, nested={"b": [1.0]})

    def helper(x):
        return x * GAIN

    def by_list(x):
        return x * params[0]

    def by_global(x):
        return helper(x) + 1.0 + OFFSET[:, None]

    def by_attr(x):
        return x * cfg.a * cfg.nested["b"][0]

    np.testing.assert_allclose(run(by_list), X)
    params[0] = 2.0
    np.testing.assert_allclose(run(by_list), 2.0 * X)
    np.testing.assert_allclose(run(by_global), X + 1.0)
    GAIN = 3.0
    try:
        np.testing.assert_allclose(run(by_global), 3.0 * X + 1.0)
        OFFSET[1] = 2.0  # a global array changed in place
        np.testing.assert_allclose(run(by_global), 3.0 * X + 1.0 + OFFSET[:, None])
        dl.COPY_BYTES = 0  # the same with the cache keeping digests instead of copies
        np.testing.assert_allclose(run(by_global), 3.0 * X + 1.0 + OFFSET[:, None])
        OFFSET[2] = -1.0
        np.testing.assert_allclose(run(by_global), 3.0 * X + 1.0 + OFFSET[:, None])
        np.testing.assert_allclose(run(by_global), 3.0 * X + 1.0 + OFFSET[:, None])
    finally:
        GAIN = 1.0
        OFFSET[:] = 0.0
        dl.COPY_BYTES = copy_bytes
    np.testing.assert_allclose(run(by_attr), X)
    cfg.a = 4.0
    np.testing.assert_allclose(run(by_attr), 4.0 * X)
    cfg.nested["b"][0] = 0.5
    np.testing.assert_allclose(run(by_attr), 2.0 * X)
    # an object with state outside its attributes counts by identity too (a partial's arguments)
    scaled = {"f": functools.partial(np.multiply, 2.0)}

    def by_partial(x):
        return scaled["f"](x)

    np.testing.assert_allclose(run(by_partial), 2.0 * X)
    scaled["f"] = functools.partial(np.multiply, 5.0)
    np.testing.assert_allclose(run(by_partial), 5.0 * X)
    params[0] = 0.0
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(1.0 / run(by_list), np.where(X < 0, -np.inf, np.inf))
        params[0] = -0.0  # equal to 0.0, but not the same value: 1 / (x * -0.0) flips the infinities
        np.testing.assert_array_equal(1.0 / run(by_list), np.where(X < 0, np.inf, -np.inf))


def _even(x, n):  # helpers that call each other: each is keyed once, whatever the paths between them
    return x if n == 0 else _odd(x, n - 1) * GAIN


def _odd(x, n):
    return x if n == 0 else _even(x, n - 1) + 0.5


def test_dlfeval_key_of_helpers_that_call_each_other():
    from symjac.dl import function_key

    global GAIN
    X = rng.normal(size=(2, 4))
    f = lambda x: _even(x, 3)  # noqa: E731
    key = function_key(f)
    assert function_key(f) == key  # recursion: a finite key, the same each call
    np.testing.assert_allclose(symjac.dlfeval(f, X, backend="numpy"), (X * GAIN + 0.5) * GAIN)
    GAIN = 2.0  # read two calls deep
    try:
        assert function_key(f) != key
        np.testing.assert_allclose(symjac.dlfeval(f, X, backend="numpy"), (X * 2.0 + 0.5) * 2.0)
    finally:
        GAIN = 1.0


def test_progress_reports_the_stages_of_a_slow_first_call(monkeypatch, caplog):
    import logging

    from symjac import progress

    monkeypatch.setenv("SYMJAC_PROGRESS", "0")
    assert not progress.progress_enabled()
    monkeypatch.setattr(progress, "THRESHOLD", 0.0)  # every first call counts as slow
    x = np.ones((2, 3))
    try:
        symjac.set_progress(True)  # wins over the environment
        with caplog.at_level(logging.INFO, logger="symjac"):
            symjac.compile(lambda x: np.sin(x) * 2.5, backend="numpy")(x)
        text = caplog.text
        for name in ("trace, differentiate", "lower", "print", "compile, first run", "done in"):
            assert name in text, text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="symjac"):  # a transform's first call too
            symjac.jacobian(lambda x: np.sin(x) * 1.25, backend="numpy")(x)
        assert "first call of jacobian" in caplog.text and "compile, first run" in caplog.text, caplog.text
        caplog.clear()
        symjac.set_progress(False)
        with caplog.at_level(logging.INFO, logger="symjac"):
            symjac.compile(lambda x: np.cos(x) * 3.5, backend="numpy")(x)
        assert not caplog.records
        with pytest.raises(TypeError, match="enabled"):
            symjac.set_progress("yes")
    finally:
        symjac.set_progress(None)


# -- gradients with respect to whole weight tensors ----------------------------------

def _record_wholes(monkeypatch):
    from symjac import dl

    seen = []
    original = dl._whole_variables

    def record(roots, xs):
        found = original(roots, xs)
        seen.append([w is not None for w in found])
        return found

    monkeypatch.setattr(dl, "_whole_variables", record)
    return seen


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_weight_gradient_is_one_tensor_and_right(monkeypatch, backend):
    """A weight used only as a whole (W @ X) is differentiated as one tensor (the
    gradient is the adjoint of its pack); a weight whose entries are also used
    one by one (Wb[0, 0]) falls back to one derivative per entry. Both exact,
    with a term of Wa alone (a batch-free offset) and per-sample gradients in X."""
    seen = _record_wholes(monkeypatch)
    r = np.random.default_rng(3)
    Wa = r.normal(size=(16, 8)) / 3
    Wb = r.normal(size=(4, 4))
    X = r.normal(size=(8, 7))
    c = r.normal(size=8)

    def loss(X, Wa, Wb):
        y = np.tanh(Wa @ X)
        L = np.mean(y ** 2) + 0.05 * np.sum((Wa @ c) ** 2) + Wb[0, 0] * np.mean(X[0]) + np.mean(Wb @ y[:4])
        return (L, *symjac.dlgradient(L, Wa, Wb, X))

    L, Ga, Gb, GX = symjac.dlfeval(loss, X, Wa, Wb, batch_axis=(-1, None, None), backend=backend)
    assert seen[-1] == [True, False, False]  # Wa whole; Wb's entry used alone; X also read by X[0]
    y = np.tanh(Wa @ X)
    n, B = y.size, X.shape[1]
    dy = 2 * y / n + np.vstack([Wb.sum(0)[:, None] * np.ones((1, B)) / (4 * B), np.zeros((12, B))])
    dz = dy * (1 - y ** 2)
    np.testing.assert_allclose(L, np.mean(y ** 2) + 0.05 * np.sum((Wa @ c) ** 2) + Wb[0, 0] * np.mean(X[0])
                               + np.mean(Wb @ y[:4]), rtol=1e-13)
    np.testing.assert_allclose(Ga, dz @ X.T + 0.1 * np.outer(Wa @ c, c), rtol=1e-12, atol=1e-14)
    Gb_ref = np.tile(y[:4].mean(1) / 4, (4, 1))  # the mean runs over the 4 x B entries of Wb @ y[:4]
    Gb_ref[0, 0] += np.mean(X[0])
    np.testing.assert_allclose(Gb, Gb_ref, rtol=1e-12, atol=1e-14)
    GX_ref = Wa.T @ dz
    GX_ref[0] += Wb[0, 0] / B
    np.testing.assert_allclose(GX, GX_ref, rtol=1e-12, atol=1e-14)


def test_whole_gradient_differentiated_again(monkeypatch):
    """enable_higher_derivatives on whole-tensor gradients: the per-sample input
    gradient of a loss (X read only through W @ X) in a penalty, differentiated
    by the whole weight, against central differences."""
    seen = _record_wholes(monkeypatch)
    r = np.random.default_rng(4)
    W0 = r.normal(size=(8, 4)) / 2
    X = r.normal(size=(4, 6))

    def penalty(X, W):
        L = np.mean(np.tanh(W @ X) ** 2)
        G = symjac.dlgradient(L, X, enable_higher_derivatives=True)
        P = np.mean(np.sum(G ** 2, axis=0))
        return P, symjac.dlgradient(P, W)

    P, GP = symjac.dlfeval(penalty, X, W0, batch_axis=(-1, None), backend="numpy")
    assert seen[0] == [True] and seen[1] == [True]

    def p_of(W):
        y = np.tanh(W @ X)
        G = W.T @ (2 * y * (1 - y ** 2) / y.size)
        return np.mean(np.sum(G ** 2, axis=0))

    np.testing.assert_allclose(P, p_of(W0), rtol=1e-12)
    fd = np.zeros_like(W0)
    for i in np.ndindex(W0.shape):
        e = np.zeros_like(W0)
        e[i] = 1e-6
        fd[i] = (p_of(W0 + e) - p_of(W0 - e)) / 2e-6
    np.testing.assert_allclose(GP, fd, rtol=1e-6, atol=1e-10)


def test_weight_gradients_sharing_entries_keep_one_derivative_per_entry(monkeypatch):
    """dlgradient by W and by a part of W (or W twice, or a gather repeating
    entries): every x gets its full gradient, as the unrolled path gives it."""
    seen = _record_wholes(monkeypatch)
    r = np.random.default_rng(6)
    W = r.normal(size=(8, 8)) / 3
    X = r.normal(size=(8, 5))
    rows = [0, 0, 1, 2, 3, 4, 5, 6]

    def loss(X, W):
        L = np.mean(np.tanh(W @ X)) + np.mean(np.sin(W[:4] @ X))
        return symjac.dlgradient(L, W, W[:4], W)

    def gathered(X, W):
        L = np.mean(np.tanh(W[rows] @ X))
        return symjac.dlgradient(L, W[rows])

    G, G4, G2 = symjac.dlfeval(loss, X, W, batch_axis=(-1, None), backend="numpy")
    assert seen[-1] == [False, False, False]
    y, z = np.tanh(W @ X), W[:4] @ X
    ref = (1 - y ** 2) @ X.T / y.size
    ref[:4] += np.cos(z) @ X.T / z.size
    for got in (G, G2):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(G4, ref[:4], rtol=1e-12, atol=1e-15)
    Gr = symjac.dlfeval(gathered, X, W, batch_axis=(-1, None), backend="numpy")
    assert seen[-1] == [False]
    v = np.tanh(W[rows] @ X)
    per_row = (1 - v ** 2) @ X.T / v.size  # d L / d (row i of W[rows]), as an entry of x
    full = np.zeros_like(W)
    np.add.at(full, rows, per_row)
    np.testing.assert_allclose(Gr, full[rows], rtol=1e-12, atol=1e-15)
