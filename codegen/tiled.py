"""`TiledNumbaPrinter`: Numba kernels for programs with tensor statements.

The batch is walked in tiles of ``T`` samples.  Every batched value keeps the
tile as its last, contiguous axis (a tensor of per-sample shape S is a
``(prod(S), T)`` buffer, a scalar a ``(T,)`` one), so every inner loop runs
over the samples of the tile with a constant trip count (a partial last
tile repeats its last sample: a loop over only the tile's real samples was
measured 3x slower on seedcnn and 15% on pinn): LLVM turns it into SIMD
code, and a dense layer becomes ``out[i, :] += W[i, j] * h[j, :]`` over
the tile, the small matrix product per tile that a framework gets from one
large GEMM.  Values that depend on no batched input (weights and what is
computed from them alone) are computed once, before the tile loop.

Statements are grouped into blocks, each one loop nest:
- a *scalar block* (``for s in range(T)``) holds unrolled scalar statements,
  loads, ``elem`` reads and ``pack`` writes, exactly as in the per-sample
  kernel;
- a *map block* (``for i in range(size): for s in range(T)``) fuses elementwise
  statements on tensors of one size, keeping values used only inside it in
  registers;
- every other tensor op (contraction, convolution, reduction, broadcast,
  transpose) is its own loop nest.
A statement joins the first compatible block after the blocks its arguments
come from, so independent work shares loops.  Kernel size grows with the
number of tensor ops, not with their sizes.

A scatter (scatter-style assignment, ``np.add.at``, the assembly of an
array-level Jacobian) adds its 1-D values inside the map block that computes
them, and its target starts from its base before that block.  A tensor op
written in place into output rows runs one sample at a time, its inner loops
along the row.  With one sample per tile, buffers live in workspaces the
caller keeps between calls (`codegen.backends.Workspaces`).  The
tile comes from the sizes of the buffers (`choose_tile`), or is fixed by the
caller: `symjac.kernel.Kernel` runs a slice of at most a quarter tile of
samples (a SciPy-style call on one state) through a variant with one sample
per tile, compiled when first needed.
"""

from __future__ import annotations

import re

from codegen.printers import NumbaPrinter, PrinterError, float_literal
from codegen.program import Program
from codegen.structural import STRUCTURAL, size as _size

__all__ = ["TiledNumbaPrinter", "choose_tile"]

# One op reads and writes a few buffers at a time: the largest buffer of a tile
# should stay near L2 size (bounding the sum of all buffers instead gives
# small tiles and slow wide layers; see benchmarks/RESULTS.md).
TILE_BYTES = 256 << 10
MIN_TILE, MAX_TILE = 4, 64
# a tensor whose tile would pass this many bytes even at MIN_TILE samples (a 10^5-entry array) gets tiles of one
# sample: its own loops are long enough to vectorize, and a batch of one costs one sample, not MIN_TILE
ONE_SAMPLE_BYTES = 4 << 20


SPLIT_LINES = 300  # a longer loop body is split into functions ...
PART_LINES = 250  # ... of about this many lines (each Numba function has a fixed cost too)
BLOCK_STATEMENTS = 200  # a scalar or map block holds at most this many: a longer one is one long function
_NAME = re.compile(r"\b(?:t\d+|v\d+_?|c\d+|x\d+|out\d+|one|svb?|tpb?|wsf|wsb)\b")
_WORD = re.compile(r"\w+")
_SCRATCH = ("one", "sv", "svb", "tp", "tpb", "wsf", "wsb")


def _groups(parts):
    """``parts`` (lists of lines) in consecutive groups of about ``PART_LINES``
    lines, or None when all of them fit one function (``SPLIT_LINES``)."""
    if sum(len(p) for p in parts) <= SPLIT_LINES:
        return None
    groups, cur = [], []
    for p in parts:
        if cur and sum(len(q) for q in cur) + len(p) > PART_LINES:
            groups.append(cur)
            cur = []
        cur.append(p)
    groups.append(cur)
    return groups


def _name_order(m):
    if m in _SCRATCH:
        return "", _SCRATCH.index(m)
    return m.rstrip("_")[0], int(m.rstrip("_")[1:].lstrip("ut"))


def _alias(s):
    """True for a statement that is (part of) its argument's buffer: a reshape,
    or a view of a contiguous run of flat positions."""
    if s.op == "reshape":
        return True
    if s.op != "view":
        return False
    offset, strides, shape = s.attr
    acc = 1
    for st, d in zip(reversed(strides), reversed(shape)):
        if d != 1 and st != acc:
            return False
        acc *= d
    return True


def _alias_rows(s):
    """The row slice of the argument's buffer an alias is ('' for a reshape)."""
    if s.op == "reshape":
        return ""
    offset, _, shape = s.attr
    return f"[{offset}:{offset + _size(shape)}]"


def _indexed_read(s):
    """For a batched 1-D gather or strided (not contiguous) view, the index
    expression of its source read at map position ``i``; else None."""
    if not s.batched or len(s.shape) != 1:
        return None
    if s.op == "gather":
        return f"{s.args[1]}[i]"
    if s.op == "view" and not _alias(s):
        offset, (stride,), _ = s.attr
        return f"{offset} + i * {stride}" if stride >= 0 else f"{offset} - i * {-stride}"
    return None


