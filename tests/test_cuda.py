"""The CUDA backend here, without a GPU: its tests on Numba's simulator (in a
process of their own), the error when no GPU is present, and real compiles of
its kernels to PTX for sm_90 by NVVM where the CUDA toolkit is installed
(float32 kernels must hold no double-precision instruction)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

import numba
import numpy as np
import pytest

import symjac
from codegen.backends import _load, print_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cuda_tests_pass_on_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/cuda"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


def _gpu_or_simulator():
    from codegen.cuda import NoGpuError, cuda_ready

    try:
        cuda_ready()
    except NoGpuError:
        return False
    return True


@pytest.mark.skipif(_gpu_or_simulator(), reason="a GPU (or the simulator) is present")
def test_no_gpu_is_a_clear_error_naming_the_simulator():
    from codegen.cuda import NoGpuError

    with pytest.raises(NoGpuError, match="NUMBA_ENABLE_CUDASIM=1"):
        symjac.jacobian(np.sin, backend="cuda")


def test_gpu_arrays_on_a_cpu_backend_are_refused():
    class Fake:  # a GPU array as far as the interface goes
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f8", "data": (0, False), "version": 3}

        def copy_to_host(self):
            raise AssertionError("must not be read")

        def copy_to_device(self, a):
            raise AssertionError

        shape, ndim, dtype = (2, 3), 2, np.dtype("float64")

        def is_c_contiguous(self):
            return True

    J = symjac.jacobian(lambda x: x * 2, backend="numpy")
    with pytest.raises(TypeError, match="argument 0 .*GPU array.*backend='cuda'"):
        J(Fake())


def test_numpy_without_row_stack_gets_it_back_before_numba_cuda():
    from codegen.cuda import cuda_module

    saved = np.__dict__.pop("row_stack", None)
    try:
        cuda_module()
        assert np.row_stack is np.vstack  # numba 0.68.0's CUDA target reads it; NumPy 2.5 removed it
    finally:
        if saved is not None:
            np.row_stack = saved


def _nvvm():
    try:
        from numba.cuda.cudadrv import nvvm

        nvvm.NVVM()
        return True
    except Exception:  # noqa: BLE001  (no CUDA toolkit here)
        return False


@contextlib.contextmanager
def _device(cc):
    """Numba compiles device functions for the current device's compute
    capability: name one, so that NVVM compiles without a GPU."""
    from numba.cuda import dispatcher

    class Device:
        compute_capability = cc

    saved = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: Device
    try:
        yield
    finally:
        dispatcher.get_current_device = saved


def ptx(program, dtype, cc=(9, 0)):
    """The PTX of ``program``'s CUDA kernel (argument types from its parameters)."""
    from numba import cuda

    source = print_program(program, "cuda", dtype)
    module = _load(source, f"ptx_{abs(hash(source)):x}_{dtype}", "cuda")
    hidden = program.hidden_inputs  # the last inputs: the model's constant tensors (index tables among them)
    kinds = [dtype] * (len(program.inputs) - len(hidden)) + [dtype if h.dtype.kind == "f" else h.dtype
                                                              for h in hidden]
    ins = [np.zeros((4, p.size) if p.batched else p.size, t) for p, t in zip(program.inputs, kinds)]
    outs = [np.zeros((4, p.size), dtype) for p in program.outputs]  # a batch sum: its (blocks, n) parts
    sig = tuple(numba.typeof(a) for a in [0, 0, *ins, *outs])
    with _device(cc):
        code, _ = cuda.compile_ptx(module.kernel.py_func, sig, cc=cc)
    _assemble(code, cc)
    return code


