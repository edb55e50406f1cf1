"""How the linear-algebra ops print (`symjac.ops.linalg`): one class per op,
registered in `codegen.structural.STRUCTURAL` as every structural op.

- NumPy target: ``lu`` and ``lsolve`` are helpers vectorized over the batch
  slice (a loop over the n columns, each step a NumPy call on the whole
  stack), so a singular matrix gives its own sample inf/NaN where
  ``np.linalg.solve`` would raise ``LinAlgError`` for the whole batch;
  ``cholesky`` redoes a failing stack one matrix at a time (NaN for a
  matrix that is not positive definite, and for one whose factor holds a
  NaN); ``eigh``, ``eigvalsh``, ``svd``, ``svdvals`` and ``pinv`` call
  ``np.linalg`` through ``_lapack``, which replaces a matrix with a NaN or
  inf entry by zeros for the call and gives that sample NaN (NumPy's
  batched LAPACK would raise for the whole batch or return garbage).
- Numba loops: ``lu`` (Gaussian elimination with partial pivoting),
  ``lsolve`` (two substitutions with its factors), ``det``, ``logabsdet``,
  ``detsign`` (the LU diagonal) and ``cholesky`` are written out per
  sample, on scratch from ``p.zeros``, so the CUDA printer prints them too.
  They beat a per-sample call of Numba's ``np.linalg.solve`` (checks, a
  Fortran-order copy, an allocation, then LAPACK) at every small size: per
  sample, LU and solve hand-written vs ``np.linalg.solve`` in an njit loop,
  20,000 samples, 2026-11-30 on the 2-core dev box: n = 3: 62 vs 299 ns;
  5: 141 vs 443 ns; 10: 569 vs 1078 ns; 20: 3.1 vs 3.5 us.  ``eigh``,
  ``eigvalsh``, ``svd``, ``svdvals`` and ``pinv`` call Numba's
  ``np.linalg`` per sample (iterative algorithms, not worth writing out
  here; Numba's LAPACK bindings come from SciPy); the CUDA printer, which
  has no ``np.linalg``, raises `PrinterError` naming the function.  These
  calls too give a matrix with a NaN or inf entry NaN results (Numba's
  ``np.linalg`` raises for it), as the NumPy form.  The Cholesky loops give an all-NaN factor
  when a pivot is ``<= 0`` or NaN, as the NumPy form.  ``det``, ``detsign``
  and ``logabsdet`` of a matrix with a NaN entry are NaN on every form.

An exactly zero pivot is kept (as LAPACK's getrf): the determinant is 0,
log|det| is -inf, and a solve divides by zero (inf/NaN for that sample,
never a finite wrong value).
"""

from __future__ import annotations

import math

from codegen.printers import PrinterError
from codegen.structural import NUMPY_HELPERS, structural

__all__ = []

