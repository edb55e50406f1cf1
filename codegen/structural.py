"""How each structural tensor op prints, for every printer, in one place.

A structural op (a tensor op with an attribute: ``einsum``, ``conv2d``,
``tsum``...) is one class here with two forms side by side:

- ``numpy(p, s)``: an expression vectorized over the batch slice, for
  `codegen.printers.NumPyPrinter` (a batched value has the slice as its
  leading axis);
- ``loops(p, s, tile)``: loop nests for the Numba printers, with the samples
  of a tile on the innermost axis when ``tile`` (a value shared by every
  sample has no sample axis).  ``p`` is the printer, which supplies element
  access (``p.el``, ``p.target``) and loop headers (``p.nest``, ``p.inner``).

A printer asked for an op that has no entry here raises `PrinterError`
naming it; `tests/test_layers.py` checks that every structural op of the
registry has both forms.
"""

from __future__ import annotations

__all__ = ["STRUCTURAL", "NUMPY_HELPERS", "numpy_helpers", "flat_index", "size"]

STRUCTURAL: dict = {}


def structural(cls):
    """Register a structural op's printing (the class's ``op``)."""
    STRUCTURAL[cls.op] = cls()
    return cls


def size(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def strides(shape):
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def flat_index(vars_, shape):
    """Flat C-order index expression of loop variables over ``shape``."""
    terms = [f"{v} * {st}" if st != 1 else v for v, st, d in zip(vars_, strides(shape), shape) if d != 1]
    return " + ".join(terms) if terms else "0"


# NumPy-printer helpers that the NumPy forms below call; a program's module
# carries only those its statements need (with what they call).
NUMPY_HELPERS = {
    '_pack': '''
def _pack(lead, shape, items):
    # items: {flat index: value}; entries not given are zero
    n = 1
    for d in shape:
        n *= d
    out = np.zeros(lead + (n,), dtype=_F)
    for j, v in items.items():
        out[..., j] = v
    return out.reshape(lead + shape)
''',
    '_windows': '''
def _windows(x, kh, kw, stride, pads, ho, wo):
    # x: (..., H, W, C) zero-padded; its kh*kw windows as one array (..., ho, wo, kh*kw, C)
    pad = [(0, 0)] * (x.ndim - 3) + [tuple(pads[0]), tuple(pads[1]), (0, 0)]
    xp = np.pad(x, pad)
    return np.stack([xp[..., dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride, :]
                     for dy in range(kh) for dx in range(kw)], axis=-2)
''',
    '_conv2d': '''
def _conv2d(x, w, bx, bw, attr):
    # one contraction over the windows and channels (a single matrix product, not one per window)
    stride, pads = attr
    kh, kw = w.shape[-4], w.shape[-3]
    H, W = x.shape[-3], x.shape[-2]
    ho = (H + pads[0][0] + pads[0][1] - kh) // stride + 1
    wo = (W + pads[1][0] + pads[1][1] - kw) // stride + 1
    wk = w.reshape(w.shape[:-4] + (kh * kw,) + w.shape[-2:])
    return np.einsum("...hwki,...kio->...hwo", _windows(x, kh, kw, stride, pads, ho, wo), wk, optimize=True)
''',
    '_conv2d_bx': '''
def _conv2d_bx(g, w, bg, bw, attr):
    stride, pads, (H, W) = attr
    kh, kw = w.shape[-4], w.shape[-3]
    ho, wo = g.shape[-3], g.shape[-2]
    lead = np.broadcast_shapes(g.shape[:-3], w.shape[:-4])
    xp = np.zeros(lead + (H + pads[0][0] + pads[0][1], W + pads[1][0] + pads[1][1], w.shape[-2]), dtype=_F)
    parts = np.einsum("...hwo,...yxio->...hwyxi", g, w, optimize=True)  # every window in one product
    for dy in range(kh):
        for dx in range(kw):
            xp[..., dy: dy + stride * (ho - 1) + 1: stride, dx: dx + stride * (wo - 1) + 1: stride, :] += \\
                parts[..., dy, dx, :]
    return xp[..., pads[0][0]: pads[0][0] + H, pads[1][0]: pads[1][0] + W, :]
''',
    '_positions': '''
def _positions(offset, strides, shape):
    # the flat positions offset + sum_k i_k strides_k, as an array of shape
    idx = np.full(shape, offset, dtype=np.int64)
    for k, (st, n) in enumerate(zip(strides, shape)):
        idx += (np.arange(n, dtype=np.int64) * st).reshape((1,) * k + (n,) + (1,) * (len(shape) - k - 1))
    return idx
''',
    '_view': '''
def _view(x, lead, offset, strides, shape):
    # np.take, not x[:, idx]: NumPy's fancy index along the last axis gives a Fortran-ordered array, and
    # every reshape after it copies (a mechanism's NumPy tier: 1.4 s of its 7.5 s in such copies)
    return np.take(np.reshape(x, lead + (-1,)), _positions(offset, strides, shape), axis=len(lead))
''',
    '_embed': '''
def _embed(g, lead, shape, offset, strides):
    n = 1
    for d in shape:
        n *= d
    idx = _positions(offset, strides, np.shape(g)[len(lead):]).reshape(-1)
    out = np.zeros(lead + (n,), dtype=_F)
    np.add.at(out, (slice(None),) * len(lead) + (idx,), np.reshape(g, lead + (-1,)))
    return out.reshape(lead + shape)
''',
    '_scatter': '''
def _scatter(lead, shape, pairs, base):
    # pairs: (values, positions, batched); a shared value is added to every sample; base: (tensor, batched),
    # added first.  In float64, one np.bincount over flat (sample, position) indices, laid out sample by
    # sample with the pairs side by side: each sum gets its terms in the pairs' order, the sums np.add.at
    # makes, in its order, about 5x faster (a mechanism's Jacobian: 44% of the time).  The indices are one
    # broadcast add, the values one copy (none for a single pair).  bincount sums in float64 only: other
    # dtypes add in their own with np.add.at, as the Numba kernels do.
    n = m = 1
    for d in shape:
        n *= d
    for d in lead:
        m *= d
    pairs = ([(base[0], np.arange(n), base[1])] if base is not None else []) + list(pairs)
    if _F is not np.float64:
        out = np.zeros(lead + (n,), dtype=_F)
        for g, idx, batched in pairs:
            g = np.reshape(g, (lead if batched else ()) + (-1,))
            np.add.at(out, (slice(None),) * len(lead) + (np.reshape(idx, -1),), np.broadcast_to(g, lead + g.shape[-1:]))
        return out.reshape(lead + shape)
    if not pairs:
        return np.zeros(lead + shape, dtype=_F)
    if len(pairs) == 1:
        at = np.reshape(pairs[0][1], -1)
        vals = np.broadcast_to(np.reshape(pairs[0][0], (m if pairs[0][2] else 1, -1)), (m, at.size))
    else:
        at = np.concatenate([np.reshape(i, -1) for _, i, _ in pairs])
        vals = np.concatenate([np.broadcast_to(np.reshape(g, (m if b else 1, -1)), (m, np.size(i)))
                               for g, i, b in pairs], axis=1)
    flat = (np.arange(m, dtype=np.int64) * n).reshape(m, 1) + at
    return np.bincount(flat.reshape(-1), weights=vals.reshape(-1), minlength=m * n).reshape(lead + shape)
''',
    '_concat': '''
def _concat(lead, axis, shape, parts):
    # parts: (array, batched); a shared part is broadcast over the batch slice
    return np.concatenate([np.broadcast_to(a, lead + np.shape(a)[len(lead) if b else 0:]) for a, b in parts],
                          axis=len(lead) + axis)
''',
    '_conv2d_bw': '''
def _conv2d_bw(x, g, bx, bg, attr):
    stride, pads, (kh, kw) = attr
    ho, wo = g.shape[-3], g.shape[-2]
    out = np.einsum("...hwki,...hwo->...kio", _windows(x, kh, kw, stride, pads, ho, wo), g, optimize=True)
    return out.reshape(out.shape[:-3] + (kh, kw) + out.shape[-2:])
''',
}
HELPER_CALLS = {"_conv2d": ("_windows",), "_conv2d_bw": ("_windows",), "_view": ("_positions",),
                "_embed": ("_positions",)}


def numpy_helpers(program):
    """The helper source the NumPy forms of ``program``'s structural ops call."""
    need = set()
    for op in program.structural_ops():
        for h in getattr(STRUCTURAL.get(op), "helpers", ()):
            need.add(h)
            need.update(HELPER_CALLS.get(h, ()))
    return "".join("\n" + text for name, text in NUMPY_HELPERS.items() if name in need)


# -- the bridge between scalars and tensors ---------------------------------------------
# (The Numba printers write pack and elem inside their scalar blocks.)

@structural
class Pack:
    op = "pack"
    helpers = ("_pack",)

    def numpy(self, p, s):
        lead = "(stop - start,)" if s.batched else "()"
        items = ", ".join(f"{j}: {a}" for j, a in enumerate(s.args) if not p.is_plus_zero(a))
        return f"_pack({lead}, {s.shape!r}, {{{items}}})"


@structural
class Elem:
    op = "elem"

    def numpy(self, p, s):
        (t,) = s.args
        if p.info[t].batched:
            return f"{t}.reshape({t}.shape[0], -1)[:, {s.attr}]"
        return f"np.reshape({t}, -1)[{s.attr}]"


# -- linear maps of one tensor ------------------------------------------------------------

@structural
class Bcast:
    op = "bcast"

    def numpy(self, p, s):
        shape, dims = s.attr
        expanded = tuple(shape[i] if i in dims else 1 for i in range(len(shape)))
        (a,) = s.args
        if s.batched:
            return f"np.broadcast_to(np.reshape({a}, (stop - start,) + {expanded!r}), (stop - start,) + {shape!r})"
        return f"np.broadcast_to(np.reshape({a}, {expanded!r}), {shape!r})"

    def loops(self, p, s, tile):
        shape, dims = s.attr
        (a,) = s.args
        vars_ = [f"i{d}" for d in range(len(shape))]
        head, depth = p.nest(list(zip(vars_, shape)))
        src = p.el(a, flat_index([vars_[d] for d in dims], [shape[d] for d in dims]), tile)
        return head + p.inner(tile, [f"{p.out_el(s, flat_index(vars_, shape), tile)} = {src}"], depth)


@structural
class Reshape:
    op = "reshape"

    def numpy(self, p, s):
        lead = "(stop - start,) + " if s.batched else ""
        return f"np.reshape({s.args[0]}, {lead}{s.shape!r})"

    def loops(self, p, s, tile):
        return [] if tile else [f"{s.name} = {s.args[0]}"]  # tiled: aliased once, before the loop


@structural
class Transpose:
    op = "transpose"

    def numpy(self, p, s):
        perm = (0,) + tuple(q + 1 for q in s.attr) if s.batched else s.attr
        return f"np.transpose({s.args[0]}, {perm!r})"

    def loops(self, p, s, tile):
        (a,) = s.args
        in_shape = p.info[a].shape
        vars_ = [f"i{d}" for d in range(len(s.shape))]
        in_vars = [None] * len(in_shape)
        for out_axis, in_axis in enumerate(s.attr):
            in_vars[in_axis] = vars_[out_axis]
        head, depth = p.nest(list(zip(vars_, s.shape)))
        src = p.el(a, flat_index(in_vars, in_shape), tile)
        return head + p.inner(tile, [f"{p.out_el(s, flat_index(vars_, s.shape), tile)} = {src}"], depth)


def _position(vars_, offset, strides):
    """The flat position ``offset + sum_k i_k strides_k`` as an expression."""
    terms = [str(offset)] if offset else []
    for v, st in zip(vars_, strides):
        if st:
            terms.append(v if st == 1 else f"{v} * {st}" if st > 0 else f"{v} * ({st})")
    return " + ".join(terms) if terms else "0"


def _read_loops(p, s, tile, source_at):
    """Loops over ``s``'s entries, each read from its first argument at the
    flat position ``source_at(loop variables)`` (a view, a gather)."""
    vars_ = [f"i{d}" for d in range(len(s.shape))]
    head, depth = p.nest(list(zip(vars_, s.shape)))
    src = p.el(s.args[0], source_at(vars_), tile)
    return head + p.inner(tile, [f"{p.out_el(s, flat_index(vars_, s.shape), tile)} = {src}"], depth)


def _lead(s):
    return "(stop - start,)" if s.batched else "()"


@structural
class View:
    op = "view"
    helpers = ("_view",)

    def numpy(self, p, s):
        offset, strides, shape = s.attr
        return f"_view({s.args[0]}, {_lead(s)}, {offset}, {strides!r}, {shape!r})"

    def loops(self, p, s, tile):
        if tile and p.aliases(s):
            return []  # a contiguous run of the argument's tile buffer, aliased once, before the loop
        offset, strides, shape = s.attr
        return _read_loops(p, s, tile, lambda vars_: _position(vars_, offset, strides))


@structural
class Embed:
    op = "embed"
    helpers = ("_embed",)

    def numpy(self, p, s):
        shape, offset, strides = s.attr
        return f"_embed({s.args[0]}, {_lead(s)}, {shape!r}, {offset}, {strides!r})"

    def loops(self, p, s, tile):
        shape, offset, strides = s.attr
        (g,) = s.args
        g_shape = p.info[g].shape
        vars_ = [f"i{d}" for d in range(len(g_shape))]
        head, depth = p.nest(list(zip(vars_, g_shape)))
        src = p.el(g, flat_index(vars_, g_shape), tile)
        return p.fill(s, tile) + head + p.inner(tile, [f"{p.out_el(s, _position(vars_, offset, strides), tile)} += {src}"],
                                                  depth)


@structural
class Gather:
    op = "gather"

    def numpy(self, p, s):
        t, idx = s.args
        if p.info[t].batched:  # np.take keeps the result C-ordered (see the _view helper)
            return f"np.take(np.reshape({t}, (stop - start, -1)), {idx}, axis=1)"
        return f"np.take({t}, {idx})"  # np.take reads an unbatched tensor flat

    def loops(self, p, s, tile):
        idx = s.args[1]
        at = (lambda vars_: f"{idx}[{flat_index(vars_, s.shape)}]") if len(s.shape) == 1 else \
            (lambda vars_: f"{idx}.flat[{flat_index(vars_, s.shape)}]")
        return _read_loops(p, s, tile, at)


@structural
class Scatter:
    op = "scatter"
    helpers = ("_scatter",)

    def numpy(self, p, s):
        off = len(s.args) % 2  # an odd count: the first argument is the base added into
        pairs = ", ".join(f"({g}, {idx}, {p.info[g].batched})" for g, idx in zip(s.args[off::2], s.args[off + 1::2]))
        base = f"({s.args[0]}, {p.info[s.args[0]].batched})" if off else "None"
        return f"_scatter({_lead(s)}, {s.shape!r}, [{pairs}], {base})"

    def start(self, p, s, tile):
        """The target set to the base (an odd argument count) or to zeros."""
        if len(s.args) % 2:
            head, depth = p.nest([("i0", size(s.shape))])
            return head + p.inner(tile, [f"{p.out_el(s, 'i0', tile)} = {p.el(s.args[0], 'i0', tile)}"], depth, s)
        return p.fill(s, tile)

    def loops(self, p, s, tile):
        off = len(s.args) % 2
        fused = getattr(p, "fused", {}).get(s.name)  # pairs the printer adds inside their values' own loops
        lines = [] if fused else self.start(p, s, tile)
        # pairs of one shape share a loop: one pass over the target instead of one per pair (the
        # 1-D Brusselator's four Jacobian blocks each touch every row of it)
        by_shape = {}
        for g, idx in zip(s.args[off::2], s.args[off + 1::2]):
            if fused and g in fused["names"]:
                continue
            by_shape.setdefault(tuple(p.info[g].shape), []).append((g, idx))
        for g_shape, pairs in by_shape.items():
            vars_ = [f"i{d}" for d in range(len(g_shape))]
            head, depth = p.nest(list(zip(vars_, g_shape)))
            at = flat_index(vars_, g_shape)
            adds = [f"{p.out_el(s, p.shared_el(idx, at) if len(g_shape) == 1 else f'{idx}.flat[{at}]', tile)} += "
                    f"{p.el(g, at, tile)}" for g, idx in pairs]
            lines += head + p.inner(tile, adds, depth, s)
        return lines


@structural
class Concat:
    op = "concat"
    helpers = ("_concat",)

    def numpy(self, p, s):
        parts = ", ".join(f"({a}, {p.info[a].batched})" for a in s.args)
        return f"_concat({_lead(s)}, {s.attr}, {s.shape!r}, [{parts}])"

    def loops(self, p, s, tile):
        axis, lines, lo = s.attr, [], 0
        for a in s.args:
            shape = p.info[a].shape
            vars_ = [f"i{d}" for d in range(len(shape))]
            head, depth = p.nest(list(zip(vars_, shape)))
            out_vars = [f"({v} + {lo})" if k == axis and lo else v for k, v in enumerate(vars_)]
            src = p.el(a, flat_index(vars_, shape), tile)
            lines += head + p.inner(tile, [f"{p.out_el(s, flat_index(out_vars, s.shape), tile)} = {src}"], depth)
            lo += shape[axis]
        return lines


@structural
class Cumsum:
    op = "cumsum"

    def numpy(self, p, s):
        axis, reverse = s.attr
        ax = axis + s.batched
        (a,) = s.args
        if reverse:
            return f"np.flip(np.cumsum(np.flip({a}, {ax}), axis={ax}), {ax})"
        return f"np.cumsum({a}, axis={ax})"

    def loops(self, p, s, tile):
        axis, reverse = s.attr
        (a,) = s.args
        vars_ = [f"i{d}" for d in range(len(s.shape))]
        n = s.shape[axis]
        vars_[axis] = "j"
        head, depth = p.nest([(v, d) for k, (v, d) in enumerate(zip(vars_, s.shape)) if k != axis])
        at = flat_index(vars_, s.shape)
        scan = ["run = _F(0.0)", f"for jj in range({p.extent(n)}):", f"    j = {n - 1} - jj" if reverse else "    j = jj",
                f"    run += {p.el(a, at, tile)}", f"    {p.out_el(s, at, tile)} = run"]
        return head + p.inner(tile, scan, depth)


# -- reductions -----------------------------------------------------------------------------

def _reduce_loops(p, s, tile, fill="0", combine=None):
    """A reduction over ``s.attr``: a sum, or with ``combine`` (np.maximum,
    np.minimum) an extreme."""
    (a,) = s.args
    in_shape = p.info[a].shape
    vars_ = [f"i{d}" for d in range(len(in_shape))]
    kept = [d for d in range(len(in_shape)) if d not in s.attr]
    head, depth = p.nest(list(zip(vars_, in_shape)))
    out_flat = flat_index([vars_[d] for d in kept], [in_shape[d] for d in kept])
    target = p.out_el(s, out_flat, tile) if s.shape else (p.slot(s.name) if tile else s.name)
    value = p.el(a, flat_index(vars_, in_shape), tile)
    body = [f"{target} += {value}" if combine is None else f"{target} = {combine}({target}, {value})"]
    return p.fill(s, tile, fill) + head + p.inner(tile, body, depth)


def _reduce_numpy(s, fn):
    return f"{fn}({s.args[0]}, axis={tuple(a + s.batched for a in s.attr)!r})"


@structural
class Tsum:
    op = "tsum"

    def numpy(self, p, s):
        return _reduce_numpy(s, "np.sum")

    def loops(self, p, s, tile):
        return _reduce_loops(p, s, tile)


@structural
class Tmax:
    op = "tmax"

    def numpy(self, p, s):
        return _reduce_numpy(s, "np.max")

    def loops(self, p, s, tile):
        return _reduce_loops(p, s, tile, "-np.inf", "np.maximum")


@structural
class Tmin:
    op = "tmin"

    def numpy(self, p, s):
        return _reduce_numpy(s, "np.min")

    def loops(self, p, s, tile):
        return _reduce_loops(p, s, tile, "np.inf", "np.minimum")


# -- contractions and convolutions ------------------------------------------------------------

@structural
class Einsum:
    op = "einsum"

    def numpy(self, p, s):
        (sa, sb), out = s.attr.split("->")[0].split(","), s.attr.split("->")[1]
        ba, bb = (p.info[a].batched for a in s.args)
        spec = f"{'Z' * ba}{sa},{'Z' * bb}{sb}->{'Z' * s.batched}{out}"
        return f"np.einsum({spec!r}, {s.args[0]}, {s.args[1]}, optimize=True)"

    def loops(self, p, s, tile):
        (sa, sb), out = s.attr.split("->")[0].split(","), s.attr.split("->")[1]
        a, b = s.args
        sizes = dict(zip(sa, p.info[a].shape)) | dict(zip(sb, p.info[b].shape))
        summed = [ch for ch in dict.fromkeys(sa + sb) if ch not in out]
        head, depth = p.nest([(f"i_{ch}", sizes[ch]) for ch in out + "".join(summed)])
        fa = flat_index([f"i_{ch}" for ch in sa], [sizes[ch] for ch in sa])
        fb = flat_index([f"i_{ch}" for ch in sb], [sizes[ch] for ch in sb])
        fo = flat_index([f"i_{ch}" for ch in out], [sizes[ch] for ch in out])
        target = p.out_el(s, fo, tile) if s.shape else (p.slot(s.name) if tile else s.name)
        ea, eb = p.el(a, fa, tile), p.el(b, fb, tile)
        pre = []
        # a shared operand's element is loaded once, outside the loop over the tile
        if tile and not p.info[a].batched and p.info[a].shape:
            pre, ea = [f"wa = {ea}"], "wa"
        elif tile and not p.info[b].batched and p.info[b].shape:
            pre, eb = [f"wb = {eb}"], "wb"
        body = p.inner(tile, [f"{target} += {ea} * {eb}"], depth)
        return p.fill(s, tile) + head + ["    " * depth + ln for ln in pre] + body


def _conv_numpy(p, fn, s):
    a, b = s.args
    return f"{fn}({a}, {b}, {p.info[a].batched}, {p.info[b].batched}, {s.attr!r})"


def _conv_loops(p, s, tile, x, w, o, xshape, wshape, oshape, stride, pads, role):
    """One loop nest for conv2d and its two transposes: every (output pixel,
    tap, c_in, c_out) product once; ``role`` picks which array accumulates."""
    H, W, ci = xshape
    kh, kw, _, co = wshape
    ho, wo, _ = oshape
    (pt, _), (pl, _) = pads
    lines = [f"for oy in range({p.extent(ho)}):",
             f"    for dy in range({p.extent(kh)}):",
             f"        y = oy * {stride} + dy - {pt}",
             f"        if y < 0 or y >= {H}:",
             "            continue",
             f"        for ox in range({p.extent(wo)}):",
             f"            for dx in range({p.extent(kw)}):",
             f"                xx = ox * {stride} + dx - {pl}",
             f"                if xx < 0 or xx >= {W}:",
             "                    continue",
             f"                for c in range({p.extent(ci)}):",
             f"                    xi = (y * {W} + xx) * {ci} + c",
             f"                    wi = ((dy * {kw} + dx) * {ci} + c) * {co}",
             f"                    oi = (oy * {wo} + ox) * {co}",
             f"                    for k in range({p.extent(co)}):"]
    ex, ew, eo = (p.el(x, "xi", tile), p.el(w, "wi + k", tile), p.el(o, "oi + k", tile))
    target = {"conv2d": eo, "conv2d_bx": ex, "conv2d_bw": ew}[role]
    prod = {"conv2d": f"{ex} * {ew}", "conv2d_bx": f"{eo} * {ew}", "conv2d_bw": f"{ex} * {eo}"}[role]
    return p.fill(s, tile) + lines + p.inner(tile, [f"{target} += {prod}"], 6)


@structural
class Conv2d:
    helpers = ("_conv2d",)
    op = "conv2d"

    def numpy(self, p, s):
        return _conv_numpy(p, "_conv2d", s)

    def loops(self, p, s, tile):
        x, w = s.args
        stride, pads = s.attr
        return _conv_loops(p, s, tile, x, w, s.name, p.info[x].shape, p.info[w].shape, s.shape, stride, pads,
                           "conv2d")


@structural
class Conv2dBx:
    helpers = ("_conv2d_bx",)
    op = "conv2d_bx"

    def numpy(self, p, s):
        return _conv_numpy(p, "_conv2d_bx", s)

    def loops(self, p, s, tile):
        g, w = s.args
        stride, pads, _ = s.attr
        return _conv_loops(p, s, tile, s.name, w, g, s.shape, p.info[w].shape, p.info[g].shape, stride, pads,
                           "conv2d_bx")


@structural
class Conv2dBw:
    helpers = ("_conv2d_bw",)
    op = "conv2d_bw"

    def numpy(self, p, s):
        return _conv_numpy(p, "_conv2d_bw", s)

    def loops(self, p, s, tile):
        x, g = s.args
        stride, pads, _ = s.attr
        return _conv_loops(p, s, tile, x, s.name, g, p.info[x].shape, s.shape, p.info[g].shape, stride, pads,
                           "conv2d_bw")
