"""The CUDA backend: the CPU Numba printers' per-sample code as a device
function, called by one global kernel with a grid-stride loop over samples.

A printer here changes only what differs from `NumbaPrinter` and
`TiledNumbaPrinter` (one sample per tile): functions are ``cuda.jit(device=True)``;
scratch and tile buffers are per-thread ``cuda.local.array``s; elementwise ops
print from their registry template for the ``"cuda"`` target (then
``"numba"``, then ``"numpy"``).  The kernel module ends with

- ``kernel(start, stop, *inputs, *outputs)``: thread ``t`` of the grid runs
  samples ``start + t, start + t + G, ...`` (``G`` threads in all).  Shared
  float inputs (weights) that fit in 32 kB are first copied into the block's
  shared memory, and every sample reads them there.  A
  batch-sum output (a ``dlfeval`` loss, a weight gradient) is summed per
  thread in a local array, then per block in shared memory into one row of a
  ``(blocks, n)`` buffer that stands in that output's place;
- ``_sum_parts(parts, out)``: adds the rows of ``parts`` into ``out``, one
  thread per entry, in block order.

Both sums run in a fixed order, so a batch sum is the same bits for the same
launch configuration.  `Launcher` picks that configuration, moves host arrays
to the device and back, and runs the two kernels.  ``float32`` kernels use
single-precision math throughout: every constant is ``_F(...)``, math
functions take and return ``float32`` (libdevice's ``f`` functions).
"""

from __future__ import annotations

import numpy as np

from codegen.printers import NumbaPrinter, PrinterError
from codegen.program import Program
from codegen.scipy_special import cpu_only
from codegen.tiled import TiledNumbaPrinter

__all__ = ["CudaPrinter", "CudaTiledPrinter", "Launcher", "cuda_module", "cuda_ready", "is_device_array",
           "as_device", "NoGpuError"]

_ROW_STACK_SHIM = False


def cuda_module():
    """``numba.cuda``, imported with the shim one known stack needs: numba
    0.68.0's CUDA target reads ``np.row_stack``, which NumPy 2.5 removed
    (``np.vstack`` is the same function)."""
    global _ROW_STACK_SHIM
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack
        _ROW_STACK_SHIM = True
    from numba import cuda

    return cuda


class NoGpuError(RuntimeError):
    """``backend="cuda"`` was asked for where no CUDA GPU (nor the simulator) is available."""


def cuda_ready():
    """Raise `NoGpuError` (naming the simulator option) unless a GPU or
    Numba's CUDA simulator can run kernels."""
    try:
        cuda = cuda_module()
    except ImportError as e:
        raise NoGpuError(f"backend='cuda' needs numba's CUDA target, which failed to import ({e})") from e
    if cuda.is_available():
        return cuda
    raise NoGpuError("backend='cuda' found no CUDA GPU (numba.cuda.is_available() is False: no NVIDIA driver "
                     "or device here). Use backend='numba' or 'numpy' on the CPU, or set "
                     "NUMBA_ENABLE_CUDASIM=1 before numba is imported to run CUDA kernels on Numba's "
                     "simulator (slow; for tests)")


def is_device_array(a):
    """Whether ``a`` lives on a GPU: anything with ``__cuda_array_interface__``
    (Numba device arrays, CuPy arrays, PyTorch CUDA tensors), and the
    simulator's stand-in for a device array."""
    return not isinstance(a, np.ndarray) and (hasattr(a, "__cuda_array_interface__") or hasattr(a, "copy_to_host"))


def as_device(a):
    """A Numba device array viewing the same memory as ``a`` (no copy)."""
    if hasattr(a, "copy_to_host") and hasattr(a, "copy_to_device"):  # Numba's own (or the simulator's)
        return a
    return cuda_module().as_cuda_array(a)


