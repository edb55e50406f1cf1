"""No silent wrong results: aliasing, races, ODE-style assignment, nested
outputs, argument mistakes, and a kernel cache that cannot be poisoned.

Each test here failed (wrong numbers, a crash or a misleading error) before
the change it guards.
"""

import os
import stat
import threading
import warnings

import numpy as np
import pytest

import symjac
import symjac.kernel
from codegen import backends
from symjac.errors import NumericArrayError, TracerBoolError
from symjac.testing import complex_step_jvp
from conftest import BACKENDS


# -- out= that overlaps an input, or another output ----------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_out_equal_to_input_gives_the_right_answer(backend):
    k = symjac.compile(lambda x: x[::-1], backend=backend)  # outputs are plain loads of other columns
    X = np.arange(12.0).reshape(4, 3)
    expected = X[:, ::-1].copy()
    assert k(X, out=X) is X
    np.testing.assert_array_equal(X, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_shifted_one_row_from_its_input(backend):
    k = symjac.compile(lambda x: 2.0 * x + x[::-1], backend=backend)
    buf = np.arange(10.0).reshape(5, 2)
    expected = k(buf[:-1].copy())
    k(buf[:-1], out=buf[1:])
    np.testing.assert_array_equal(buf[1:], expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_overlapping_a_shared_input(backend):
    k = symjac.compile(lambda x, w: x * w, in_axes=(0, None), backend=backend)
    buf = np.arange(6.0)
    x = np.full((3, 2), 2.0)
    expected = x * buf[:2]
    out = buf.reshape(3, 2)
    k(x, buf[:2], out=out)
    np.testing.assert_array_equal(out, expected)


def test_one_buffer_for_two_outputs_is_refused():
    k = symjac.compile(lambda x: (2.0 * x, 3.0 * x), backend="numpy")
    X = np.ones((3, 2))
    o = np.empty((3, 2))
    with pytest.raises(ValueError, match=r"out\[0\] and out\[1\] share memory"):
        k(X, out=(o, o))
    both = np.empty((2, 3, 2))
    with pytest.raises(ValueError, match="share memory"):
        k(X, out=(both[0], both[0]))
    a, b = k(X, out=(both[0], both[1]))  # neighbours that do not overlap are fine
    np.testing.assert_array_equal(both[1], 3.0 * X)


# -- first calls from several threads ---------------------------------------------

def _slow_lowering(monkeypatch, seconds=0.5):
    """Make the first lowering slow, so a second thread arrives while it runs."""
    real = symjac.kernel.lower
    entered = threading.Event()
    calls = []

    def lower(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            threading.Event().wait(seconds)
        return real(*args, **kw)

    monkeypatch.setattr(symjac.kernel, "lower", lower)
    return entered, calls


def _in_threads(*jobs):
    results, errors = [None] * len(jobs), []

    def run(i, job):
        try:
            results[i] = job()
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    threads[0].start()
    return threads, results, errors


def _join(threads, errors):
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]


def test_compile_first_call_from_two_threads(monkeypatch):
    entered, calls = _slow_lowering(monkeypatch)
    k = symjac.compile(lambda x: np.sin(x) * x[0], backend="numpy")
    X = np.linspace(0.0, 1.0, 8).reshape(4, 2)
    threads, results, errors = _in_threads(lambda: k(X), lambda: k(X))
    entered.wait(10)
    threads[1].start()
    _join(threads, errors)
    for r in results:
        np.testing.assert_allclose(r, np.sin(X) * X[:, :1])
    assert len(calls) == 1  # traced and lowered once


@pytest.mark.parametrize("make", [
    lambda f: symjac.jacobian(f, backend="numpy"),
    lambda f: symjac.gradient(lambda x: np.sum(f(x)), backend="numpy"),
    lambda f: symjac.laplacian(f, backend="numpy"),
    lambda f: symjac.jacobian(f, backend="numpy", sparse=True),
], ids=["jacobian", "gradient", "laplacian", "sparse"])
def test_transform_first_call_from_two_threads(monkeypatch, make):
    traces = []

    def f(x):
        traces.append(1)
        return np.sin(x) * x[0]

    entered, _ = _slow_lowering(monkeypatch)
    t = make(f)
    X = np.linspace(0.1, 1.0, 8).reshape(4, 2)
    threads, results, errors = _in_threads(lambda: t(X), lambda: t(X))
    entered.wait(10)
    threads[1].start()
    _join(threads, errors)
    assert len(traces) == 1  # one thread traced, the other waited for its kernel
    first = results[0].todense() if hasattr(results[0], "todense") else results[0]
    second = results[1].todense() if hasattr(results[1], "todense") else results[1]
    np.testing.assert_array_equal(first, second)


def test_dlfeval_first_call_from_two_threads(monkeypatch):
    traces = []
    record = traces.append  # captured by identity (the list itself would count by its contents)

    def model(X):
        record(1)
        return np.tanh(X) * 2.0

    entered, _ = _slow_lowering(monkeypatch)
    X = np.linspace(0.0, 1.0, 6).reshape(2, 3)
    threads, results, errors = _in_threads(lambda: symjac.dlfeval(model, X, backend="numpy"),
                                           lambda: symjac.dlfeval(model, X, backend="numpy"))
    entered.wait(10)
    threads[1].start()
    _join(threads, errors)
    assert len(traces) == 1
    for r in results:
        np.testing.assert_allclose(r, np.tanh(X) * 2.0)


def test_sparse_pattern_travels_with_its_kernel(monkeypatch):
    """Two threads, two per-sample shapes: each kernel keeps its own pattern."""
    real = symjac.kernel.lower
    hold = threading.Event()

    def lower(graph, *args, **kw):
        if graph.inputs[0].shape == (3,):
            hold.wait(0.5)  # the (3,) specialization is slow; the (5,) one runs meanwhile
        return real(graph, *args, **kw)

    monkeypatch.setattr(symjac.kernel, "lower", lower)
    J = symjac.jacobian(lambda x: x * x[0], backend="numpy", sparse=True)
    x3, x5 = np.full((2, 3), 2.0), np.full((2, 5), 2.0)
    threads, results, errors = _in_threads(lambda: J(x3), lambda: J(x5))
    threading.Event().wait(0.1)
    threads[1].start()
    _join(threads, errors)
    dense = symjac.jacobian(lambda x: x * x[0], backend="numpy")
    for r, x in zip(results, (x3, x5)):
        np.testing.assert_array_equal(r.todense(), dense(x))
    for x in (x3, x5, x3):  # and every later call
        np.testing.assert_array_equal(J(x).todense(), dense(x))


def test_nested_first_calls_in_two_threads_do_not_deadlock():
    inner = symjac.compile(lambda z: np.sin(z) * 2.0, backend="numpy")
    started = threading.Event()

    def outer_fn(x):
        started.set()
        threading.Event().wait(0.3)  # a slow trace, which calls another kernel numerically
        return x * inner(np.ones((1, 3)))[0]

    outer = symjac.compile(outer_fn, backend="numpy")
    X = np.ones((2, 3))
    threads, results, errors = _in_threads(lambda: outer(X), lambda: inner(X))
    started.wait(10)
    threads[1].start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "deadlock"
    np.testing.assert_allclose(results[0], X * np.sin(1.0) * 2.0)
    np.testing.assert_allclose(results[1], np.sin(X) * 2.0)


def test_one_tensor_policy_object_entered_by_two_threads():
    pol = symjac.tensor_policy(min_work=None)
    inside = threading.Barrier(2)
    errors = []

    def use():
        try:
            with pol:
                inside.wait(5)
                g = symjac.trace(lambda x, W: W @ x, (40,), (40, 40))
                assert len(g) > 1600  # unrolled in this thread
                inside.wait(5)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(symjac.trace(lambda x, W: W @ x, (40,), (40, 40))) < 100  # and reset here


def test_rewrite_settings_belong_to_their_thread():
    """non_ieee_rewrites and tensor_policy in one thread do not reach another's trace."""
    inside, done = threading.Event(), threading.Event()

    def other():
        with symjac.non_ieee_rewrites(), symjac.tensor_policy(min_work=None):
            inside.set()
            done.wait(10)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(10)
    try:
        k = symjac.compile(lambda x, W: (x[0] * 0.0, np.tanh(W @ x)), in_axes=(0, None), backend="numpy")
        value, _ = k(np.array([[np.inf] + [1.0] * 39]), np.ones((40, 40)))
        assert np.isnan(value[0])  # inf * 0 kept as IEEE says
        assert len(k.program.body) < 200  # the contraction stayed a tensor op
    finally:
        done.set()
        t.join()


# -- dlfeval --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dlfeval_mean_over_no_samples_is_nan(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.mean(np.zeros((2, 0), dtype=dtype))
    got = symjac.dlfeval(lambda X: np.mean(X), np.zeros((2, 0), dtype=dtype), backend="numpy")
    assert np.isnan(got) and np.isnan(expected) and got.dtype == dtype
    got = symjac.dlfeval(lambda X: np.mean(X ** 2, axis=1), np.zeros((2, 0), dtype=dtype), backend="numpy")
    assert got.shape == (2,) and np.all(np.isnan(got))
    assert symjac.dlfeval(lambda X: np.sum(X), np.zeros((2, 0)), backend="numpy") == 0.0


def _net_loss(X, W1, w2):
    return np.mean((w2 @ np.tanh(W1 @ X)) ** 2)


def test_dlfeval_outputs_nested_in_tuples_and_lists():
    rng = np.random.default_rng(0)
    X, W1, w2 = rng.standard_normal((2, 5)), rng.standard_normal((3, 2)), rng.standard_normal(3)

    def model(X, W1, w2):
        loss = _net_loss(X, W1, w2)
        return loss, symjac.dlgradient(loss, W1, w2)

    def listed(X, W1, w2):
        loss = _net_loss(X, W1, w2)
        gW1, gw2 = symjac.dlgradient(loss, W1, w2)
        return [np.tanh(W1 @ X), (loss, [gW1, (gw2,)])]

    axes = (-1, None, None)
    loss, (gW1, gw2) = symjac.dlfeval(model, X, W1, w2, batch_axis=axes, backend="numpy")
    np.testing.assert_allclose(loss, _net_loss(X, W1, w2), rtol=1e-12)
    h = 1e-6
    for arr, g, k in ((W1, gW1, 1), (w2, gw2, 2)):
        for idx in np.ndindex(arr.shape):
            args = [X, W1.copy(), w2.copy()]
            args[k][idx] += h
            up = _net_loss(*args)
            args[k][idx] -= 2 * h
            assert abs((up - _net_loss(*args)) / (2 * h) - g[idx]) < 1e-7
    out = symjac.dlfeval(listed, X, W1, w2, batch_axis=axes, backend="numpy")
    assert isinstance(out, list) and isinstance(out[1], tuple) and isinstance(out[1][1], list)
    np.testing.assert_allclose(out[0], np.tanh(W1 @ X), rtol=1e-12)
    np.testing.assert_allclose(out[1][0], loss, rtol=1e-12)
    np.testing.assert_allclose(out[1][1][0], gW1, rtol=1e-12)
    assert isinstance(out[1][1][1], tuple)
    np.testing.assert_allclose(out[1][1][1][0], gw2, rtol=1e-12)


def test_dlfeval_namedtuple_outputs():
    from collections import namedtuple

    Out = namedtuple("Out", "loss grad")

    def model(X, W):
        loss = np.mean((W @ X) ** 2)
        return Out(loss, symjac.dlgradient(loss, W))

    X, W = np.ones((2, 3)), np.eye(2)
    out = symjac.dlfeval(model, X, W, batch_axis=(-1, None), backend="numpy")
    assert isinstance(out, Out) and out.loss == pytest.approx(1.0)
    np.testing.assert_allclose(out.grad, np.ones((2, 2)))


# -- containers as arguments ------------------------------------------------------------

@pytest.mark.parametrize("kind", [tuple, list])
def test_containers_are_trees_never_stacked_into_one_array(kind):
    """A tuple or list argument is a tree of arguments (as in JAX), never np.stack'ed
    into one array whose first axis would pass for the batch."""
    x, y = np.ones((2, 3)), np.arange(6.0).reshape(2, 3)
    J = symjac.jacobian(lambda t: t[0] * t[1], backend="numpy")(kind([x, y]))
    assert isinstance(J, kind) and len(J) == 2 and J[0].shape == (2, 3, 3)
    np.testing.assert_allclose(J[0], np.einsum("bi,ij->bij", y, np.eye(3)))
    np.testing.assert_allclose(symjac.compile(lambda t: t[0] * t[1], backend="numpy")(kind([x, y])), x * y)
    np.testing.assert_allclose(symjac.dlfeval(lambda t: t[0] * t[1], kind([x, y]), backend="numpy"), x * y)
    inner = symjac.compile(lambda z: symjac.jacobian(lambda t: t[0] * t[1])(kind([z, 2 * z])), backend="numpy")(x)
    np.testing.assert_allclose(inner[1], np.einsum("bi,ij->bij", x, np.eye(3)))


def test_dict_arguments_are_trees():
    x = np.ones((2, 3))
    g = symjac.gradient(lambda t: np.sum(t["a"] * t["b"]), backend="numpy")({"a": x, "b": 3 * x})
    assert set(g) == {"a", "b"}
    np.testing.assert_allclose(g["a"], 3 * x)


# -- writes through views of a tensor ----------------------------------------------------

def test_writes_reach_every_view_of_a_tensor():
    W = np.random.default_rng(0).standard_normal((40, 40))

    def f(x):
        h = W @ x  # a tensor (a loop in the kernel)
        v = h.reshape(5, 8)
        v2 = h.reshape(8, 5)
        h += 1.0  # reaches v and v2
        v2[0, 0] = 3.0  # reaches h and v
        return np.concatenate([np.tanh(v).ravel(), v2.T.ravel() * 2.0, h[:3]])

    x = np.random.default_rng(1).standard_normal(40) * 0.1
    np.testing.assert_allclose(symjac.compile(f, backend="numpy")(x[None])[0], f(x), rtol=1e-14)
    J = symjac.jacobian(f, backend="numpy")(x[None])[0]
    ref = np.stack([complex_step_jvp(f, [x], 0, e) for e in np.eye(40)], axis=1)
    np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-14)


# -- ODE-style assignment -------------------------------------------------------------------

def _brusselator(y):
    dy = np.zeros_like(y)
    u, v = y[0::2], y[1::2]
    dy[0::2] = 1.0 + u * u * v - 4.0 * u
    dy[1::2] = 3.0 * u - u * u * v
    dy[2:-2] += 0.02 * (y[4:] - 2.0 * y[2:-2] + y[:-4])
    return dy


def _items(y):
    dy = y.copy()
    dy[0] = y[1] * y[2]
    dy[-1] = -y[0]
    return dy


def _fancy(y):
    dy = np.empty_like(y)
    dy[[0, 2, 4]] = np.sin(y[[1, 3, 5]])
    dy[[1, 3, 5]] = y[[0, 2, 4]] ** 2
    return dy


def _mask(y):
    dy = np.zeros(6, dtype=y.dtype, like=y)
    dy[np.array([True, False, True, False, True, False])] = y[:3] * y[3:]
    dy[1::2] = np.exp(y[1::2])
    dy[3] += y[0]
    return dy


def _ufunc_out(y):
    dy = np.ones(6, dtype=y.dtype, like=y)
    np.multiply(y, y[::-1], out=dy)
    dy *= 2.0
    return dy


@pytest.mark.parametrize("rhs", [_brusselator, _items, _fancy, _mask, _ufunc_out])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_ode_style_assignment_against_complex_step(rhs, backend):
    rng = np.random.default_rng(3)
    y = rng.uniform(0.5, 1.5, 6)
    J = symjac.jacobian(rhs, backend=backend)(y[None])[0]
    ref = np.stack([complex_step_jvp(rhs, [y], 0, e) for e in np.eye(6)], axis=1)
    np.testing.assert_allclose(J, ref, rtol=1e-13, atol=1e-15)
    value = symjac.compile(rhs, backend=backend)(y[None])[0]
    np.testing.assert_allclose(value, rhs(y), rtol=1e-14)


def test_assignment_shape_mismatch_is_an_error():
    def f(y):
        dy = np.zeros_like(y)
        dy[0] = y[:2]
        return dy

    with pytest.raises(ValueError, match=r"cannot store a value of shape \(2,\) into one element"):
        symjac.jacobian(f, backend="numpy")(np.ones((1, 3)))


def test_storing_into_np_zeros_names_the_fix_not_control_flow():
    def item(y):
        dy = np.zeros(2)
        dy[0] = y[1]
        return dy

    def slice_(y):
        dy = np.zeros(4)
        dy[:2] = y[1:3]
        return dy

    for f in (item, slice_):
        with pytest.raises(NumericArrayError, match=r"np\.zeros\(n, like=y\)") as e:
            symjac.jacobian(f, backend="numpy")(np.ones((1, 4)))
        assert "control flow" not in str(e.value)
    with pytest.raises(TracerBoolError, match="control flow"):  # float() itself is still control flow
        symjac.jacobian(lambda y: y * float(y[0]), backend="numpy")(np.ones((1, 4)))


# -- errors that name the argument ----------------------------------------------------------------

def test_shared_argument_that_is_batched_is_named():
    def f(x, k):
        dy = np.zeros_like(x)
        dy[0] = x[0] * k[0]
        return dy

    with pytest.raises(ValueError) as e:
        symjac.jacobian(f, in_axes=(0, None), backend="numpy")(np.ones((5, 2)), np.ones((5, 2)))
    notes = "\n".join(getattr(e.value, "__notes__", []))
    assert "argument 1 ('k'): shared (in_axes None: every sample gets the whole array), shape (5, 2)" in notes
    assert "argument 1 ('k') is shared but has an axis of the batch size 5" in notes
    assert "in_axes 0 instead of None" in notes


def test_a_note_is_added_once():
    inner = symjac.compile(lambda z: z[0] * z[1], backend="numpy")

    def outer(x):
        return x * inner(np.ones(2))[0]  # the inner kernel misses its batch axis

    with pytest.raises(IndexError) as e:
        symjac.jacobian(outer, backend="numpy")(np.ones((1, 3)))
    assert sum(n.startswith("symjac traced ") for n in e.value.__notes__) == 1
    stored = ValueError("from the model")

    def raises(x):
        raise stored

    k = symjac.compile(raises, backend="numpy")
    for _ in range(3):
        with pytest.raises(ValueError):
            k(np.ones((1, 2)))
    assert len(stored.__notes__) == 1


def test_missing_batch_axis_is_explained():
    def g(x):
        a, b = x
        return a * b

    with pytest.raises(TypeError, match="0-d traced array") as e:
        symjac.jacobian(g, backend="numpy")(np.ones(2))
    notes = "\n".join(getattr(e.value, "__notes__", []))
    assert "argument 0 ('x')'s per-sample shape came out as ()" in notes
    assert "its first axis (size 2) is the batch" in notes
    assert notes.count("symjac traced ") == 1 and "explained.g for one sample" in notes


# -- the kernel cache ---------------------------------------------------------------------------

@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache directory and no kernels loaded in this process yet."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SYMJAC_CACHE_DIR", str(root))
    monkeypatch.setattr(backends, "_MODULES", {})
    monkeypatch.setattr(backends, "_LOADED", {})
    monkeypatch.setattr(backends, "_FALLBACK", {})
    return root


