"""backend="cuda" against the CPU backends and the oracles, on small batches.

`tests/test_cuda.py` runs this file in a pytest process of its own with
``NUMBA_ENABLE_CUDASIM=1`` (the flag must be set before Numba is imported);
on a machine with a GPU, ``pytest tests/cuda`` runs it there.  Elsewhere
(the main test process) it is skipped.
Scalar programs (the whole op table as one fused model, forward and reverse
mode, and a kernel long enough to be split into parts), sparse Jacobians,
tensor programs (an MLP's Jacobian, the forward Laplacian), dlfeval's batch
sums (deterministic), float32, and device arrays in and out.
"""

import functools

import numpy as np
import pytest

import symjac
from codegen.cuda import NoGpuError, cuda_ready
from optable import OPS, TENSOR, fused, layout, sample


def _runnable():
    try:
        cuda_ready()
    except NoGpuError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _runnable(), reason="no GPU, and not on the simulator (NUMBA_ENABLE_CUDASIM=1)")

B = 5
X = sample(np.random.default_rng(42), B)
OFFSETS, N_IN = layout()
rng = np.random.default_rng(0)
W1, b1, W2 = rng.standard_normal((16, 2)), rng.standard_normal(16), rng.standard_normal((1, 16))


def cuda():
    from numba import cuda

    return cuda


@functools.cache
def table(backend, mode, run):
    with symjac.tensor_policy(**({"min_array": None} if run == "scalar" else TENSOR)):
        return symjac.jacobian(fused, mode=mode, backend=backend)(X)


def _simulating():
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@pytest.mark.parametrize("run", ["scalar", "tensor"])
@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_op_table_matches_numpy_and_complex_step(mode, run):
    if run == "tensor" and not _simulating():
        pytest.skip("the op table's tensor run is a 44,000-statement kernel: minutes and tens of GB for NVVM "
                    "(the simulator runs it as Python)")
    got, want = table("cuda", mode, run), table("numpy", "fwd", "scalar")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    h = 1e-30  # complex step, op by op (rows whose NumPy function is complex-analytic)
    sizes = [np.size(fn(X[0, o: o + k])) for (_, fn, k, *_), o in zip(OPS, OFFSETS)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for i, ((name, fn, k, lo, hi, analytic), o) in enumerate(zip(OPS, OFFSETS)):
        if not analytic:
            continue
        for j in range(k):
            e = np.zeros(k, complex)
            e[j] = h * 1j
            cs = np.stack([np.ravel(fn(X[b, o: o + k] + e)).imag / h for b in range(B)])
            np.testing.assert_allclose(got[:, starts[i]:starts[i + 1], o + j], cs, rtol=1e-12, atol=1e-13,
                                       err_msg=name)


def test_values_match_numpy():
    got = symjac.compile(fused, backend="cuda")(X)
    np.testing.assert_allclose(got, np.stack([fused(x) for x in X]), rtol=1e-13, atol=1e-14)


def test_long_kernel_in_parts_float32():
    def chain(x):
        y = x[0]
        for i in range(400):
            y = np.sin(y) * 0.5 + x[i % 3] * (0.1 + i * 1e-3)
        return y

    X3 = rng.uniform(-1, 1, (6, 3))
    J = symjac.jacobian(chain, backend="cuda")
    got = J(X3)
    assert "def _part1(" in J.kernel_for(X3).source  # split into parts: scratch in local arrays
    want = symjac.jacobian(chain, backend="numpy")(X3)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got32 = J(X3.astype(np.float32))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, want, rtol=2e-4, atol=1e-5)


def test_sparse_jacobian_on_host_and_device():
    def f(x):
        return np.concatenate([x[:1] ** 2, np.sin(x[1:] * x[:-1]), [np.cbrt(x[0]) + np.sinc(x[2])]])

    Xs = rng.uniform(0.2, 2.0, (7, 5))
    want = symjac.jacobian(f, sparse=True, backend="numpy")(Xs)
    J = symjac.jacobian(f, sparse=True, backend="cuda")
    got = J(Xs)
    assert isinstance(got.values, np.ndarray)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-13)
    assert (got.rows == want.rows).all() and (got.cols == want.cols).all()
    dev = J(cuda().to_device(Xs))
    assert not isinstance(dev.values, np.ndarray)  # values stay on the device
    np.testing.assert_allclose(dev.values.copy_to_host(), want.values, rtol=1e-13)