# -- helpers the "cuda" templates of the registry name -----------------------------------------
# libdevice functions by their float64 name (float32: the same with "f"); on the simulator,
# where kernels run as Python and libdevice is a stub, NumPy's function of the same meaning.
_LIBDEVICE = {"_cu_floor": ("floor", "np.floor"), "_cu_ceil": ("ceil", "np.ceil"), "_cu_trunc": ("trunc", "np.trunc"),
              "_cu_rint": ("rint", "np.rint"), "_cu_cbrt": ("cbrt", "np.cbrt"), "_cu_exp2": ("exp2", "np.exp2"),
              "_cu_fmod": ("fmod", "np.fmod"), "_cu_copysign": ("copysign", "np.copysign"),
              # SciPy's special functions that libdevice has (the others are CPU only: `cpu_only`)
              "_cu_erfinv": ("erfinv", "_sp.erfinv"), "_cu_erfcinv": ("erfcinv", "_sp.erfcinv"),
              "_cu_ndtr": ("normcdf", "_sp.ndtr"), "_cu_j0": ("j0", "_sp.j0"), "_cu_j1": ("j1", "_sp.j1"),
              "_cu_y0": ("y0", "_sp.y0"), "_cu_y1": ("y1", "_sp.y1")}

_DEVICE_HELPERS = {
    "_cu_mod": ("_cu_fmod", "_cu_copysign"), "_cu_logaddexp": (), "_cu_logaddexp2": ("_cu_exp2",),
    "_cu_sign": (), "_cu_sinc": (), "_cu_nan_to_num": (), "_cu_psi": ("_cu_floor",),
}

_HELPER_SOURCE = '''
@cuda.jit(device=True)
def _cu_mod(a, b):
    # NumPy's floored remainder: the sign of the divisor; nan for b == 0
    r = _cu_fmod(a, b)
    if r != 0:
        if (b < 0) != (r < 0):
            r += b
    else:
        r = _cu_copysign(_F(0.0), b)
    return r


@cuda.jit(device=True)
def _cu_logaddexp(a, b):
    if a == b:  # also both infinite
        return a + _F(0.6931471805599453)
    d = a - b
    if d > 0:
        return a + math.log1p(math.exp(-d))
    if d <= 0:
        return b + math.log1p(math.exp(d))
    return d  # a nan


@cuda.jit(device=True)
def _cu_logaddexp2(a, b):
    if a == b:
        return a + _F(1.0)
    d = a - b
    if d > 0:
        return a + math.log1p(_cu_exp2(-d)) * _F(1.4426950408889634)
    if d <= 0:
        return b + math.log1p(_cu_exp2(d)) * _F(1.4426950408889634)
    return d


@cuda.jit(device=True)
def _cu_sign(x):
    if x > 0:
        return _F(1.0)
    if x < 0:
        return _F(-1.0)
    return x if x != x else _F(0.0)


@cuda.jit(device=True)
def _cu_sinc(x):
    if x == 0:
        return _F(1.0)
    y = _F(3.141592653589793) * x
    return math.sin(y) / y


@cuda.jit(device=True)
def _cu_psi(x):
    # digamma (libdevice has none): reflection below 0, recurrence up to 10, then the asymptotic series
    if x == 0:
        return _F(-math.inf) if math.copysign(_F(1.0), x) > 0 else _F(math.inf)
    r = _F(0.0)
    if x < 0:
        f = x - _cu_floor(x) if x > -_F(math.inf) else _F(0.0)
        if f == 0:  # a pole, or -inf
            return _F(math.nan)
        if f > 0.5:
            f -= _F(1.0)  # exact; tan has period pi, and pi * f stays away from pi (no cancellation)
        r = -_F(3.141592653589793) / math.tan(_F(3.141592653589793) * f)
        x = _F(1.0) - x
    while x < 10:
        r -= _F(1.0) / x
        x += _F(1.0)
    z = _F(1.0) / (x * x)  # the series' next term is below 5e-17 from x = 10
    s = z * (_F(1.0 / 12) - z * (_F(1.0 / 120) - z * (_F(1.0 / 252) - z * (_F(1.0 / 240) - z * (
        _F(1.0 / 132) - z * (_F(691.0 / 32760) - z * _F(1.0 / 12)))))))
    return r + math.log(x) - _F(0.5) / x - s


_HUGE = _F(np.finfo(_F).max)  # np.nan_to_num's bound for infinities in the kernel's dtype
@cuda.jit(device=True)
def _cu_nan_to_num(x):
    if x != x:
        return _F(0.0)
    if x == _F(math.inf):
        return _HUGE
    if x == -_F(math.inf):
        return -_HUGE
    return x
'''


