"""Printers turn a `Program` into Python source, one statement per line.

`Printer` holds what all targets share; a target is a subclass that changes
only what differs: `NumPyPrinter` (vectorized over the batch slice),
and `NumbaPrinter` (a scalar loop over samples under ``numba.njit``, also
used by the ``numba-parallel`` backend, which threads it over the batch).  Per-op output comes
from a ``_print_<op>`` method when there is one, else from the
``functions`` table; an op with neither raises `PrinterError` naming it.
Names in the output are systematic (``x0`` inputs, ``out0`` outputs, ``v12``
values, ``c3`` constants); nothing a user typed reaches the source.
"""

from __future__ import annotations

import math
import re

from codegen.program import TENSOR_OPS, Program

__all__ = ["Printer", "NumPyPrinter", "NumbaPrinter", "PrinterError", "PRINTERS", "safe_identifier"]


class PrinterError(NotImplementedError):
    """The printer has no rule for an op."""


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "lt": "<", "le": "<=", "gt": ">",
          "ge": ">=", "eq": "==", "ne": "!="}

_NUMPY_FUNCTIONS = {
    "abs": "np.abs", "sign": "np.sign", "sqrt": "np.sqrt", "cbrt": "np.cbrt", "exp": "np.exp",
    "exp2": "np.exp2", "expm1": "np.expm1", "log": "np.log", "log2": "np.log2",
    "log10": "np.log10", "log1p": "np.log1p", "sin": "np.sin", "cos": "np.cos", "tan": "np.tan",
    "asin": "np.arcsin", "acos": "np.arccos", "atan": "np.arctan", "sinh": "np.sinh",
    "cosh": "np.cosh", "tanh": "np.tanh", "asinh": "np.arcsinh", "acosh": "np.arccosh",
    "atanh": "np.arctanh", "atan2": "np.arctan2", "hypot": "np.hypot", "max": "np.maximum",
    "min": "np.minimum", "erf": "_erf", "erfc": "_erfc",
}


def _size(shape):
    n = 1
    for d in shape:
        n *= d
    return n


NUMPY_TENSOR_HELPERS = """
def _pack(lead, shape, items):
    # items: {flat index: value}; entries not given are zero
    n = 1
    for d in shape:
        n *= d
    out = np.zeros(lead + (n,), dtype=_T)
    for j, v in items.items():
        out[..., j] = v
    return out.reshape(lead + shape)


def _windows(x, kh, kw, stride, pads, ho, wo):
    # x: (..., H, W, C) zero-padded; yields (dy, dx, view (..., ho, wo, C))
    pad = [(0, 0)] * (x.ndim - 3) + [tuple(pads[0]), tuple(pads[1]), (0, 0)]
    xp = np.pad(x, pad)
    for dy in range(kh):
        for dx in range(kw):
            yield dy, dx, xp[..., dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride, :]


def _conv2d(x, w, bx, bw, attr):
    stride, pads = attr
    kh, kw = w.shape[-4], w.shape[-3]
    H, W = x.shape[-3], x.shape[-2]
    ho = (H + pads[0][0] + pads[0][1] - kh) // stride + 1
    wo = (W + pads[1][0] + pads[1][1] - kw) // stride + 1
    out = 0
    for dy, dx, v in _windows(x, kh, kw, stride, pads, ho, wo):
        out = out + np.einsum("...hwi,...io->...hwo", v, w[..., dy, dx, :, :], optimize=True)
    return out


def _conv2d_bx(g, w, bg, bw, attr):
    stride, pads, (H, W) = attr
    kh, kw = w.shape[-4], w.shape[-3]
    ho, wo = g.shape[-3], g.shape[-2]
    lead = np.broadcast_shapes(g.shape[:-3], w.shape[:-4])
    xp = np.zeros(lead + (H + pads[0][0] + pads[0][1], W + pads[1][0] + pads[1][1], w.shape[-2]), dtype=_T)
    for dy in range(kh):
        for dx in range(kw):
            xp[..., dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride, :] += \\
                np.einsum("...hwo,...io->...hwi", g, w[..., dy, dx, :, :], optimize=True)
    return xp[..., pads[0][0]: pads[0][0] + H, pads[1][0]: pads[1][0] + W, :]


def _conv2d_bw(x, g, bx, bg, attr):
    stride, pads, (kh, kw) = attr
    ho, wo = g.shape[-3], g.shape[-2]
    parts = []
    for dy, dx, v in _windows(x, kh, kw, stride, pads, ho, wo):
        parts.append(np.einsum("...hwi,...hwo->...io", v, g, optimize=True))
    out = np.stack(parts, axis=-3)
    return out.reshape(out.shape[:-3] + (kh, kw) + out.shape[-2:])
"""


