"""Printers turn a `Program` into Python source, one statement per line.

`Printer` holds what all targets share; a target is a subclass that changes
only what differs: `NumPyPrinter` (vectorized over the batch slice),
and `NumbaPrinter` (a scalar loop over samples under ``numba.njit``, also
used by the ``numba-parallel`` backend, which threads it over the batch).
An elementwise op prints from a ``_print_<op>`` method of the printer when
there is one (a target-specific form, such as unrolled small powers), else
from the template its registry entry gave the program
(``Program.functions``) for the printer's ``target``; a structural tensor op
prints from its entry in `codegen.structural`.  An op with neither raises
`PrinterError` naming it.  Names in the output are systematic (``x0``
inputs, ``out0`` outputs, ``v12`` values, ``c3`` constants, ``_F`` the
float type); nothing a user typed reaches the source.
"""

from __future__ import annotations

import math

from codegen.program import Program
from codegen.scipy_special import numba_lines, numpy_lines
from codegen.structural import STRUCTURAL, numpy_helpers, size as _size

__all__ = ["Printer", "NumPyPrinter", "NumbaPrinter", "PrinterError", "PRINTERS"]


class PrinterError(NotImplementedError):
    """The printer has no rule for an op."""


def float_literal(value):
    if math.isnan(value):
        return "np.nan"
    if math.isinf(value):
        return "np.inf" if value > 0 else "-np.inf"
    return repr(float(value))