def _helper_blocks():
    blocks, name = {}, None
    for part in _HELPER_SOURCE.strip().split("\n\n\n"):
        name = part.split("def ", 1)[1].split("(", 1)[0]
        blocks[name] = part
    return blocks


_HELPER_BLOCKS = _helper_blocks()


def helper_lines(program: Program, dtype):
    """Definitions of the ``_cu_*`` helpers that ``program``'s templates name."""
    used = set()
    for forms in program.functions.values():
        text = forms.get("cuda", "")
        used |= {w for w in _LIBDEVICE.keys() | _DEVICE_HELPERS.keys() if w + "(" in text}
    for name in list(used):
        used |= set(_DEVICE_HELPERS.get(name, ()))
    if not used:
        return []
    lines = []
    lib = sorted(used & _LIBDEVICE.keys())
    if lib:
        suffix = "f" if dtype == "float32" else ""
        lines += ["# libdevice on a GPU; NumPy on the simulator (where kernels run as Python)",
                  "if numba.config.ENABLE_CUDASIM:",
                  *(["    from scipy import special as _sp"] if any(_LIBDEVICE[n][1].startswith("_sp.") for n in lib)
                    else []),
                  *[f"    {n} = {_LIBDEVICE[n][1]}" for n in lib],
                  "else:", "    from numba.cuda import libdevice as _ld",
                  *[f"    {n} = _ld.{_LIBDEVICE[n][0]}{suffix}" for n in lib], ""]
    for name in sorted(used & _DEVICE_HELPERS.keys()):
        lines += [*_HELPER_BLOCKS[name].splitlines(), "", ""]
    return lines


BLOCK_MAX = 1024  # threads per block at most (CUDA's limit): the shared reduction buffer's size
SHARED_BYTES = 32 << 10  # shared memory for staged weights (48 kB static per block, 8 kB of it the reduction's)


class _CudaMixin:
    """What a CUDA printer changes in a CPU Numba printer."""

    target = "cuda"

    def extra_imports(self):
        return {"import math", "import numba", "from numba import cuda"}

    def decorator(self):
        return ["@cuda.jit(device=True)"]

    def helpers(self):
        return []  # not the CPU printer's: SciPy's C bindings do not run on a GPU (`cuda_helpers` refuses them)

    def cuda_helpers(self):
        name = cpu_only(self.program, self.target)
        if name is not None:
            raise PrinterError(f"the cuda backend cannot run scipy.special.{name}: symjac calls SciPy's C code "
                               "for it, which runs on the CPU only (libdevice has no such function); use "
                               "backend='numba' or 'numpy' for this model")
        return helper_lines(self.program, self.dtype)

    def module(self, program, body, preamble=(), extra=()):
        """The CPU printer's module with its per-sample function renamed ``_body``
        (a device function), then the global kernel and ``_sum_parts``."""
        text = super().module(program, body, preamble, extra)
        head, sep, tail = text.partition("\ndef kernel(start, stop")
        text = head + "\ndef _body(start, stop" + tail
        return text + "\n".join(self.launch_lines(program, extra)) + "\n"

    def launch_lines(self, program, extra):
        ins = [f"x{k}" for k in range(len(program.inputs))]
        outs = [f"out{k}" for k in range(len(program.outputs))]
        reduce = [k for k, p in enumerate(program.outputs) if p.reduce]
        sizes = {k: program.outputs[k].size for k in reduce}
        lines = ["", f"REDUCE = {tuple(reduce)!r}  # outputs summed over the batch: a (blocks, n) buffer each",
                 "", "", "@cuda.jit", f"def kernel(start, stop, {', '.join(ins + outs)}):"]
        call = list(ins)
        staged = self.staged_inputs(program)
        for k in staged:  # weights every sample reads: once per block into shared memory
            n = program.inputs[k].size
            lines += [f"    s{k} = cuda.shared.array({n}, _F)",
                      f"    for i in range(cuda.threadIdx.x, {n}, cuda.blockDim.x):",
                      f"        s{k}[i] = x{k}[i]"]
            call[k] = f"s{k}"
        if staged:
            lines.append("    cuda.syncthreads()")
        for k, o in enumerate(outs):
            if k in sizes:
                lines += [f"    acc{k} = cuda.local.array({max(1, sizes[k])}, _F)",
                          f"    for j in range({sizes[k]}):", f"        acc{k}[j] = 0"]
                call.append(f"acc{k}")
            else:
                call.append(o)
        lines += self.workspace_lines()
        call += list(extra)
        lines += ["    for b in range(start + cuda.grid(1), stop, cuda.gridsize(1)):",
                  f"        _body(b, b + 1, {', '.join(call)})"]
        if reduce:
            lines += [f"    sh = cuda.shared.array({BLOCK_MAX}, _F)",
                      "    tid = cuda.threadIdx.x"]
            for k in reduce:  # a tree over the block (blockDim a power of two), the same order every run
                lines += [f"    for j in range({sizes[k]}):",
                          f"        sh[tid] = acc{k}[j]",
                          "        cuda.syncthreads()",
                          "        h = cuda.blockDim.x // 2",
                          "        while h > 0:",
                          "            if tid < h:",
                          "                sh[tid] += sh[tid + h]",
                          "            cuda.syncthreads()",
                          "            h //= 2",
                          "        if tid == 0:",
                          f"            out{k}[cuda.blockIdx.x, j] = sh[0]",
                          "        cuda.syncthreads()"]
        lines += ["", "", "@cuda.jit", "def _sum_parts(parts, out):",
                  "    j = cuda.grid(1)",
                  "    if j < out.shape[0]:",
                  "        s = out[j]",
                  "        for r in range(parts.shape[0]):",
                  "            s += parts[r, j]",
                  "        out[j] = s"]
        return lines

    def workspace_lines(self):
        return []

    def staged_inputs(self, program):
        """Shared (not batched) float inputs copied into shared memory, largest
        first while they fit in `SHARED_BYTES` (index tables stay in global memory)."""
        hidden = program.hidden_inputs
        first_hidden = len(program.inputs) - len(hidden)
        floats = [k for k, p in enumerate(program.inputs) if not p.batched and p.size > 0
                  and (k < first_hidden or np.asarray(hidden[k - first_hidden]).dtype.kind == "f")]
        itemsize, room, staged = (4 if self.dtype == "float32" else 8), SHARED_BYTES, []
        for k in sorted(floats, key=lambda k: -program.inputs[k].size):
            if program.inputs[k].size * itemsize <= room:
                staged.append(k)
                room -= program.inputs[k].size * itemsize
        return sorted(staged)