def _reload(monkeypatch):
    monkeypatch.setattr(backends, "_MODULES", {})
    monkeypatch.setattr(backends, "_LOADED", {})


def test_cache_directory_is_private(fresh_cache):
    k = symjac.compile(lambda x: np.cos(x), backend="numpy")
    k(np.ones((1, 2)))
    assert k.path.parent == fresh_cache
    assert stat.S_IMODE(os.stat(fresh_cache).st_mode) == 0o700


def test_planted_bytecode_is_never_run(fresh_cache, monkeypatch, tmp_path):
    import importlib.util
    import py_compile

    f = lambda x: np.cos(x)  # noqa: E731
    X = np.full((1, 2), 0.5)
    k = symjac.compile(f, backend="numpy")
    k(X)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(f"import numpy as np\nopen({str(marker)!r}, 'w').close()\n"
                    "def kernel(start, stop, x0, out0):\n    out0[start:stop] = np.sin(x0[start:stop])\n")
    pyc = importlib.util.cache_from_source(str(k.path))
    os.makedirs(os.path.dirname(pyc), exist_ok=True)
    py_compile.compile(str(evil), cfile=pyc, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    _reload(monkeypatch)
    k2 = symjac.compile(f, backend="numpy")
    np.testing.assert_allclose(k2(X), np.cos(X))
    assert not marker.exists()
    assert "np.cos" in k2.source


@pytest.mark.parametrize("mode", [0o777, 0o702])
def test_cache_writable_by_others_is_refused(fresh_cache, mode):
    fresh_cache.mkdir()
    os.chmod(fresh_cache, mode)
    with pytest.raises(backends.CacheDirectoryError, match=r"writable by other users.*SYMJAC_CACHE_DIR"):
        symjac.compile(lambda x: x * 2.0, backend="numpy")(np.ones((1, 2)))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chgrp to a shared group needs root")
def test_cache_writable_by_a_shared_group_is_refused(fresh_cache):
    fresh_cache.mkdir()
    os.chown(fresh_cache, -1, 65534)  # a group that is not the user's own
    os.chmod(fresh_cache, 0o770)
    with pytest.raises(backends.CacheDirectoryError, match="writable by its group"):
        symjac.compile(lambda x: x * 2.0, backend="numpy")(np.ones((1, 2)))


def test_cache_under_a_parent_others_can_write_is_refused(tmp_path, monkeypatch, fresh_cache):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone could rename the cache away and plant another
    monkeypatch.setenv("SYMJAC_CACHE_DIR", str(shared / "cache"))
    with pytest.raises(backends.CacheDirectoryError, match="its parent .* is writable by other users"):
        symjac.compile(lambda x: x * 2.0, backend="numpy")(np.ones((1, 2)))
    os.chmod(shared, 0o1777)  # sticky, as /tmp: fine
    np.testing.assert_array_equal(symjac.compile(lambda x: x * 3.0, backend="numpy")(np.ones((1, 2))), 3.0)


def test_numba_cache_dir_is_held_to_the_same_rule(fresh_cache, monkeypatch, tmp_path):
    nbc = tmp_path / "nbc"
    nbc.mkdir()
    os.chmod(nbc, 0o777)
    import numba.core.config

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(nbc))
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(nbc))  # read when numba was imported
    with pytest.raises(backends.CacheDirectoryError, match="NUMBA_CACHE_DIR"):
        symjac.compile(lambda x: np.sin(x) * 5.0, backend="numba")(np.ones((1, 2)))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_cache_owned_by_another_user_is_refused(fresh_cache):
    fresh_cache.mkdir(mode=0o700)
    os.chown(fresh_cache, 65534, 65534)
    with pytest.raises(backends.CacheDirectoryError, match="owned by another user"):
        symjac.compile(lambda x: x * 2.0, backend="numpy")(np.ones((1, 2)))