NUMPY_HELPERS.update({
    '_lu': '''
def _lu(a):
    # LU with partial pivoting over a stack (..., n, n) -> (..., n + 2, n): permutation, its sign, L and U
    a = np.array(a, dtype=_F)
    n = a.shape[-1]
    lead = a.shape[:-2]
    perm = np.array(np.broadcast_to(np.arange(n, dtype=_F), lead + (n,)))
    sign = np.ones(lead, dtype=_F)
    for c in range(n):
        piv = (c + np.argmax(np.abs(a[..., c:, c]), axis=-1))[..., None]
        sign = np.where(piv[..., 0] != c, -sign, sign)
        for t, ax in ((a, -2), (perm, -1)):
            at = piv[..., None] if ax == -2 else piv
            here = np.array(t[..., c, :] if ax == -2 else t[..., c:c + 1])
            there = np.take_along_axis(t, at, axis=ax)
            np.put_along_axis(t, at, here[..., None, :] if ax == -2 else here, axis=ax)
            if ax == -2:
                t[..., c, :] = there[..., 0, :]
            else:
                t[..., c] = there[..., 0]
        d = a[..., c, c, None]
        f = np.where(d != 0, a[..., c + 1:, c] / np.where(d != 0, d, 1), 0)  # a zero pivot is kept (as getrf)
        a[..., c + 1:, c] = f
        a[..., c + 1:, c + 1:] -= f[..., :, None] * a[..., c, None, c + 1:]
    head = np.zeros(lead + (2, n), dtype=_F)
    head[..., 0, :] = perm
    head[..., 1, 0] = sign
    return np.concatenate([head, a], axis=-2)
''',
    '_lu_solve': '''
def _lu_solve(f, b, trans, vec):
    # A^{-1} B (A^{-T} B with trans) from _lu's factors f; a zero pivot divides by zero (inf/NaN)
    lu = f[..., 2:, :]
    n = lu.shape[-1]
    x = b[..., None] if vec else b
    lead = np.broadcast_shapes(lu.shape[:-2], x.shape[:-2])
    x = np.array(np.broadcast_to(x, lead + x.shape[-2:]), dtype=_F)
    perm = np.broadcast_to(f[..., 0, :], lead + (n,)).astype(np.intp)[..., None]
    if not trans:  # L U x = P b
        x = np.take_along_axis(x, perm, axis=-2)
        for i in range(n):
            x[..., i, :] -= np.einsum("...j,...jk->...k", lu[..., i, :i], x[..., :i, :])
        for i in reversed(range(n)):
            x[..., i, :] = (x[..., i, :] - np.einsum("...j,...jk->...k", lu[..., i, i + 1:], x[..., i + 1:, :])) \\
                / lu[..., i, i, None]
    else:  # U^T L^T P x = b
        for i in range(n):
            x[..., i, :] = (x[..., i, :] - np.einsum("...j,...jk->...k", lu[..., :i, i], x[..., :i, :])) \\
                / lu[..., i, i, None]
        for i in reversed(range(n)):
            x[..., i, :] -= np.einsum("...j,...jk->...k", lu[..., i + 1:, i], x[..., i + 1:, :])
        y = np.empty_like(x)
        np.put_along_axis(y, perm, x, axis=-2)
        x = y
    return x[..., 0] if vec else x
''',
    '_cholesky': '''
def _cholesky(a):
    # a matrix that is not positive definite gives its sample NaN (np.linalg.cholesky raises for the
    # stack); so does one with a NaN in its lower triangle (LAPACK returns a partly NaN factor)
    try:
        out = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        out = np.full(a.shape, np.nan, dtype=_F)
        for i in np.ndindex(*a.shape[:-2]):
            try:
                out[i] = np.linalg.cholesky(a[i])
            except np.linalg.LinAlgError:
                pass
    bad = np.any(np.isnan(out), axis=(-2, -1))
    if np.any(bad):
        out = np.array(out, dtype=_F)
        out[bad] = np.nan
    return out
''',
    '_lapack': '''
def _lapack(fn, a, lower=False):
    # fn (np.linalg on a stack) with a matrix holding a NaN or inf giving its own sample NaN:
    # NumPy's batched LAPACK raises LinAlgError for the whole stack there (svd, pinv) or returns
    # finite garbage (eigvalsh); such a matrix is replaced by zeros for the call.  With lower,
    # only the lower triangle counts (all that eigh reads)
    bad = ~np.all(np.isfinite(np.tril(a) if lower else a), axis=(-2, -1))
    if not np.any(bad):
        return fn(a)
    out = np.array(fn(np.where(bad[..., None, None], 0.0, a)), dtype=_F)
    out[bad] = np.nan
    return out
''',
    '_eigh': '''
def _eigh_packed(a):
    w, v = np.linalg.eigh(a)
    return np.concatenate([w[..., None, :], v], axis=-2)


def _eigh(a):
    return _lapack(_eigh_packed, a, True)
''',
    '_svdvals': '''
def _svdvals(a):
    return np.linalg.svd(a, compute_uv=False)
''',
    '_svd': '''
def _svd_packed(a):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    lead = a.shape[:-2]
    return np.concatenate([u.reshape(lead + (-1,)), s, vt.reshape(lead + (-1,))], axis=-1)


def _svd(a):
    return _lapack(_svd_packed, a)
''',
})


def _scalar_target(p, s, tile):
    return p.slot(s.name) if tile else s.name


def _per_sample(p, s, tile, body, scratch=()):
    """Scratch arrays ((name, size) each, made once per tile) and ``body`` run per sample."""
    lines = []
    for name, n in scratch:
        lines += p.zeros(name, n, "_F")
    return lines + p.inner(tile, body, 0, s)