def mlp(x):
    return (W2 @ np.tanh(W1 @ x + b1))[0]


def test_tensor_program_jacobian_and_out_buffers():
    Xm = rng.standard_normal((9, 2))
    want = symjac.jacobian(mlp, backend="numpy")(Xm)
    J = symjac.jacobian(mlp, backend="cuda")
    np.testing.assert_allclose(J(Xm), want, rtol=1e-13)
    assert J.kernel_for(Xm).program.has_tensors()
    out = np.full((9, 2), np.nan)
    J(Xm, out=out, start=2, stop=5)  # only rows [2, 5) are written
    np.testing.assert_allclose(out[2:5], want[2:5], rtol=1e-13)
    assert np.isnan(out[:2]).all() and np.isnan(out[5:]).all()
    dout = cuda().device_array((9, 2))
    assert J(cuda().to_device(Xm), out=dout) is dout
    np.testing.assert_allclose(dout.copy_to_host(), want, rtol=1e-13)


def test_forward_laplacian_float32_and_float64():
    def pinn(X):
        U = W2 @ np.tanh(W1 @ X + b1[:, None])
        return U, symjac.dllaplacian(U, X, 0)

    Xp = rng.standard_normal((2, 11))
    want = symjac.dlfeval(pinn, Xp, batch_axis=-1, backend="numpy")
    got = symjac.dlfeval(pinn, Xp, batch_axis=-1, backend="cuda")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    got32 = symjac.dlfeval(pinn, Xp.astype(np.float32), batch_axis=-1, backend="cuda")
    for g, w in zip(got32, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_dlfeval_batch_sums_are_deterministic():
    def loss(X, W1, b1, W2):
        L = np.mean((W2 @ np.tanh(W1 @ X + b1[:, None])) ** 2)
        return L, symjac.dlgradient(L, W1, b1, W2)

    Xl = rng.standard_normal((2, 19))  # three blocks of the simulator's 8 threads
    args = (Xl, W1[:5], b1[:5], W2[:, :5])
    want = symjac.dlfeval(loss, *args, batch_axis=(-1, None, None, None), backend="numpy")
    first = symjac.dlfeval(loss, *args, batch_axis=(-1, None, None, None), backend="cuda")
    again = symjac.dlfeval(loss, *args, batch_axis=(-1, None, None, None), backend="cuda")
    np.testing.assert_allclose(first[0], want[0], rtol=1e-13)
    for g, w, a in zip(first[1], want[1], again[1]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
        assert np.array_equal(g, a)  # the same bits for the same launch


def test_device_arguments_keep_results_on_the_device():
    def f(x, k):
        return np.exp(-k[0] * x) * np.mod(x, 0.7) + np.logaddexp(x, k[1])

    Xd = rng.uniform(0.1, 2.0, (8, 3))
    k = np.array([0.5, -0.25])
    J = symjac.jacobian(f, in_axes=(0, None), backend="cuda")
    want = symjac.jacobian(f, in_axes=(0, None), backend="numpy")(Xd, k)
    got = J(cuda().to_device(Xd), k)  # a host weight beside a device batch: copied there
    assert not isinstance(got, np.ndarray)
    np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-13)


def test_host_slices_move_only_their_rows_and_dlfeval_refuses_gpu_arrays():
    Xm = rng.standard_normal((30, 2))
    J = symjac.jacobian(mlp, backend="cuda")
    want = J(Xm)
    out = np.full((30, 2), np.nan)
    for lo in range(0, 30, 7):  # chunks: each call copies its own rows only
        J(Xm, out=out, start=lo, stop=min(30, lo + 7))
    np.testing.assert_allclose(out, want, rtol=1e-15)
    with pytest.raises(TypeError, match="dlfeval: argument 0 is a GPU array"):
        symjac.dlfeval(lambda X: X * 2, cuda().to_device(np.ones((2, 3))), backend="cuda")


def test_device_arrays_need_the_batch_axis_first_and_the_right_dtype():
    J = symjac.jacobian(lambda x: x ** 2, in_axes=1, backend="cuda")
    with pytest.raises(ValueError, match="batch on their first axis"):
        J(cuda().to_device(np.ones((3, 4))))
    J2 = symjac.jacobian(lambda x, y: x * y, in_axes=(0, None), backend="cuda")
    with pytest.raises(TypeError, match="argument 0 .*GPU array of dtype float32.*float64"):
        J2(cuda().to_device(np.ones((4, 3), np.float32)), np.ones(3))  # float64 y: the call computes in float64
    J0 = symjac.jacobian(lambda x: x ** 2, backend="cuda")
    with pytest.raises(ValueError, match=r"out\[0\] must be a C-contiguous GPU array of shape \(4, 3, 3\)"):
        J0(cuda().to_device(np.ones((4, 3), np.float32)), out=cuda().device_array((4, 3, 3)))


def test_exported_cuda_module_runs_without_symjac(tmp_path):
    import json
    import os
    import subprocess
    import sys

    Xm = rng.standard_normal((9, 2))
    J = symjac.jacobian(mlp, backend="cuda")
    want = J(Xm)
    path = J.export(tmp_path / "mlp_cuda.py", Xm)

    def loss(X, W1, b1, W2):
        L = np.mean((W2 @ np.tanh(W1 @ X + b1[:, None])) ** 2) + 0.1 * np.sum(b1 ** 2)
        return L, symjac.dlgradient(L, W1, b1)

    args = (rng.standard_normal((2, 11)), W1[:4], b1[:4], W2[:, :4])
    want_loss = symjac.dlfeval(loss, *args, batch_axis=(-1, None, None, None), backend="cuda")
    dl_path = symjac.export_dlfeval(tmp_path / "loss_cuda.py", loss, *args, batch_axis=(-1, None, None, None),
                                    backend="cuda")
    np.savez(tmp_path / "in.npz", Xm, *args)
    script = f"""
import importlib.util, sys, json
sys.modules["symjac"] = None
sys.modules["codegen"] = None
import numpy as np
a = np.load({str(tmp_path / "in.npz")!r})
a = [a[f"arr_{{i}}"] for i in range(len(a.files))]
res = {{}}
for name, path in (("mlp", {str(path)!r}), ("loss", {str(dl_path)!r})):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.evaluate(a[0]) if name == "mlp" else mod.evaluate(*a[1:])
    res[name] = np.asarray(out).tolist() if name == "mlp" else [np.asarray(out[0]).tolist(), [np.asarray(g).tolist() for g in out[1]]]
print("RES" + json.dumps(res))
"""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.split("RES", 1)[1])
    np.testing.assert_allclose(np.array(res["mlp"]), want, rtol=1e-13)
    np.testing.assert_allclose(res["loss"][0], want_loss[0], rtol=1e-13)
    for g, w in zip(res["loss"][1], want_loss[1]):
        np.testing.assert_allclose(np.array(g), w, rtol=1e-12, atol=1e-15)