def test_damaged_kernel_file_is_rebuilt(fresh_cache, monkeypatch):
    f = lambda x: np.exp(x) * 3.0  # noqa: E731
    X = np.full((2, 2), 0.25)
    k = symjac.compile(f, backend="numpy")
    k(X)
    path = k.path
    path.write_bytes(path.read_bytes() + b"\xff\xfe garbage")
    _reload(monkeypatch)
    k2 = symjac.compile(f, backend="numpy")
    np.testing.assert_allclose(k2(X), f(X))
    assert k2.path.read_text() == k2.source


@pytest.mark.parametrize("numba_cache_dir", [False, True])
def test_damaged_numba_cache_is_rebuilt(fresh_cache, monkeypatch, tmp_path, numba_cache_dir):
    import numba.core.config

    where = fresh_cache / "__pycache__"
    if numba_cache_dir:  # Numba's cache elsewhere: found there too
        where = tmp_path / "nbc"
        monkeypatch.setattr(numba.core.config, "CACHE_DIR", str(where))
    f = lambda x: np.sin(x) * x[0] + float(numba_cache_dir)  # noqa: E731
    X = np.linspace(0.1, 0.9, 6).reshape(3, 2)
    k = symjac.compile(f, backend="numba")
    expected = k(X)
    index = list(where.rglob(f"{k.path.stem}.*.nbi"))
    assert index, "numba wrote no cache index"
    for p in index:
        p.write_bytes(p.read_bytes()[:20])  # truncated pickle
    _reload(monkeypatch)
    k2 = symjac.compile(f, backend="numba")
    with pytest.warns(RuntimeWarning, match="damaged"):
        np.testing.assert_array_equal(k2(X), expected)
    np.testing.assert_array_equal(k2(X), expected)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_unusable_cache_directory_falls_back_with_one_warning(tmp_path, monkeypatch, backend):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SYMJAC_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(backends, "_MODULES", {})
    monkeypatch.setattr(backends, "_LOADED", {})
    monkeypatch.setattr(backends, "_FALLBACK", {})
    X = np.full((2, 2), 0.5)
    with pytest.warns(RuntimeWarning, match="SYMJAC_CACHE_DIR") as record:
        k = symjac.compile(lambda x: np.tan(x), backend=backend)
        np.testing.assert_allclose(k(X), np.tan(X))
        k2 = symjac.compile(lambda x: np.tan(x) + 1.0, backend=backend)
        np.testing.assert_allclose(k2(X), np.tan(X) + 1.0)
    assert sum("SYMJAC_CACHE_DIR" in str(w.message) for w in record) == 1
    assert [w.filename for w in record if "SYMJAC_CACHE_DIR" in str(w.message)] == [__file__]  # the user's line
    if backend == "numpy":
        assert k.path is None  # in memory
    else:
        assert k.path.exists() and blocker not in k.path.parents
        assert stat.S_IMODE(os.stat(k.path.parent).st_mode) == 0o700