@structural
class Lu:
    op = "lu"
    helpers = ("_lu",)

    def numpy(self, p, s):
        return f"_lu({s.args[0]})"

    def loops(self, p, s, tile):
        """Gaussian elimination with partial pivoting in the result's own entries:
        perm at 0.., its sign at n, L and U from 2n (a zero pivot is kept, as getrf)."""
        (a,) = s.args
        n = s.shape[1]

        def f(flat):
            return p.out_el(s, flat, tile)

        def lu(i, j):
            return f(f"{2 * n} + {i} * {n} + {j}")

        body = [f"for q in range({p.extent(n * n)}):", f"    {f(f'{2 * n} + q')} = {p.el(a, 'q', tile)}",
                f"for q in range({p.extent(n)}):", f"    {f('q')} = q",
                "la_sg = 1.0",
                f"for c in range({p.extent(n)}):",
                "    piv = c",
                f"    big = abs({lu('c', 'c')})",
                f"    for r in range(c + 1, {n}):",
                f"        if abs({lu('r', 'c')}) > big:",
                f"            big = abs({lu('r', 'c')})",
                "            piv = r",
                "    if piv != c:",
                "        la_sg = -la_sg",
                f"        la_t = {f('c')}",
                f"        {f('c')} = {f('piv')}",
                f"        {f('piv')} = la_t",
                f"        for j in range({p.extent(n)}):",
                f"            la_t = {lu('c', 'j')}",
                f"            {lu('c', 'j')} = {lu('piv', 'j')}",
                f"            {lu('piv', 'j')} = la_t",
                f"    la_d = {lu('c', 'c')}",
                "    if la_d != 0.0:",
                f"        for r in range(c + 1, {n}):",
                f"            la_f = {lu('r', 'c')} / la_d",
                f"            {lu('r', 'c')} = la_f",
                f"            for j in range(c + 1, {n}):",
                f"                {lu('r', 'j')} -= la_f * {lu('c', 'j')}",
                f"{f(str(n))} = la_sg",
                f"for q in range({n + 1}, {2 * n}):",
                f"    {f('q')} = 0.0"]
        return _per_sample(p, s, tile, body)


@structural
class Lsolve:
    op = "lsolve"
    helpers = ("_lu_solve",)

    def numpy(self, p, s):
        _, b, f = s.args
        return f"_lu_solve({f}, {b}, {s.attr}, {len(s.shape) == 1})"

    def loops(self, p, s, tile):
        """Substitutions with the LU factors, in the result's own entries (with a
        scratch copy for the transposed solve's final permutation)."""
        _, b, fac = s.args
        n = p.info[fac].shape[1]
        m = 1 if len(s.shape) == 1 else s.shape[1]

        def x(i, j):
            return p.out_el(s, f"{i} * {m} + {j}" if m > 1 else i, tile)

        def lu(i, j):
            return p.el(fac, f"{2 * n} + {i} * {n} + {j}", tile)

        def perm(i):
            return f"int({p.el(fac, i, tile)})"

        def bel(i, j):
            return p.el(b, f"{i} * {m} + {j}" if m > 1 else i, tile)

        rows = f"for i in range({p.extent(n)}):"
        cols = f"for j in range({p.extent(m)}):"
        back = [f"for ii in range({p.extent(n)}):", f"    i = {n - 1} - ii"]
        if not s.attr:  # L U x = P b
            body = [rows, "    la_p = " + perm("i"), "    " + cols, f"        {x('i', 'j')} = {bel('la_p', 'j')}",
                    rows, "    " + cols, f"        la_acc = {x('i', 'j')}", "        for k in range(i):",
                    f"            la_acc -= {lu('i', 'k')} * {x('k', 'j')}", f"        {x('i', 'j')} = la_acc",
                    *back, "    " + cols, f"        la_acc = {x('i', 'j')}", f"        for k in range(i + 1, {n}):",
                    f"            la_acc -= {lu('i', 'k')} * {x('k', 'j')}",
                    f"        {x('i', 'j')} = la_acc / {lu('i', 'i')}"]
            return _per_sample(p, s, tile, body)
        w = f"{s.name}w"  # U^T L^T P x = b
        body = [rows, "    " + cols, f"        la_acc = {bel('i', 'j')}", "        for k in range(i):",
                f"            la_acc -= {lu('k', 'i')} * {w}[k * {m} + j]",
                f"        {w}[i * {m} + j] = la_acc / {lu('i', 'i')}",
                *back, "    " + cols, f"        la_acc = {w}[i * {m} + j]", f"        for k in range(i + 1, {n}):",
                f"            la_acc -= {lu('k', 'i')} * {w}[k * {m} + j]", f"        {w}[i * {m} + j] = la_acc",
                rows, "    la_p = " + perm("i"), "    " + cols, f"        {x('la_p', 'j')} = {w}[i * {m} + j]"]
        return _per_sample(p, s, tile, body, [(w, n * m)])