def _assemble(code, cc):
    """ptxas on the PTX, where it is installed: an extern that only another
    package links (numba-cuda's numba_attempt_nocopy_reshape) fails here, as it
    would when the kernel is loaded on a GPU."""
    ptxas = shutil.which("ptxas")
    if ptxas is None:
        return
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kernel.ptx")
        with open(path, "w") as fh:
            fh.write(code)
        proc = subprocess.run([ptxas, f"-arch=sm_{cc[0]}{cc[1]}", path, "-o", os.devnull], capture_output=True,
                              text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def assert_single(code):
    """No float32 value is widened to double, and no double is loaded or stored
    (libdevice's sinf reduces huge arguments with an int-to-double product of
    its own: that double never meets a float32 value)."""
    widened = [ln for ln in code.splitlines() if "cvt.f64.f32" in ln or ".global.f64" in ln
               or ".local.f64" in ln or ".shared.f64" in ln or ".param.f64" in ln]
    assert not widened, widened[:5]


rng = np.random.default_rng(1)
W1, b1, W2 = rng.standard_normal((16, 3)), rng.standard_normal(16), rng.standard_normal((1, 16))


def every_cuda_helper(x):
    a, b = x[0], x[1]
    return np.stack([np.mod(a, b), np.fmod(a, b), np.copysign(a, b), np.logaddexp(a, b), np.logaddexp2(a, b),
                     np.cbrt(a), np.exp2(a), np.sinc(a), np.abs(a) * np.sign(b), np.floor(a) + np.ceil(b)
                     + np.trunc(a) + np.rint(b), 1 / (1 + np.exp(-a)), np.arctan2(a, b), np.hypot(a, b),
                     np.tanh(a) * np.sin(b)])


@pytest.mark.skipif(not _nvvm(), reason="no CUDA toolkit (NVVM) on this machine")
def test_cuda_helpers_compile_for_a_gpu_and_float32_stays_single():
    X = rng.uniform(0.5, 2.0, (4, 3))
    with symjac.tensor_policy(min_array=None):
        J = symjac.jacobian(every_cuda_helper, mode="rev", backend="numpy")
        J(X)
    program = J.kernel_for(X).program
    assert ".global.f64" in ptx(program, "float64")
    assert_single(ptx(program, "float32"))


@pytest.mark.skipif(not _nvvm(), reason="no CUDA toolkit (NVVM) on this machine")
def test_a_tensor_program_compiles_and_assembles_for_a_gpu():
    W = rng.standard_normal((8, 8))
    J = symjac.jacobian(lambda x, W: np.tanh(W @ x), in_axes=(0, None), backend="numpy")
    J(np.ones((2, 8)), W)
    program = J.kernel_for(np.ones((2, 8)), W).program
    assert program.has_tensors()
    assert ".global.f64" in ptx(program, "float64")
    assert_single(ptx(program, "float32"))


@pytest.mark.skipif(not _nvvm(), reason="no CUDA toolkit (NVVM) on this machine")
def test_the_whole_op_table_compiles_for_a_gpu_in_float32():
    """Every op of tests/optable.py in one kernel (its scalar run, with the tensor
    ops that stay tensors): printed for CUDA, compiled by NVVM, no widening."""
    from optable import fused, sample

    X = sample(np.random.default_rng(42), 3)
    with symjac.tensor_policy(min_array=None):
        J = symjac.jacobian(fused, mode="rev", backend="numpy")
        J(X)
    program = J.kernel_for(X).program
    assert program.has_tensors()
    assert_single(ptx(program, "float32"))


@pytest.mark.skipif(not _nvvm(), reason="no CUDA toolkit (NVVM) on this machine")
def test_a_batch_sum_kernel_compiles_for_a_gpu():
    from symjac import dl

    def loss(X, W1, b1):
        L = np.mean(np.tanh(W1 @ X + b1[:, None]) ** 2)
        return L, symjac.dlgradient(L, W1, b1)

    X = rng.standard_normal((3, 8)).astype(np.float32)
    symjac.dlfeval(loss, X, W1.astype(np.float32), b1.astype(np.float32), batch_axis=(-1, None, None),
                   backend="numpy")
    kernel = [entry[0] for key, entry in dl._CACHE.items() if entry[0].name == "loss"][-1]
    program = kernel.program
    assert any(p.reduce for p in program.outputs)
    code = ptx(program, "float32")
    assert "bar.sync" in code  # the block's reduction
    assert_single(code)