class CudaPrinter(_CudaMixin, NumbaPrinter):
    """A scalar program: the `NumbaPrinter` body as a device function."""

    def header(self, program):
        return super().header(program) + self.cuda_helpers()

    def scratch(self, slots):
        return [f"    sc = cuda.local.array({max(1, len(slots['sc']))}, _F)",
                f"    sb = cuda.local.array({max(1, len(slots['sb']))}, np.bool_)"]


class CudaTiledPrinter(_CudaMixin, TiledNumbaPrinter):
    """A tensor program: the `TiledNumbaPrinter` body at one sample per tile,
    its tile buffers carved out of per-thread local arrays (the workspaces)."""

    POOL = False  # each tile buffer a local array of its own (`tile_buffer`)
    HOIST = False  # a thread's slot loop runs once (one sample); Numba-CUDA's typing of the clamps (`max`) failed

    def __init__(self, dtype="float64", tile=None):
        super().__init__(dtype, 1)

    def helpers(self):
        return self.cuda_helpers()

    def _print_tanh(self, a):
        return f"math.tanh({a})"

    def zeros(self, name, size, dt):
        return [f"{name} = cuda.local.array({max(1, size)}, {dt})", f"{name}[:] = 0"]

    def tile_buffer(self, name, ws, offset, size, shape, dt):
        # a local array of its own, in its shape: a reshape of a local slice would call
        # numba_attempt_nocopy_reshape, an extern that only the numba-cuda package links
        return f"{name} = cuda.local.array({shape if shape else max(1, size)}, {dt})"

    def _split_shared(self, parts, later, available):
        # shared values stay in the body: a device function cannot return its local arrays
        return [], [ln for p in parts for ln in p]

    def workspace_lines(self):
        return ["    wsf = cuda.local.array(1, _F)  # unused: each tile buffer is a local array of its own",
                "    wsb = cuda.local.array(1, np.bool_)"]