_READ = re.compile(r"\b(x\d+|t\d+)\[([^\[\]]*)\]")  # a table's element (inputs, shared values)
_ROW = re.compile(r"\b(tpb?|wsf|wsb|t\d+)\[([^\[\]]*?)(, s| \+ s)\]")  # a tile buffer's element in slot s
_ASSIGN = re.compile(r"^\s*([^=]*?)\s*[-+*/]?=(?!=)")
_FOR = re.compile(r"^(\s*)for ([\w\s,()]+?) in ")
_INLINE = re.compile(r"^\s*(if|elif|else|while|for|with|try|except)\b[^#]*:\s*[^\s#]")
_WORDS = re.compile(r"[A-Za-z_]\w*")


def _targets(line):
    """The names ``line`` sets: each target of an assignment (``a, b[i] = ...``
    sets a and b), a ``for`` loop's variables."""
    m = _FOR.match(line)
    if m is not None:
        return _WORDS.findall(m.group(2))
    m = _ASSIGN.match(line)
    if m is None or re.match(r"\s*(if|elif|while|return)\b", line):
        return []
    depth, cut = 0, [[]]  # the targets: the left side cut at its top-level commas
    for ch in m.group(1):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            cut.append([])
        else:
            cut[-1].append(ch)
    return [w.group(0) for part in cut for w in [_WORDS.search("".join(part))] if w]


def _hoist_slot_loops(lines, tables, first=0):
    """``lines`` with what the tile slot loops (``for s in range(...)``) read
    the same in every slot computed once before them: elements of ``tables``
    (read-only arrays: the inputs, shared values) at indices that do not
    depend on the slot, then the first entry of a buffer's row, clamped at 0.
    Returns (lines, next k): the locals are ``ix<k>`` from ``first`` on, one
    name for one value in a function (Numba would unify an int and a float of
    one name to a float).

    Inside the slot loop those index reads were repeated for every slot (LLVM
    cannot tell that the stores into the tile buffers leave the int tables
    alone), each with Numba's negative-index wraparound; out of it they are
    registers, and a row known not to be negative needs no wraparound: the
    mechanism's Jacobian (gathers and scatters through index tables) took 56
    instead of 86 us a sample.  A read the loop makes only under a condition
    is made before it unconditionally: the printers index tables only at
    positions of their own ranges, valid whatever the condition."""
    out, k, count = [], 0, first
    while k < len(lines):
        m = _FOR.match(lines[k])
        if m is None or m.group(2).strip() != "s":
            out.append(lines[k])
            k += 1
            continue
        pad, j = m.group(1), k + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(pad)):
            j += 1  # the loop's body: its deeper lines (and blank ones) up to the next line at its depth
        body = lines[k + 1:j]
        if any(_INLINE.match(ln) for ln in body):  # a statement after a colon: its targets are not read here
            out += lines[k:j]
            k = j
            continue
        # names the slot loop sets (assigned values, its own loops' variables) vary with s
        varying = {"s"} | {w for ln in body for w in _targets(ln)}
        hoisted = {}

        def fixed(expr):
            return not varying.intersection(_WORDS.findall(expr))

        def local(expr):
            if expr not in hoisted:
                hoisted[expr] = f"ix{count + len(hoisted)}"
            return hoisted[expr]

        def read(mt):
            return local(mt.group(0)) if mt.group(1) in tables and fixed(mt.group(2)) else mt.group(0)

        def row(mr):
            start = mr.group(2)
            if not fixed(start) or not _WORDS.search(start):
                return mr.group(0)  # a constant row
            return f"{mr.group(1)}[{local(f'max({start}, 0)')}{mr.group(3)}]"

        done = None
        while body != done:  # an index read at an index read: the inner one first
            done, body = body, [_READ.sub(read, ln) for ln in body]
        body = [_ROW.sub(row, ln) for ln in body]
        out += [f"{pad}{name} = {expr}" for expr, name in hoisted.items()] + [lines[k]] + body
        count += len(hoisted)
        k = j
    return out, count


def choose_tile(largest_tensor):
    """Samples per tile: up to 64, fewer when one tensor of a tile outgrows L2,
    one for very large tensors (seedcnn's 16x16x64 maps keep 4: tiles of 2
    there measured 15-25% slower)."""
    t = MAX_TILE
    while t > MIN_TILE and largest_tensor * t * 8 > TILE_BYTES:
        t //= 2
    return 1 if largest_tensor * t * 8 > ONE_SAMPLE_BYTES else t


# tanh as expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x, expm1 from a
# degree-13 Taylor polynomial on |r| <= ln(2)/2 and an exact power of two: no
# libm call, so LLVM vectorizes it across the tile (libm's tanh is a scalar
# call; benchmarks/RESULTS.md has its share of the PINN kernel).  At most 3 ulp
# from NumPy's tanh over 1.4 million points from 1e-8 to 30; signed zeros,
# infinities and NaN kept.
TANH_HELPER = """
@numba.njit(inline='always', error_model='numpy', fastmath={'contract'})
def _tanh(x):
    a = abs(x)
    y = 2.0 * a if a < 20.0 else 40.0
    k = np.int64(y * 1.4426950408889634 + 0.5)
    r = (y - k * 0.6931471803691238) - k * 1.9082149292705877e-10
    p = r * (1.0 + r * (0.5 + r * (1.6666666666666666e-01 + r * (4.1666666666666664e-02
        + r * (8.3333333333333332e-03 + r * (1.3888888888888889e-03 + r * (1.9841269841269841e-04
        + r * (2.4801587301587302e-05 + r * (2.7557319223985893e-06 + r * (2.7557319223985888e-07
        + r * (2.5052108385441720e-08 + r * (2.0876756987868100e-09 + r * 1.6059043836821613e-10))))))))))))
    s = np.float64(np.int64(1) << k)
    e = s * p + (s - 1.0)
    t = e / (e + 2.0)
    return t if x > 0.0 else (-t if x < 0.0 else x)
"""