class _FromLu:
    """det, logabsdet and detsign: the LU diagonal (arguments: A, lu(A)).  A matrix with a NaN
    entry gives NaN, all three (NumPy's slogdet gives it sign 1, and a zero pivot would skip it)."""

    start = finish = None  # the accumulator's first value, and the update with a diagonal entry ``d``

    def loops(self, p, s, tile):
        a, fac = s.args
        n = p.info[fac].shape[1]
        target = _scalar_target(p, s, tile)
        body = [f"la_acc = {self.start.format(sign=p.el(fac, str(n), tile))}",
                f"for c in range({p.extent(n)}):",
                f"    la_d = {p.el(fac, f'{2 * n} + c * {n + 1}', tile)}",
                *["    " + ln for ln in self.update],
                f"for q in range({p.extent(n * n)}):",
                f"    if {p.el(a, 'q', tile)} != {p.el(a, 'q', tile)}:",
                "        la_acc = np.nan",
                f"{target} = la_acc"]
        return _per_sample(p, s, tile, body)

    def numpy(self, p, s):
        a, f = s.args
        value = self.vectorized.format(f=f, diag=f"np.diagonal({f}[..., 2:, :], 0, -2, -1)")
        return f"np.where(np.any(np.isnan({a}), axis=(-2, -1)), np.nan, {value})"


@structural
class Det(_FromLu):
    op = "det"
    start = "{sign}"
    update = ["la_acc *= la_d"]
    vectorized = "{f}[..., 1, 0] * np.prod({diag}, axis=-1)"


@structural
class Logabsdet(_FromLu):
    op = "logabsdet"
    start = "0.0"
    update = ["la_acc += math.log(abs(la_d)) if la_d != 0.0 else -np.inf"]
    vectorized = "np.sum(np.log(np.abs({diag})), axis=-1)"


@structural
class Detsign(_FromLu):
    op = "detsign"
    start = "{sign}"
    # a NaN pivot (from an inf entry: inf - inf) gives NaN, as np.sign in the NumPy form
    update = ["la_acc = -la_acc if la_d < 0.0 else (la_acc if la_d > 0.0 else "
              "(la_acc * 0.0 if la_d == 0.0 else np.nan))"]
    vectorized = "{f}[..., 1, 0] * np.prod(np.sign({diag}), axis=-1)"


@structural
class Cholesky:
    op = "cholesky"
    helpers = ("_cholesky",)

    def numpy(self, p, s):
        return f"_cholesky({s.args[0]})"

    def loops(self, p, s, tile):
        (a,) = s.args
        n = s.shape[0]

        def low(flat):
            return p.out_el(s, flat, tile)

        # Cholesky-Banachiewicz, row by row, from the lower triangle of A.  A pivot that is not
        # positive (or NaN: a NaN entry reaches a pivot) makes the whole factor NaN, as the NumPy form
        body = ["la_ok = True",
                f"for i in range({p.extent(n)}):",
                "    for j in range(i + 1):",
                f"        la_acc = {p.el(a, f'i * {n} + j', tile)}",
                "        for k in range(j):",
                f"            la_acc -= {low(f'i * {n} + k')} * {low(f'j * {n} + k')}",
                "        if i == j:",
                "            if la_acc > 0.0:",
                f"                {low(f'i * {n} + i')} = math.sqrt(la_acc)",
                "            else:",
                "                la_ok = False",
                f"                {low(f'i * {n} + i')} = np.nan",
                "        else:",
                f"            {low(f'i * {n} + j')} = la_acc / {low(f'j * {n} + j')}",
                f"    for j in range(i + 1, {n}):",
                f"        {low(f'i * {n} + j')} = 0.0",
                "if not la_ok:",
                f"    for q in range({p.extent(n * n)}):",
                f"        {low('q')} = np.nan"]
        return _per_sample(p, s, tile, body)