def safe_identifier(text, prefix="kernel"):
    """An ASCII identifier made from ``text``; anything else becomes ``_``."""
    core = re.sub(r"[^0-9A-Za-z_]", "_", str(text))[:40]
    return f"{prefix}_{core}" if core else prefix


def float_literal(value):
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))


class Printer:
    """Shared machinery: constants, statements, the known-function table."""

    functions = dict(_NUMPY_FUNCTIONS)
    max_unrolled_power = 4

    def __init__(self, dtype="float64"):
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        self.dtype = dtype
        self.imports = {"import numpy as np"}
        self.consts = {}
        self.info = {}
        self.tensors = False
        self.program = None

    # -- whole program ----------------------------------------------------
    def begin(self, program: Program):
        """Check ``program`` and index its statements for the print methods."""
        program.validate()
        self.program = program
        self.info = {s.name: s for s in program.body}
        self.tensors = program.has_tensors()
        self.reduce_outputs = [p.reduce for p in program.outputs]
        self.consts = {s.name: float(s.args[0]) for s in program.body if s.op == "const"}

    def module(self, program, body, preamble=()):
        """The module's text: header, ``preamble`` lines, then the kernel function."""
        name = safe_identifier(program.title)
        params = [f"x{k}" for k in range(len(program.inputs))] + [f"out{k}" for k in range(len(program.outputs))]
        lines = self.header(program) + [
            *preamble,
            *self.decorator(),
            f"def {name}(start, stop, {', '.join(params)}):",
            *body,
            "    return None",
            "",
            f"kernel = {name}",
            "",
        ]
        return "\n".join(lines)

    def doprint(self, program: Program) -> str:
        self.begin(program)
        consts = [f"    {s.name} = _T({float_literal(s.args[0])})" for s in program.body if s.op == "const"]
        body = [self.print_stmt(s, program) for s in program.body if s.op != "const"]
        zero = [self.print_zero(k) for k in sorted(program.zero_fill)]
        stores = [self.print_accumulate(k, i, v) if program.outputs[k].reduce else self.print_store(k, i, v)
                  for k, i, v in program.stores]
        stores += [self.print_block_store(*b) for b in program.block_stores]
        return self.module(program, [*consts, *self.loop_open(program),
                                     *[self.indent + ln for ln in (zero + body + stores or ["pass"])]])

    indent = "        "  # body lines sit inside the block that loop_open() opens

    def header(self, program):
        stats = f"{len(program.body)} statements, {len(program.stores)} stores"
        return [
            f"# Generated by symjac ({type(self).__name__}, {self.dtype}): {stats}.",
            "# Standalone: needs only the imports below.",
            *sorted(self.imports | self.extra_imports()),
            "",
            f"_T = np.{self.dtype}",
            "",
        ] + self.helpers()

    def extra_imports(self):
        return set()

    def helpers(self):
        return []

    def decorator(self):
        return []

    def loop_open(self, program):
        return []

    # -- statements ---------------------------------------------------------
    def print_stmt(self, s, program):
        if s.op == "load":
            return f"{s.name} = {self.print_load(s.args[0], s.args[1], program.inputs[s.args[0]].batched)}"
        if s.op in TENSOR_OPS:
            return f"{s.name} = {getattr(self, '_tensor_' + s.op)(s)}"
        if s.shape:
            return f"{s.name} = {self.print_op(s.op, tuple(self.map_arg(a, s) for a in s.args))}"
        return f"{s.name} = {self.print_op(s.op, s.args)}"

    def map_arg(self, name, stmt):
        return name

    def print_op(self, op, args):
        method = getattr(self, f"_print_{op}", None)
        if method is not None:
            return method(*args)
        if op in _INFIX:
            return f"{args[0]} {_INFIX[op]} {args[1]}"
        fn = self.functions.get(op)
        if fn is None:
            raise PrinterError(f"{type(self).__name__} cannot print op {op!r}")
        return f"{fn}({', '.join(args)})"

    def is_plus_zero(self, name):
        v = self.consts.get(name)
        return v is not None and v == 0.0 and math.copysign(1.0, v) > 0

    def _print_neg(self, a):
        return f"-{a}"

    def _print_stop(self, a):
        return a

    def _print_expit(self, a):
        return f"_T(1.0) / (_T(1.0) + np.exp(-{a}))"

    def _print_pow(self, a, b):
        n = self.consts.get(b)
        if n is not None and n == int(n) and 1 <= n <= self.max_unrolled_power:
            # positive powers only: 1/(x*x) would overflow where pow(x, -2) is subnormal
            return " * ".join([a] * int(n))
        return f"{a} ** {b}"

    def _print_where(self, c, a, b):
        return f"np.where({c}, {a}, {b})"

    def _print_and(self, a, b):
        return f"np.logical_and({a}, {b})"

    def _print_or(self, a, b):
        return f"np.logical_or({a}, {b})"

    def _print_not(self, a):
        return f"np.logical_not({a})"