# -- running --------------------------------------------------------------------------------------
class Launcher:
    """``func(start, stop, *inputs, *outputs)`` for a CUDA kernel module (its
    ``kernel``, ``_sum_parts`` and ``REDUCE``; exported modules carry this class).

    Arrays may be host (NumPy) or device arrays: host inputs are copied to
    the device, host outputs are filled from device buffers after the run
    (copies included in the call's time); device arrays are used in place.
    When every array is on the host, only the rows of the slice
    ``[start, stop)`` travel, so a long batch can run in chunks that fit.
    Outputs in ``module.REDUCE`` are batch sums, added into their buffer as
    the CPU kernels do.  Threads per block: a power of two chosen from the
    kernel's registers per thread on a GPU (`launchable`); blocks:
    enough for one sample per thread, at most `MAX_BLOCKS_PER_SM` per
    multiprocessor (the grid-stride loop covers the rest).
    """

    MAX_BLOCKS_PER_SM = 32

    def __init__(self, kernel, sum_parts, reduce, n_inputs):
        self.kernel, self.sum_parts = kernel, sum_parts  # a module's ``kernel`` and ``_sum_parts``
        self.n_inputs = n_inputs
        self.reduce = tuple(reduce)  # its ``REDUCE``
        self._threads = {}

    def launchable(self, args):
        """(kernel specialized for ``args``' types, threads per block): 256 threads,
        halved while two blocks would not fit in a multiprocessor's 64k registers
        at the kernel's registers per thread."""
        key = tuple((str(getattr(a, "dtype", type(a).__name__)), getattr(a, "ndim", 0)) for a in args)
        found = self._threads.get(key)
        if found is None:
            if _simulating():  # a Python thread per CUDA thread: small blocks
                found = (self.kernel, 8)
            else:
                kernel, threads = self.kernel.specialize(*args), 256
                try:
                    regs = int(kernel.get_regs_per_thread())
                except Exception:  # noqa: BLE001  (a query the driver may not answer: keep the default)
                    regs = 0
                while threads > 32 and regs * threads * 2 > 65536:
                    threads //= 2
                found = (kernel, threads)
            self._threads[key] = found
        return found

    def __call__(self, start, stop, *arrays):
        cuda = cuda_module()
        n = stop - start
        if n <= 0:
            return None
        dev = []
        back = []  # (host array, device array): outputs copied back after the run
        host = all(isinstance(a, np.ndarray) for a in arrays)
        if host:  # only the slice's rows travel: the kernel runs on rows [0, n) of the copies
            arrays = [a[start:stop] if a.ndim == 2 and i - self.n_inputs not in self.reduce else a
                      for i, a in enumerate(arrays)]
            start, stop = 0, n
        for i, a in enumerate(arrays):
            if isinstance(a, np.ndarray):
                # an output written whole is not read: not copied there (other rows keep their values)
                written = i >= self.n_inputs and i - self.n_inputs not in self.reduce and n == a.shape[0]
                d = cuda.device_array(a.shape, a.dtype) if written else cuda.to_device(np.ascontiguousarray(a))
                if i >= self.n_inputs:
                    back.append((a, d))
                dev.append(d)
            else:
                dev.append(as_device(a))
        args = list(dev)
        for k in self.reduce:  # a batch sum's place: (blocks, n) partial sums, one row per block
            out = dev[self.n_inputs + k]
            args[self.n_inputs + k] = cuda.device_array((1, out.shape[0]), dtype=out.dtype)
        kernel, threads = self.launchable([start, stop, *args])
        blocks = max(1, min(-(-n // threads), self.MAX_BLOCKS_PER_SM * _multiprocessors(cuda)))
        parts = {}
        for k in self.reduce:
            out = dev[self.n_inputs + k]
            parts[k] = args[self.n_inputs + k] = cuda.device_array((blocks, out.shape[0]), dtype=out.dtype)
        kernel[blocks, threads](start, stop, *args)
        for k, p in parts.items():
            out = dev[self.n_inputs + k]
            t = 128
            self.sum_parts[max(1, -(-out.shape[0] // t)), t](p, out)
        for h, d in back:
            if h.flags.c_contiguous:
                d.copy_to_host(h)
            else:
                h[...] = d.copy_to_host()
        return None


def _simulating():
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def _multiprocessors(cuda):
    if _simulating():
        return 1
    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # noqa: BLE001
        return 16