class TiledNumbaPrinter(NumbaPrinter):
    """Numba source for a tensor program, tiled over the batch; ``tile`` fixes
    the samples per tile (default: `choose_tile`)."""

    def __init__(self, dtype="float64", tile=None):
        super().__init__(dtype)
        if tile is not None and (not isinstance(tile, int) or tile < 1):
            raise ValueError(f"tile must be a positive integer or None, got {tile!r}")
        self.fixed_tile = tile
        self.outer_s = False  # True while a tensor op written into output rows is printed inside `for s`

    def helpers(self):
        return TANH_HELPER.splitlines() + [""] + super().helpers()

    def _print_tanh(self, a):
        return f"_tanh({a})"

    # Split into functions, the tile loop's body passes its tile buffers to them: a part took 100
    # of them (the op table's forward Jacobian, 4 parts), and Numba spent about 3 s typing each call
    # and 5 s compiling each part (38 s for that kernel).  There the buffers are rows of one pool
    # per dtype (``tp``, ``tpb``) at constant offsets instead, read as ``tp[base + i * T + s]``, and
    # a part takes the pool.  A kernel of one function keeps a buffer per value: there LLVM sees the
    # allocations and knows they never overlap (views of one workspace made pinn's kernel 2x slower).
    POOL = True
    HOIST = True  # reads the same in every tile slot made once before the slot loop (`_hoist_slot_loops`)

    def doprint(self, program: Program) -> str:
        self.pool = False
        text = self._doprint(program)
        if self.POOL and self.split:
            self.pool = True
            text = self._doprint(program)
        return text

    def _doprint(self, program):
        self.begin(program)
        self.rows = {}
        hoisted = [s for s in program.body if not s.batched]
        batched = [s for s in program.body if s.batched]
        blocks = self._blocks(batched)
        self.fused = {}
        self.in_block = self._in_block_stores(blocks)
        self.buffered = self._buffered(blocks)
        self.direct = self._direct(blocks)
        self.tile = self.fixed_tile or choose_tile(max((_size(self.info[n].shape)
                                                         for n in self.buffered - set(self.direct)), default=1))
        self.fused = self._fusions(blocks)
        if self.fused:  # values added where they are computed need no buffer of their own
            self.buffered = self._buffered(blocks)
        # batched scalars kept between blocks: slots of one scratch array per dtype (`slot`), not an array
        # each: a thousand of them made a thousand allocations, and parts taking hundreds of arrays, which
        # Numba took minutes to compile (a 300-reaction mechanism's Jacobian)
        self.slots, counts = {}, {"sv": 0, "svb": 0}
        for n in sorted(self.buffered, key=lambda n: (n[0], int(n[1:]))):
            st = self.info[n]
            if not st.shape and not _alias(st) and n not in self.direct:
                arr = "svb" if st.dtype == "bool" else "sv"
                self.slots[n] = (arr, counts[arr])
                counts[arr] += 1
        ins = [f"x{k}" for k in range(len(program.inputs))]
        outs = [f"out{k}" for k in range(len(program.outputs))]
        # constants are module globals (frozen into the machine code, never arguments: a thousand of them
        # were parameters of every function); loads and views of inputs stay in the body: in the functions
        # of the shared values they were returned as tuples of hundreds of arrays (10 s of Numba's time each)
        light = [s for s in hoisted if s.op in ("load", "loadblock")]
        shared = [self._hoisted(s) for s in hoisted if s.op not in ("const", "load", "loadblock")]
        # `one` is 1, computed from a value LLVM cannot know (`extent`)
        body = ["    one = 1 if wsf.shape[0] >= 0 else 2", "    # values shared by every sample, computed once"]
        # With one sample per tile, buffers are carved out of two workspaces the caller keeps between calls
        # (floats, booleans): allocated per call, the megabytes of a 10^5-entry model page-faulted on every
        # call once glibc gave them back (twice the 1-D Brusselator's work at N = 10^5).  With several
        # samples per tile, each buffer is its own allocation: LLVM then knows buffers never overlap and
        # vectorizes the short tile loops without run-time overlap checks (views of one workspace made
        # pinn's kernel 2x slower); those buffers are at most a few hundred kB (`choose_tile`).
        used = {"wsf": 0, "wsb": 0}

        def carve(ws, size):  # the offset of ``size`` entries of workspace ``ws``, at 64-byte aligned starts
            o = used[ws]
            used[ws] = o + -(-size // 8) * 8
            return o

        for arr, ws, dt in (("sv", "wsf", "_F"), ("svb", "wsb", "np.bool_")):
            if counts[arr] and self.tile > 1:
                body.append(f"    {arr} = np.empty({counts[arr] * self.tile}, dtype={dt})")
            elif counts[arr]:
                body.append("    " + self.tile_buffer(arr, ws, carve(ws, counts[arr]), counts[arr], None, dt))
        self.rows, pooled = {}, {"tp": 0, "tpb": 0}  # pooled buffers: name -> (pool, first entry)
        for n in sorted(self.buffered, key=lambda n: (n[0], int(n[1:]))):
            st = self.info[n]
            if _alias(st) or n in self.direct or n in self.slots:
                continue
            dt = "np.bool_" if st.dtype == "bool" else "_F"
            if self.pool:
                size = _size(st.shape) if st.shape else 1
                if self.tile > 1:
                    pool = "tpb" if st.dtype == "bool" else "tp"
                    base, pooled[pool] = pooled[pool], pooled[pool] + size * self.tile
                else:
                    pool = "wsb" if st.dtype == "bool" else "wsf"
                    base = carve(pool, size)
                self.rows[n] = (pool, base)
                if st.op == "pack":  # a pack writes only its nonzero entries
                    body.append(f"    {pool}[{base}:{base + size * self.tile}] = 0")
                continue
            shape = f"({_size(st.shape)}, {self.tile})" if st.shape else f"({self.tile},)"
            if self.tile > 1:
                alloc = "np.zeros" if st.op == "pack" else "np.empty"  # a pack writes only its nonzero entries
                body.append(f"    {n} = {alloc}({shape}, dtype={dt})")
                continue
            ws = "wsb" if st.dtype == "bool" else "wsf"
            size = _size(st.shape) if st.shape else 1
            body.append("    " + self.tile_buffer(n, ws, carve(ws, size), size, shape if st.shape else None, dt))
            if st.op == "pack":
                body.append(f"    {n}[...] = 0")
        for pool, size in pooled.items():
            if size:
                body.insert(2, f"    {pool} = np.empty({size}, dtype={'np.bool_' if pool == 'tpb' else '_F'})")
        for s in batched:  # a reshape or a contiguous view is (part of) its source's buffer under another name
            if _alias(s) and s.args[0] in self.rows:
                pool, base = self.rows[s.args[0]]
                self.rows[s.name] = (pool, base + (s.attr[0] * self.tile if s.op == "view" else 0))
            elif _alias(s):
                body.append(f"    {s.name} = {s.args[0]}{_alias_rows(s)}")
        # zero-filled outputs are filled first: outputs written in place (direct) come after
        fills = [[f"out{k}[b0:b0 + n, :] = 0" for k in sorted(program.zero_fill)]] if program.zero_fill else []
        parts = fills
        for b, (kind, size, stmts) in enumerate(blocks):
            starts = [ln for t, f in self.fused.items() if f["first"] == b for ln in self._scatter_start(t)]
            parts += ([starts] if starts else []) + [self._block(kind, size, stmts, b)]
        parts += self._stores()
        if self.HOIST:
            tables, count = set(ins) | {s.name for s in hoisted if s.shape}, 0
            for k, p in enumerate(parts):
                parts[k], count = _hoist_slot_loops(p, tables, count)
        defined = {s.name for s in hoisted if s.op != "const"} | {n for n in self.buffered if n not in self.slots} | \
            {s.name for s in batched if _alias(s)} | set(ins) | set(outs) | {"one"} | \
            {arr for arr, k in counts.items() if k} | {pool for pool, _ in self.rows.values()}
        shared_helpers, shared_lines = self._split_shared(shared, [ln for p in parts for ln in p] + body,
                                                          set(ins) | set(outs) | {"one"} | {s.name for s in light})
        body = (body[:2] + [ln for s in light for ln in self._hoisted(s)] + shared_lines
                + [f"    # tile buffers: T = {self.tile} samples on the last axis"] + body[2:])
        helpers, calls = self._split(parts, defined)
        self.split = bool(helpers)
        helpers = shared_helpers + helpers
        body += [f"    for b0 in range(start, stop, {self.tile}):",
                 "        n = 1" if self.tile == 1 else f"        n = min({self.tile}, stop - b0)"]
        body += ["        " + ln for ln in calls]
        self.workspace_sizes = (used["wsf"], used["wsb"])
        preamble = [f"TILE = {self.tile}  # samples per tile",
                    f"MIN_CHUNK = {max(2 * self.tile, 16)}  # samples per thread worth starting one for",
                    f"WORKSPACE = ({used['wsf']}, {used['wsb']})  # entries of the float and boolean workspaces",
                    "", *self.constant_globals(program), "", *helpers]
        return self.module(program, body, preamble, extra=("wsf", "wsb"))

    def tile_buffer(self, name, ws, offset, size, shape, dt):
        """The line making tile buffer ``name`` (one sample per tile): ``size``
        entries of workspace ``ws`` from ``offset``, seen as ``shape`` (None: 1-D)."""
        return f"{name} = {ws}[{offset}:{offset + size}]" + (f".reshape({shape})" if shape else "")

    def _last_row(self):
        """The row of tile slot ``s``: slots past a partial tile's end repeat its last sample."""
        return "b0 + s" if self.tile == 1 else "min(b0 + s, b0 + n - 1)"

    def zeros(self, name, size, dt):
        """Lines making ``name`` a zeroed buffer of ``size`` entries (a shared tensor value)."""
        return [f"{name} = np.zeros({size}, dtype={dt})"]

    def decorator(self):
        return ["@numba.njit(nogil=True, cache=True, error_model='numpy', boundscheck=False, "
                "fastmath={'contract'})"]

    def _split_shared(self, parts, later, available):
        """The shared (hoisted) statements: inline when short, else functions of
        about ``PART_LINES`` lines that take what they read and return what is
        read after them."""
        groups = _groups(parts)
        if groups is None:
            return [], [ln for p in parts for ln in p]
        texts = [[ln for p in g for ln in p] for g in groups]
        used = [{m for ln in t for m in _NAME.findall(ln)} for t in texts]
        read_later = {m for ln in later for m in _NAME.findall(ln)}
        defs = [{m for ln in t for m in re.findall(r"^\s*(\w+)\s*=", ln)} for t in texts]
        helpers, calls, have = [], [], set(available)
        for g, text in enumerate(texts):
            args = sorted(used[g] & have - defs[g], key=_name_order)
            after = read_later.union(*used[g + 1:])
            out = sorted(defs[g] & after, key=_name_order)
            helpers += [*self.decorator(), f"def _shared{g}({', '.join(args)}):",
                        *text, f"    return ({', '.join(out)}{',' if len(out) == 1 else ''})", ""]
            call = f"_shared{g}({', '.join(args)})"
            calls.append(f"    {', '.join(out)}{',' if len(out) == 1 else ''} = {call}" if out else f"    {call}")
            have |= defs[g]
        return helpers, calls

    def _split(self, parts, defined):
        """The tile loop's body: inline when short, else functions of about
        ``PART_LINES`` lines each, called per tile (Numba's liveness analysis and
        LLVM's passes grow faster than linearly with one function's size)."""
        groups = _groups(parts)
        if groups is None:
            return [], [ln for p in parts for ln in p]
        helpers, calls = [], []
        for g, group in enumerate(groups):
            lines = [ln for p in group for ln in p]
            used = sorted({m for ln in lines for m in _NAME.findall(ln)} & defined, key=_name_order)
            args = ", ".join(["b0", "n"] + used)
            helpers += [*self.decorator(), f"def _part{g}({args}):", *["    " + ln for ln in lines],
                        "    return None", ""]
            calls.append(f"_part{g}({args})")
        return helpers, calls

    # -- grouping ----------------------------------------------------------------------
    def _kind(self, s):
        if _indexed_read(s) is not None:  # a 1-D gather or view: a read at an index inside a map block
            return "map", _size(s.shape)
        if self.program.is_structural(s) and s.op not in ("pack", "elem"):
            return "tensor", s.name
        if s.op == "loadblock":
            return "tensor", s.name
        if s.shape and s.op != "pack":
            return "map", _size(s.shape)
        return "scalar", 1

    def _pieces(self, stmts):
        """``stmts`` with each long batched pack cut into packs of at most
        ``BLOCK_STATEMENTS`` entries (the others None): one block each, so that
        no function writes thousands of entries."""
        for s in stmts:
            live = [j for j, a in enumerate(s.args) if not self.is_plus_zero(a)] if s.op == "pack" else ()
            if len(live) <= BLOCK_STATEMENTS:
                yield s
                continue
            for c in range(0, len(live), BLOCK_STATEMENTS):
                keep = set(live[c: c + BLOCK_STATEMENTS])
                yield s._replace(args=tuple(a if j in keep else None for j, a in enumerate(s.args)))

    def _blocks(self, stmts):
        blocks, where, weight = [], {}, []  # weight: the lines a block prints, about
        for s in self._pieces(stmts):
            if _alias(s):  # a name for (part of) its source's buffer, printed once before the tile loop:
                where[s.name] = where.get(s.args[0], -1)  # no loop of its own, ready when its source is
                continue
            kind, size = self._kind(s)
            w = sum(a is not None for a in s.args) if s.op == "pack" else 1
            dep = max((where[a] for a in self._arg_names(s) if a in where), default=-1)
            if _indexed_read(s) is not None and s.args[0] in where:
                dep = where[s.args[0]] + 1  # reads its source's buffer: after the block that fills it
            target = None
            if s.op == "pack" and s.name in where:  # a piece of a long pack: after the pieces before it
                dep = max(dep, where[s.name])
            if kind != "tensor":
                for b in range(max(dep, 0), len(blocks)):
                    if blocks[b][0] == kind and blocks[b][1] == size and weight[b] + w <= BLOCK_STATEMENTS:
                        target = b
                        break
            if target is None:
                blocks.append((kind, size, []))
                weight.append(0)
                target = len(blocks) - 1
            blocks[target][2].append(s)
            weight[target] += w
            where[s.name] = max(target, where.get(s.name, target))
        return blocks

    def _arg_names(self, s):
        return [] if s.op in ("load", "loadblock", "const") else [a for a in s.args if a is not None]

    def _buffered(self, blocks):
        """Batched values that live in a tile buffer: tensors read outside their
        own map block, scalars read outside their scalar block, stored values."""
        need = set()
        home = {s.name: b for b, (_, _, stmts) in enumerate(blocks) for s in stmts}
        for b, (kind, _, stmts) in enumerate(blocks):
            for s in stmts:
                if kind == "tensor" or s.op in ("pack", "loadblock"):
                    need.add(s.name)
                fused = self.fused[s.name]["names"] if s.name in self.fused else ()
                for a in self._arg_names(s):
                    if a in fused:  # added into s inside its own block (`_fusions`)
                        continue
                    if a in home and (home[a] != b or kind == "tensor") or self._batched_alias(a):
                        need.add(a)
        stored = [v for k, i, v in self.program.stores if (k, i) not in self.in_block.get(v, ())]
        for name in stored + [t for _, _, t, _, _ in self.program.block_stores]:
            if name in home or self._batched_alias(name):
                need.add(name)
        # a reshape (a contiguous view) is (part of) the same buffer: buffer its source instead
        for s in reversed(list(self.info.values())):
            if _alias(s) and s.name in need and s.batched:
                need.add(s.args[0])
        return need

    def _in_block_stores(self, blocks):
        """{name: [(output, position)]}: scalar values stored into a per-sample
        output row by the scalar block that computes them, so that they need no
        tile buffer and no function of the stores takes them all as arguments (a
        1,722-statement Jacobian's stores took hundreds of buffers, and Numba 44 s
        to compile them).  A partial tile's repeated last sample writes the same
        value to the same place again; a reduced output (``+=``) stays with the
        other stores.  Only for many stores: a few stay after the blocks, where
        they keep the scalar blocks' loops free of writes to outputs, which
        LLVM cannot prove apart from the buffers (pinn's kernel: 5% slower)."""
        if len(self.program.stores) <= PART_LINES:
            return {}
        home = {s.name: kind for kind, _, stmts in blocks for s in stmts}
        where = {}
        for k, i, v in self.program.stores:
            if home.get(v) == "scalar" and not self.program.outputs[k].reduce:
                where.setdefault(v, []).append((k, i))
        return where

    def _fusions(self, blocks):
        """Scatter pairs added into their target inside the map block that
        computes their values: {scatter: {"first": block, "names": values,
        "pairs": {block: [(value, index)]}}}.  The values then need no buffer
        and the target is not walked once more per pair (the 1-D Brusselator's
        Jacobian: 0.70 -> 0.52 ms at N = 10^5).  A pair qualifies when its value
        is 1-D and lives in a map block of its size; the target's start (base
        or zeros) moves before the first such block, so a batched base (not
        ready by then) keeps the scatter whole, and so does a target written
        in place into output rows by tiles of several samples (the tile's
        repeated last sample would be added twice)."""
        home = {s.name: b for b, (_, _, stmts) in enumerate(blocks) for s in stmts}
        fused = {}
        for b, (kind, _, stmts) in enumerate(blocks):
            if kind != "tensor" or stmts[0].op != "scatter" or not stmts[0].batched:
                continue
            s = stmts[0]
            off = len(s.args) % 2
            if (off and self.info[s.args[0]].batched) or (s.name in self.direct and self.tile > 1):
                continue
            pairs = {}
            for g, idx in zip(s.args[off::2], s.args[off + 1::2]):
                st, m = self.info[g], home.get(g)
                if (m is not None and st.batched and len(st.shape) == 1 and blocks[m][0] == "map"
                        and blocks[m][1] == st.shape[0]):
                    pairs.setdefault(m, []).append((g, idx))
            if pairs:
                fused[s.name] = {"first": min(pairs), "names": {g for ps in pairs.values() for g, _ in ps},
                                 "pairs": pairs}
        return fused

    def _scatter_start(self, name):
        """A fused scatter's target set to its base (or zeros), before its first fused block."""
        return STRUCTURAL["scatter"].start(self, self.info[name], True)

    def _batched_alias(self, name):
        st = self.info.get(name)
        return st is not None and st.batched and _alias(st)

    # -- references ----------------------------------------------------------------------
    def _direct(self, blocks):
        """Tensors written straight into their output row (stored once, whole,
        and read by nothing else): {name: (output, offset)}."""
        p = self.program
        readers = {}
        for _, _, stmts in blocks:
            for s in stmts:
                for a in self._arg_names(s):
                    readers[a] = readers.get(a, 0) + 1
        aliased = {s.args[0] for s in self.info.values() if _alias(s)}
        stored = {}
        for _, _, t, _, _ in p.block_stores:
            stored[t] = stored.get(t, 0) + 1
        direct = {}
        for k, i, t, j0, cnt in p.block_stores:
            st = self.info[t]
            if (p.outputs[k].reduce or not st.batched or j0 or cnt != _size(st.shape) or readers.get(t)
                    or t in aliased or stored[t] > 1 or any(v == t for _, _, v in p.stores)
                    or not (st.op == "scatter" or (st.shape and not p.is_structural(st)))):
                continue
            direct[t] = (k, i)
        return direct

    def at(self, name, flat):
        """Element ``flat`` of batched tensor ``name`` in tile slot s: its buffer's,
        or its rows of the pool."""
        where = self.rows.get(name)
        if where is None:
            return f"{name}[{flat}, s]"
        pool, base = where
        flat = str(flat)
        if self.tile > 1:
            flat = f"{flat} * {self.tile}" if _WORD.fullmatch(flat) else f"({flat}) * {self.tile}"
        return f"{pool}[{base} + {flat} + s]" if base else f"{pool}[{flat} + s]"

    def shared_el(self, name, flat):
        """Element ``flat`` of a value shared by the samples: a table of the
        inputs is read in place when buffers are pooled (a view of it would be
        one more argument of every part that reads it)."""
        st = self.info.get(name)
        if self.pool and st is not None and st.op == "loadblock" and not st.batched:
            k, i0 = st.args
            return f"x{k}[{i0} + {flat}]" if i0 else f"x{k}[{flat}]"
        return f"{name}[{flat}]"

    def slot(self, name, s="s"):
        """Tile slot ``s`` of batched scalar ``name``: rows of ``T`` entries of one
        scratch array, at constant offsets LLVM sees never overlap."""
        arr, k = self.slots[name]
        return f"{arr}[{k * self.tile} + {s}]" if k else f"{arr}[{s}]"

    def _ref(self, name, flat=None, local=()):
        """An element of value ``name``: flat index ``flat`` of a tensor, tile slot s."""
        st = self.info[name]
        if st.op == "const":
            return name
        if name in local:
            return f"e_{name}"
        if not st.batched:
            return name if not st.shape else self.shared_el(name, flat)
        if not st.shape:
            return self.slot(name)
        return self.at(name, flat)

    # -- hoisted (shared) statements ----------------------------------------------------------
    def _hoisted(self, s):
        if s.op == "const":
            return [f"    {s.name} = _F({float_literal(s.args[0])})"]
        if s.op == "load":
            return [f"    {s.name} = x{s.args[0]}[{s.args[1]}]"]
        if s.op == "loadblock":
            k, i0 = s.args
            return [f"    {s.name} = x{k}[{i0}:{i0 + _size(s.shape)}]"]
        if not s.shape and not self.program.is_structural(s):
            return [f"    {s.name} = {self.print_op(s.op, s.args)}"]
        if s.op == "elem":
            return [f"    {s.name} = {s.args[0]}[{s.attr}]"]
        dt = "np.bool_" if s.dtype == "bool" else "_F"
        if _alias(s):
            return [f"    {s.name} = {s.args[0]}{_alias_rows(s)}"]
        lines = ["    " + ln for ln in self.zeros(s.name, _size(s.shape), dt)]
        if s.op == "pack":  # zero entries: the buffer starts at zero and nothing else writes it
            return lines + [f"    {s.name}[{j}] = {a}" for j, a in enumerate(s.args) if not self.is_plus_zero(a)]
        if s.shape and not self.program.is_structural(s):
            expr = self.print_op(s.op, tuple(self._ref(a, "i") for a in s.args))
            return lines + [f"    for i in range({self.extent(_size(s.shape))}):", f"        {s.name}[i] = {expr}"]
        return lines + ["    " + ln for ln in self._tensor(s, tile=False)]

    # -- batched blocks --------------------------------------------------------------------------
    def _block(self, kind, size, stmts, b):
        if kind == "tensor":
            (s,) = stmts
            return self._tensor(s, tile=True)
        if kind == "scalar":
            return self._scalar_block(stmts)
        lines = self._map_block(size, stmts)
        for t, f in self.fused.items():  # scatter pairs whose values this block computes
            lines += [f"        {self.out_el(self.info[t], self.shared_el(idx, 'i'), True)} += e_{g}" for g, idx in f["pairs"].get(b, ())]
        return lines

    def _scalar_block(self, stmts):
        local = {s.name for s in stmts if not s.shape}
        lines = [f"for s in range({self.tile}):"]
        if any(s.op == "load" or s.name in self.in_block for s in stmts):
            lines.append(f"    b = {self._last_row()}")
        for s in stmts:
            if s.op == "load":
                lines.append(f"    e_{s.name} = x{s.args[0]}[b, {s.args[1]}]")
            elif s.op == "elem":
                lines.append(f"    e_{s.name} = {self._ref(s.args[0], s.attr)}")
            elif s.op == "pack":
                lines += [f"    {self.at(s.name, j)} = {self._ref(a, None, local)}" for j, a in enumerate(s.args)
                          if a is not None and not self.is_plus_zero(a)]
                continue
            else:
                args = tuple(self._ref(a, None, local) for a in s.args)
                lines.append(f"    e_{s.name} = {self.print_op(s.op, args)}")
            if s.name in self.buffered:
                lines.append(f"    {self.slot(s.name)} = e_{s.name}")
            lines += [f"    out{k}[b, {i}] = e_{s.name}" for k, i in self.in_block.get(s.name, ())]
        return lines

    def _map_block(self, size, stmts):
        local = {s.name for s in stmts}
        lines = [f"for i in range({self.extent(size)}):", f"    for s in range({self.tile}):"]
        for s in stmts:
            at = _indexed_read(s)
            if at is not None:  # the source is a buffer of an earlier block (or shared): read it at the index
                expr = self._ref(s.args[0], self.shared_el(s.args[1], "i") if s.op == "gather" else at)
            else:
                expr = self.print_op(s.op, tuple(self._ref(a, "i", local) for a in s.args))
            lines.append(f"        e_{s.name} = {expr}")
            if s.name in self.buffered:
                lines.append(f"        {self.out_el(s, 'i', True)} = e_{s.name}")
        return lines

    # -- tensor ops as loop nests (their forms live in codegen.structural) -------------------
    def el(self, name, flat, tile):
        """Element access inside a loop nest: the s loop exists when ``tile``."""
        st = self.info[name]
        if st.op == "const":
            return name
        if not st.batched or not tile:
            return (self.shared_el(name, flat) if not st.batched else f"{name}[{flat}]") if st.shape else name
        return self.at(name, flat) if st.shape else self.slot(name)

    def inner(self, tile, lines, depth, s=None):
        """``lines`` inside the s loop (when tiled) at ``depth`` levels of
        indentation; for statement ``s`` written in place into an output, over
        the tile's real samples only (its writes accumulate: a repeated last
        sample would add twice)."""
        pad = "    " * depth
        if not tile or self.outer_s:
            return [pad + ln for ln in lines]
        count = "n" if s is not None and s.name in self.direct and self.tile > 1 else self.tile
        return [pad + f"for s in range({count}):"] + [pad + "    " + ln for ln in lines]

    def aliases(self, s):
        """True when ``s`` is printed as a name for (part of) its argument's buffer."""
        return _alias(s)

    def extent(self, n):
        """A loop's trip count as printed: ``n * one``, where ``one`` is 1 at run
        time but unknown to LLVM, which otherwise fully unrolls every small
        constant loop nest: twice the compile time and no speed (the PINN step's
        kernel: 22.9 -> 10.6 s to compile, 318 -> 305 us a call).  The tile's own
        loops keep their constant count, which SIMD code needs."""
        return f"{n} * one" if n > 1 else str(n)

    def nest(self, loops):
        """``for`` headers for (var, extent) pairs; returns (lines, depth)."""
        return [("    " * d) + f"for {v} in range({self.extent(n)}):" for d, (v, n) in enumerate(loops)], len(loops)

    def out_el(self, s, flat, tile):
        """The element of statement ``s``'s own buffer (or output row) being written."""
        if tile and s.name in self.direct:  # the slots past a partial tile's end repeat its last sample
            k, i = self.direct[s.name]
            row = "b0 + s" if self.outer_s else self._last_row()
            return f"out{k}[{row}, {i} + {flat}]" if i else f"out{k}[{row}, {flat}]"
        return self.at(s.name, flat) if tile else f"{s.name}[{flat}]"

    def fill(self, s, tile, value="0"):
        """Set every element of ``s`` (its tile slots when ``tile``) to ``value``."""
        if tile and s.name in self.direct:
            k, i = self.direct[s.name]
            return [f"out{k}[{'b0 + s' if self.outer_s else 'b0:b0 + n'}, {i}:{i + _size(s.shape)}] = {value}"]
        if not s.shape:
            if not tile:
                return [f"{s.name} = _F({value})"]
            arr, k = self.slots[s.name]
            return [f"{arr}[{k * self.tile}:{(k + 1) * self.tile}] = {value}"]
        if tile and s.name in self.rows:
            pool, base = self.rows[s.name]
            return [f"{pool}[{base}:{base + _size(s.shape) * self.tile}] = {value}"]
        return [f"{s.name}[:, :] = {value}" if tile else f"{s.name}[:] = {value}"]

    def _tensor(self, s, tile):
        tile = tile and s.batched
        if s.op == "loadblock":
            return self._loop_loadblock(s, tile)
        form = STRUCTURAL.get(s.op)
        if form is None or not hasattr(form, "loops"):
            raise PrinterError(f"{type(self).__name__} cannot print the tensor op {s.op!r} (no loop form in "
                               "codegen.structural)")
        if not (tile and s.name in self.direct and self.tile > 1):
            return form.loops(self, s, tile)
        # written in place into output rows: one sample at a time, so the inner loops run along a row
        # (a tile's samples are whole rows apart there), over the tile's real samples only
        self.outer_s = True
        try:
            lines = form.loops(self, s, tile)
        finally:
            self.outer_s = False
        return ["for s in range(n):"] + ["    " + ln for ln in lines]

    def _loop_loadblock(self, s, tile):
        k, i0 = s.args
        n = _size(s.shape)
        return [f"for s in range({self.tile}):", f"    b = {self._last_row()}",
                f"    for j in range({self.extent(n)}):", f"        {self.at(s.name, 'j')} = x{k}[b, {i0} + j]"]

    # -- outputs ------------------------------------------------------------------------------------
    def _stores(self):
        """The stores not made where their values are computed, as parts of at
        most ``PART_LINES`` lines (each its own loop over the tile's samples)."""
        p = self.program
        units = []  # a store's lines, never split between parts
        for k, i, v in p.stores:
            if (k, i) in self.in_block.get(v, ()):  # made by the block that computes v
                continue
            ref = self._ref(v, None)
            units.append([f"    out{k}[{i}] += {ref}" if p.outputs[k].reduce else f"    out{k}[b, {i}] = {ref}"])
        for k, i, t, j0, cnt in p.block_stores:
            if t in self.direct:
                continue  # written in place
            src = self._ref(t, f"{j0} + j")
            target = f"out{k}[{i} + j] +=" if p.outputs[k].reduce else f"out{k}[b, {i} + j] ="
            units.append([f"    for j in range({self.extent(cnt)}):", f"        {target} {src}"])
        head = ["for s in range(n):", "    b = b0 + s"]
        parts, cur = [], []
        for u in units:
            if len(cur) + len(u) > PART_LINES:
                parts.append(head + cur)
                cur = []
            cur += u
        return parts + [head + cur] if cur else parts