def test_selection_grids_and_scipy_routes_match_numpy():
    """np.sort, select, nan_to_num, gradient, rot90, linspace and a routed scipy.stats density (issue 15)."""
    import scipy.stats

    def f(x):
        return np.concatenate([np.sort(x), np.select([x > 0.5], [x ** 2], x), np.nan_to_num(x * 3.0),
                               np.gradient(x ** 2), np.rot90(x[:4].reshape(2, 2)).ravel(),
                               np.linspace(x[0], x[1], 3), scipy.stats.norm.logpdf(x, 0.5, 2.0)])

    x = np.random.default_rng(5).uniform(-2, 2, size=(3, 5))
    x[0, 1], x[1, 2] = np.inf, np.nan
    want = np.stack([f(r) for r in x])
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(symjac.compile(f, backend="cuda")(x), want, rtol=1e-13)
        for mode in ("fwd", "rev"):
            np.testing.assert_allclose(symjac.jacobian(f, mode=mode, backend="cuda")(x),  # 0 * inf: NaN in one mode
                                       symjac.jacobian(f, mode=mode, backend="numpy")(x), rtol=1e-13, atol=1e-14)
    big = symjac.compile(lambda x: np.nan_to_num(x * 2.0), backend="cuda")(np.array([[np.inf, -np.inf]], np.float32))
    np.testing.assert_array_equal(big, [[np.finfo(np.float32).max, -np.finfo(np.float32).max]])