def _lapack_loops(p, s, tile, call, rows, cols, outputs, lower=False):
    """Per sample: the argument copied into a C-order (rows, cols) matrix (with ``lower``, its
    lower triangle mirrored: all that eigh reads), ``call`` (Numba's np.linalg, binding the names
    of ``outputs``), and the results copied out; ``outputs`` lists (name, shape, flat offset in the
    result)."""
    if p.target == "cuda":
        raise PrinterError(f"the CUDA backend cannot print np.linalg.{s.op} (no LAPACK on the GPU); use "
                           "backend='numba' or 'numpy' for models with eigh, svd or pinv")
    (a,) = s.args
    m = f"{s.name}m"
    # a matrix with a NaN or inf entry (Numba's np.linalg raises for it) is replaced by zeros for the
    # call, and its sample's results are NaN, as the NumPy form's
    body = ["la_ok = True",
            f"for i in range({p.extent(rows)}):",
            f"    for j in range({p.extent(cols)}):",
            f"        {m}[i, j] = {p.el(a, f'max(i, j) * {cols} + min(i, j)' if lower else f'i * {cols} + j', tile)}",
            f"        if not abs({m}[i, j]) < np.inf:",
            "            la_ok = False",
            "if not la_ok:",
            f"    for i in range({p.extent(rows)}):",
            f"        for j in range({p.extent(cols)}):",
            f"            {m}[i, j] = 0.0",
            call.format(m=m)]
    for name, shape, offset in outputs:
        if len(shape) == 1:
            body += [f"for i in range({p.extent(shape[0])}):",
                     f"    {p.out_el(s, f'{offset} + i' if offset else 'i', tile)} = {name}[i]"]
        else:
            at = f"{offset} + i * {shape[1]} + j" if offset else f"i * {shape[1]} + j"
            body += [f"for i in range({p.extent(shape[0])}):",
                     f"    for j in range({p.extent(shape[1])}):",
                     f"        {p.out_el(s, at, tile)} = {name}[i, j]"]
    body += ["if not la_ok:",
             f"    for q in range({p.extent(math.prod(s.shape))}):",
             f"        {p.out_el(s, 'q', tile)} = np.nan"]
    return [f"{m} = np.empty(({rows}, {cols}), dtype=_F)"] + p.inner(tile, body, 0, s)


@structural
class Eigh:
    op = "eigh"
    helpers = ("_eigh", "_lapack")

    def numpy(self, p, s):
        return f"_eigh({s.args[0]})"

    def loops(self, p, s, tile):
        n = s.shape[1]
        return _lapack_loops(p, s, tile, "la_w, la_v = np.linalg.eigh({m})", n, n,
                             [("la_w", (n,), 0), ("la_v", (n, n), n)], lower=True)


@structural
class Svd:
    op = "svd"
    helpers = ("_svd", "_lapack")

    def numpy(self, p, s):
        return f"_svd({s.args[0]})"

    def loops(self, p, s, tile):
        m, n = p.info[s.args[0]].shape
        k = min(m, n)
        return _lapack_loops(p, s, tile, "la_u, la_s, la_vt = np.linalg.svd({m}, full_matrices=False)", m, n,
                             [("la_u", (m, k), 0), ("la_s", (k,), m * k), ("la_vt", (k, n), m * k + k)])


@structural
class Pinv:
    op = "pinv"
    helpers = ("_lapack",)

    def numpy(self, p, s):
        return f"_lapack(np.linalg.pinv, {s.args[0]})"

    def loops(self, p, s, tile):
        m, n = p.info[s.args[0]].shape
        return _lapack_loops(p, s, tile, "la_x = np.linalg.pinv({m})", m, n, [("la_x", (n, m), 0)])


@structural
class Eigvalsh:
    op = "eigvalsh"
    helpers = ("_lapack",)

    def numpy(self, p, s):
        return f"_lapack(np.linalg.eigvalsh, {s.args[0]}, True)"

    def loops(self, p, s, tile):
        n = s.shape[0]
        return _lapack_loops(p, s, tile, "la_w = np.linalg.eigvalsh({m})", n, n, [("la_w", (n,), 0)], lower=True)


@structural
class Svdvals:
    op = "svdvals"
    helpers = ("_svdvals", "_lapack")

    def numpy(self, p, s):
        return f"_lapack(_svdvals, {s.args[0]})"

    def loops(self, p, s, tile):
        m, n = p.info[s.args[0]].shape
        # Numba's np.linalg.svd takes no compute_uv
        return _lapack_loops(p, s, tile, "la_u, la_s, la_vt = np.linalg.svd({m}, full_matrices=False)", m, n,
                             [("la_s", (min(m, n),), 0)])