class Printer:
    """Shared machinery: constants, statements, op templates."""

    target = "numpy"  # which of the registry's printing templates this printer uses
    max_unrolled_power = 4

    def __init__(self, dtype="float64"):
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        self.dtype = dtype
        self.imports = {"import numpy as np"}
        self.consts = {}
        self._info = {}
        self.tensors = False
        self.program = None
        self._forms = {}

    # -- whole program ----------------------------------------------------
    def begin(self, program: Program):
        """Check ``program`` and index its statements for the print methods."""
        program.validate()
        self.program = program
        self._forms = {}  # op -> its printing form, looked up once per program
        self._info = None  # name -> statement, made on first use (`info`)
        self.tensors = program.has_tensors()
        self.reduce_outputs = [p.reduce for p in program.outputs]
        self.consts = {s.name: float(s.args[0]) for s in program.body if s.op == "const"}

    @property
    def info(self):
        """The program's statements by name (a long scalar kernel's split never needs all of them)."""
        if self._info is None:
            self._info = {s.name: s for s in self.program.body}
        return self._info

    def module(self, program, body, preamble=(), extra=()):
        """The module's text: header, ``preamble`` lines, then the kernel function
        (parameters: start, stop, inputs, outputs, then ``extra``).  The function
        is always named ``kernel``: the text depends on the model's graph only,
        never on what the user called the function, so a renamed function or a
        lambda finds the kernel already compiled (the cache key is the text)."""
        params = [f"x{k}" for k in range(len(program.inputs))] + [f"out{k}" for k in range(len(program.outputs))]
        params += list(extra)
        lines = self.header(program) + [
            *preamble,
            *self.decorator(),
            f"def kernel(start, stop, {', '.join(params)}):",
            *body,
            "    return None",
            "",
        ]
        return "\n".join(lines)

    splits = True  # long scalar kernels become parts (`_split_module`); a subclass may print otherwise

    def doprint(self, program: Program) -> str:
        self.begin(program)
        stmts = [s for s in program.body if s.op != "const"]
        if self.splits and len(stmts) > SPLIT_STATEMENTS and not program.block_stores:
            return self._split_module(program, stmts)
        consts = [f"    {s.name} = _F({float_literal(s.args[0])})" for s in program.body if s.op == "const"]
        body = [self.print_stmt(s, program) for s in stmts]
        zero = [self.print_zero(k) for k in sorted(program.zero_fill)]
        stores = [self._store_line(program, k, i, v) for k, i, v in program.stores]
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
            f"_F = np.{self.dtype}",
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

    def _store_line(self, program, k, i, v):
        """Output ``k``'s entry ``i`` from value ``v``: stored, or added to a batch sum."""
        return self.print_accumulate(k, i, v) if program.outputs[k].reduce else self.print_store(k, i, v)

    # -- long kernels ---------------------------------------------------------
    def constant_globals(self, program):
        """The program's constants as module-level lines: globals, which Numba
        freezes into the machine code, never parameters of the functions."""
        return ["# constants: module globals (frozen into the machine code by Numba)",
                *[f"{st.name} = _F({float_literal(st.args[0])})" for st in program.body if st.op == "const"]]

    def _split_module(self, program, stmts):
        """The statements in consecutive parts of `PART_STATEMENTS`, each its own
        function called in order (per sample for Numba): Numba's and LLVM's time
        grows faster than linearly with one function's size (5,005 statements:
        9 s; 15,005: 50 s in one function), and CPython compiles a long module
        function by function (`codegen.backends` compiles the text a function
        at a time, so the syntax tree of one part is alive at once). A value
        used in a later part passes through scratch (``scratch``; slots by
        ``scratch_kind``); constants are module globals; each store sits in
        the part that computes its value."""
        groups = [stmts[i:i + PART_STATEMENTS] for i in range(0, len(stmts), PART_STATEMENTS)]
        pos = {st.name: i for i, st in enumerate(stmts)}  # the part of a name: its position // PART_STATEMENTS
        slots, needs = {"sc": {}, "sb": {}}, []  # needs[g]: the names part g reads from earlier parts
        for g, grp in enumerate(groups):
            need, first = set(), g * PART_STATEMENTS
            for st in grp:
                if st.op != "load":
                    for a in st.args:
                        if pos.get(a, first) < first:  # a name from an earlier part (constants have none)
                            need.add(a)
            needs.append(need)
        for name in sorted(set().union(*needs), key=pos.__getitem__):
            kind = self.scratch_kind(stmts[pos[name]])
            slots[kind][name] = len(slots[kind])
        where = {name: (kind, k) for kind, d in slots.items() for name, k in d.items()}
        stores_by_group, main_stores = {}, []
        for k, i, v in program.stores:
            line = self._store_line(program, k, i, v)
            (stores_by_group.setdefault(pos[v] // PART_STATEMENTS, []) if v in pos else main_stores).append(line)
        params = self.part_params(program)
        helpers, calls = [], []
        for g, grp in enumerate(groups):
            lines = [f"    {a} = {where[a][0]}[{where[a][1]}]" for a in sorted(needs[g], key=pos.__getitem__)]
            for st in grp:
                lines.append("    " + self.print_stmt(st, program))
                if st.name in where:
                    lines.append(f"    {where[st.name][0]}[{where[st.name][1]}] = {st.name}")
            lines += ["    " + ln for ln in stores_by_group.get(g, ())]
            # one string a part: the module's text is never a list of all its lines
            helpers.append("\n".join([*self.decorator(), f"def _part{g}({', '.join(params)}):", *lines,
                                       "    return None", ""]))
            calls.append(f"_part{g}({', '.join(params)})")
        zero = [self.print_zero(k) for k in sorted(program.zero_fill)]
        body = [*self.scratch(slots), *self.loop_open(program),
                *[self.indent + ln for ln in zero + calls + main_stores]]
        preamble = [*self.constant_globals(program), "", *helpers]
        return self.module(program, body, preamble)

    # -- statements ---------------------------------------------------------
    def print_stmt(self, s, program):
        if s.op in program.functions:  # elementwise: most statements
            if s.shape:
                return f"{s.name} = {self.print_op(s.op, tuple(self.map_arg(a, s) for a in s.args))}"
            return f"{s.name} = {self.print_op(s.op, s.args)}"
        if s.op == "load":
            return f"{s.name} = {self.print_load(s.args[0], s.args[1], program.inputs[s.args[0]].batched)}"
        if s.op == "loadblock":
            return f"{s.name} = {self.print_loadblock(s)}"
        return f"{s.name} = {self.structural(s).numpy(self, s)}"  # not const: printed apart

    def structural(self, s):
        form = STRUCTURAL.get(s.op)
        if form is None:
            raise PrinterError(f"{type(self).__name__} cannot print the tensor op {s.op!r} (no codegen.structural "
                               "entry)")
        return form

    def map_arg(self, name, stmt):
        return name

    def print_op(self, op, args):
        form = self._forms.get(op)
        if form is None:  # once per op and program
            form = self._forms[op] = self._form(op)
        return form(*args)

    def _form(self, op):
        """``form(*args)`` printing elementwise ``op``: the printer's ``_print_<op>``
        method, else the program's template for this target."""
        method = getattr(self, f"_print_{op}", None)
        if method is not None:
            return method
        template = self.program.template(op, self.target) if self.program is not None else None
        if template is None:
            raise PrinterError(f"{type(self).__name__} cannot print op {op!r}: the program gives no "
                               f"{self.target!r} template for it")
        return template.format

    def is_plus_zero(self, name):
        v = self.consts.get(name)
        return v is not None and v == 0.0 and math.copysign(1.0, v) > 0

    def _print_pow(self, a, b):
        n = self.consts.get(b)
        if n is not None and n == int(n) and 1 <= n <= self.max_unrolled_power:
            # positive powers only: 1/(x*x) would overflow where pow(x, -2) is subnormal
            return " * ".join([a] * int(n))
        return f"{a} ** {b}"


class NumPyPrinter(Printer):
    """Vectorized NumPy: each value is an array over the batch slice."""

    target = "numpy"

    def helpers(self):
        lines = []
        if {"erf", "erfc"} & set(self.program.functions):  # SciPy loads in a tenth of a second: only if used
            lines = [
                "try:",
                "    from scipy.special import erf as _erf, erfc as _erfc",
                "except ImportError:  # no SciPy: elementwise math.erf",
                "    import math",
                "    _erf = np.vectorize(math.erf, otypes=[_F])",
                "    _erfc = np.vectorize(math.erfc, otypes=[_F])",
                "",
            ]
        return lines + numpy_lines(self.program) + numpy_helpers(self.program).splitlines()

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

    def scratch_kind(self, stmt):
        return "sc"  # one list of arrays

    def part_params(self, program):
        return (["start", "stop"] + [f"x{k}" for k in range(len(program.inputs))]
                + [f"out{k}" for k in range(len(program.outputs))] + ["sc"])

    def scratch(self, slots):
        return [f"    sc = [None] * {len(slots['sc'])}"]

    # -- tensors: a batched value has the batch slice as its leading axis ------------
    def map_arg(self, name, stmt):
        a = self.info.get(name)
        if a is not None and not a.shape and a.batched and a.op != "const":
            return f"{name}[(slice(None),) + (None,) * {len(stmt.shape)}]"
        return name

    def print_loadblock(self, s):
        k, i0 = s.args
        n = _size(s.shape)
        if s.batched:
            return f"x{k}[start:stop, {i0}:{i0 + n}].reshape((stop - start,) + {s.shape!r})"
        return f"x{k}[{i0}:{i0 + n}].reshape({s.shape!r})"


class NumbaPrinter(Printer):
    """A Numba ``njit(nogil=True)`` loop over the samples; values are scalars.

    Each sample binds 1-D row views of its input and output rows once
    (``r0 = x0[b]``, ``o0 = out0[b]``): Numba lowers a 1-D constant index
    in about half the time of a 2-D one, which halves compile time for the
    same machine code.  The same source serves the ``numba-parallel`` backend,
    which runs it on worker threads over slices of the batch (the kernel
    releases the GIL); ``prange`` would double compile time for no speed.
    """

    target = "numba"

    def extra_imports(self):
        return {"import math", "import numba"}

    def decorator(self):
        return ["@numba.njit(nogil=True, cache=True, error_model='numpy', boundscheck=False)"]

    def helpers(self):
        return numba_lines(self.program, self.decorator())

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

    # -- long kernels: straight-line code in functions of bounded size -------------
    def scratch_kind(self, stmt):
        return "sb" if stmt.dtype == "bool" else "sc"

    def part_params(self, program):
        params = [f"r{k}" if p.batched else f"x{k}" for k, p in enumerate(program.inputs)]
        return params + [f"out{k}" if p.reduce else f"o{k}" for k, p in enumerate(program.outputs)] + ["sc", "sb"]

    def scratch(self, slots):
        return [f"    sc = np.empty({len(slots['sc'])}, dtype=_F)",
                f"    sb = np.empty({len(slots['sb'])}, dtype=np.bool_)"]


SPLIT_STATEMENTS = 800  # a kernel with more per-sample statements than this is split ...
PART_STATEMENTS = 500  # ... into functions of this many


PRINTERS = {"numpy": NumPyPrinter, "numba": NumbaPrinter, "numba-parallel": NumbaPrinter}