class NumPyPrinter(Printer):
    """Vectorized NumPy: each value is an array over the batch slice."""

    def helpers(self):
        lines = [
            "try:",
            "    from scipy.special import erf as _erf, erfc as _erfc",
            "except ImportError:  # no SciPy: elementwise math.erf",
            "    import math",
            "    _erf = np.vectorize(math.erf, otypes=[_T])",
            "    _erfc = np.vectorize(math.erfc, otypes=[_T])",
            "",
        ]
        return lines + (NUMPY_TENSOR_HELPERS.splitlines() if self.tensors else [])

    def print_load(self, k, i, batched):
        return f"x{k}[start:stop, {i}]" if batched else f"x{k}[{i}]"

    def print_store(self, k, i, v):
        return f"out{k}[start:stop, {i}] = {v}"

    def print_zero(self, k):
        return f"out{k}[start:stop] = 0"

    def print_accumulate(self, k, i, v):
        # a value that does not depend on batched data is a scalar: count it once per sample
        return f"out{k}[{i}] += np.sum(np.broadcast_to({v}, (stop - start,)))"

    def print_block_store(self, k, i, t, j0, n):
        if self.reduce_outputs[k]:
            rows = f"{t}.reshape(stop - start, -1)[:, {j0}:{j0 + n}]" if self.info[t].batched else \
                f"np.broadcast_to(np.reshape({t}, -1)[{j0}:{j0 + n}], (stop - start, {n}))"
            return f"out{k}[{i}:{i + n}] += np.sum({rows}, axis=0)"
        if self.info[t].batched:
            return f"out{k}[start:stop, {i}:{i + n}] = {t}.reshape(stop - start, -1)[:, {j0}:{j0 + n}]"
        return f"out{k}[start:stop, {i}:{i + n}] = np.reshape({t}, -1)[{j0}:{j0 + n}]"

    def loop_open(self, program):
        return ["    with np.errstate(all='ignore'):"]

    # -- tensors: a batched value has the batch slice as its leading axis ------------
    def map_arg(self, name, stmt):
        a = self.info.get(name)
        if a is not None and not a.shape and a.batched and a.op != "const":
            return f"{name}[(slice(None),) + (None,) * {len(stmt.shape)}]"
        return name

    def _tensor_loadblock(self, s):
        k, i0 = s.args
        n = _size(s.shape)
        if s.batched:
            return f"x{k}[start:stop, {i0}:{i0 + n}].reshape((stop - start,) + {s.shape!r})"
        return f"x{k}[{i0}:{i0 + n}].reshape({s.shape!r})"

    def _tensor_pack(self, s):
        lead = "(stop - start,)" if s.batched else "()"
        items = ", ".join(f"{j}: {a}" for j, a in enumerate(s.args) if not self.is_plus_zero(a))
        return f"_pack({lead}, {s.shape!r}, {{{items}}})"

    def _tensor_elem(self, s):
        (t,) = s.args
        if self.info[t].batched:
            return f"{t}.reshape({t}.shape[0], -1)[:, {s.attr}]"
        return f"np.reshape({t}, -1)[{s.attr}]"

    def _tensor_bcast(self, s):
        shape, dims = s.attr
        expanded = tuple(shape[i] if i in dims else 1 for i in range(len(shape)))
        (a,) = s.args
        if s.batched:
            return f"np.broadcast_to(np.reshape({a}, (stop - start,) + {expanded!r}), (stop - start,) + {shape!r})"
        return f"np.broadcast_to(np.reshape({a}, {expanded!r}), {shape!r})"

    def _tensor_tsum(self, s, fn="np.sum"):
        return f"{fn}({s.args[0]}, axis={tuple(a + s.batched for a in s.attr)!r})"

    def _tensor_tmax(self, s):
        return self._tensor_tsum(s, "np.max")

    def _tensor_tmin(self, s):
        return self._tensor_tsum(s, "np.min")

    def _tensor_reshape(self, s):
        lead = "(stop - start,) + " if s.batched else ""
        return f"np.reshape({s.args[0]}, {lead}{s.shape!r})"

    def _tensor_transpose(self, s):
        perm = (0,) + tuple(p + 1 for p in s.attr) if s.batched else s.attr
        return f"np.transpose({s.args[0]}, {perm!r})"

    def _tensor_einsum(self, s):
        (sa, sb), out = s.attr.split("->")[0].split(","), s.attr.split("->")[1]
        ba, bb = (self.info[a].batched for a in s.args)
        spec = f"{'Z' * ba}{sa},{'Z' * bb}{sb}->{'Z' * s.batched}{out}"
        return f"np.einsum({spec!r}, {s.args[0]}, {s.args[1]}, optimize=True)"

    def _conv_call(self, fn, s):
        a, b = s.args
        return f"{fn}({a}, {b}, {self.info[a].batched}, {self.info[b].batched}, {s.attr!r})"

    def _tensor_conv2d(self, s):
        return self._conv_call("_conv2d", s)

    def _tensor_conv2d_bx(self, s):
        return self._conv_call("_conv2d_bx", s)

    def _tensor_conv2d_bw(self, s):
        return self._conv_call("_conv2d_bw", s)


class NumbaPrinter(Printer):
    """A Numba ``njit(nogil=True)`` loop over the samples; values are scalars.

    Each sample binds 1-D row views of its input and output rows once
    (``r0 = x0[b]``, ``o0 = out0[b]``): Numba lowers a 1-D constant index
    in about half the time of a 2-D one, which halves compile time for the
    same machine code.  The same source serves the ``numba-parallel`` backend,
    which runs it on worker threads over slices of the batch (the kernel
    releases the GIL); ``prange`` would double compile time for no speed.
    """

    functions = {**_NUMPY_FUNCTIONS, "erf": "math.erf", "erfc": "math.erfc"}

    def extra_imports(self):
        return {"import math", "import numba"}

    def decorator(self):
        return ["@numba.njit(nogil=True, cache=True, error_model='numpy', boundscheck=False)"]

    def loop_open(self, program):
        rows = [f"        r{k} = x{k}[b]" for k, p in enumerate(program.inputs) if p.batched]
        rows += [f"        o{k} = out{k}[b]" for k, p in enumerate(program.outputs) if not p.reduce]
        return ["    for b in range(start, stop):", *rows]

    def print_load(self, k, i, batched):
        return f"r{k}[{i}]" if batched else f"x{k}[{i}]"

    def print_store(self, k, i, v):
        return f"o{k}[{i}] = {v}"

    def print_zero(self, k):
        return f"o{k}[:] = 0"

    def print_accumulate(self, k, i, v):
        return f"out{k}[{i}] += {v}"

    def _print_where(self, c, a, b):
        return f"{a} if {c} else {b}"

    def _print_and(self, a, b):
        return f"{a} and {b}"

    def _print_or(self, a, b):
        return f"{a} or {b}"

    def _print_not(self, a):
        return f"not {a}"


PRINTERS = {"numpy": NumPyPrinter, "numba": NumbaPrinter, "numba-parallel": NumbaPrinter}
