"""Linear algebra: structural ops evaluated by LAPACK-style factorizations,
with matrix derivative rules written in other tensor ops.

- ``lu(A)``: LU with partial pivoting (not differentiable by itself); every
  op below that needs ``A^{-1}`` reads it, so one matrix is factored once
  however many solves its derivatives make (one per forward seed, the
  transposed solves of reverse mode, det's inverse): each solve is O(n^2);
- ``lsolve(A, B)``: ``A^{-1} B`` or ``A^{-T} B`` (``B`` a vector or a
  matrix); ``inv(A)`` is ``lsolve(A, I)``;
- ``det``, ``logabsdet``, ``detsign``: the determinant and ``np.linalg.slogdet``'s
  two parts, from the LU diagonal (the sign is piecewise constant: derivative zero);
- ``cholesky(A)``: the lower factor, reading ``A``'s lower triangle as NumPy does;
- ``eigh(A)``: ascending eigenvalues and eigenvectors of a symmetric matrix,
  packed in one ``(n + 1, n)`` tensor (row 0 the eigenvalues, rows 1.. the
  eigenvector matrix), so one factorization serves both; `eigh_parts` takes
  the two views out;
- ``eigvalsh(A)``: the eigenvalues alone (derivative finite at repeated ones);
- ``svd(A)``: the thin SVD, packed as one flat tensor (U, s, Vt; `svd_parts`);
  ``svdvals(A)``: the singular values alone;
- ``pinv(A)``: the Moore-Penrose inverse of a full-rank matrix.

Every rule is an expression of tensor ops (``lsolve``, ``einsum``,
``transpose``, elementwise math), so second derivatives and reverse mode need
nothing more.  Conventions (as JAX): the derivatives of ``cholesky`` and
``eigh`` are those of the function of the symmetrized matrix ``(A + A^T)/2``
(their values read only the lower triangle, as NumPy's); at a singular matrix
the derivatives of ``lsolve``/``det``/``logabsdet`` are inf/NaN, at repeated
eigenvalues (singular values) the derivatives of the eigenvectors (singular
vectors) are inf/NaN, while those of the eigenvalues stay finite: in ``eigh``'s
and ``svd``'s transposes a structurally zero cotangent of the vectors (`_zero_at`:
a constant zero there, an ``embed`` of the values' part alone) adds nothing, so
the values alone get ``eigvalsh``'s (``svdvals``') rule, with no gap factor.
Values of invalid matrices (as the printed forms, `codegen.linalg`): a
``cholesky`` that fails is all NaN; a matrix with a NaN entry has NaN ``det``,
``detsign`` and ``logabsdet``; ``eigh``, ``eigvalsh``, ``svd``, ``svdvals`` and
``pinv`` of a matrix with a NaN or inf entry are NaN.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.ir import constant_value, intern, make, tconst
from symjac.ops.array import concat, embed, indices, view
from symjac.ops.contract import einsum
from symjac.ops.define import deftensor
from symjac.ops.tensor import bcast, reshape, transpose, tsum

__all__ = ["lu", "lsolve", "inv", "det", "logabsdet", "detsign", "cholesky", "eigh", "eigh_parts", "eigvalsh", "svd",
           "svd_parts", "svdvals", "pinv"]


def _square(a, what):
    if len(a.shape) != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{what}: a square matrix (n, n) is needed, got shape {a.shape}")
    return a.shape[0]


def _t(a):
    return transpose(a, (1, 0))


def _mm(a, b):
    """``a @ b`` for a matrix ``a`` and a vector or matrix ``b``."""
    return einsum("ij,j->i", a, b) if len(b.shape) == 1 else einsum("ij,jk->ik", a, b)


def _sym(a):
    return make("mul", make("add", a, _t(a)), 0.5)


def _eye(n):
    return tconst(np.eye(n))


def _add(a, b):
    return b if a is None else a if b is None else make("add", a, b)


def _nan_unless_finite(fn, a, shape, lower=False):
    """``fn(a)``, or NaN of ``shape`` when ``a`` (its lower triangle with ``lower``) holds a NaN or
    inf (LAPACK's iterations raise or return garbage there), as the printed forms."""
    a = np.asarray(a, dtype=float)
    if not np.all(np.isfinite(np.tril(a) if lower else a)):
        return np.full(shape, np.nan)
    return fn(a)


def _nan_if_nan(a, value):
    """det, sign and log|det| of a matrix with a NaN entry: NaN (NumPy's slogdet gives sign 1)."""
    return np.nan if np.any(np.isnan(a)) else value


def _zero_at(g, offset, strides, shape):
    """Whether the entries of ``g`` at the affine positions (offset, strides, shape) are
    structurally zero: a cotangent that never reached that part of a packed result
    (a constant with zeros there, an ``embed`` of other positions, a sum of such)."""
    return _zero_positions(g, indices(offset, strides, shape).reshape(-1))


def _zero_positions(g, pos):
    value = constant_value(g)
    if value is not None:  # NaN counts as non-zero
        return not np.any((value if np.ndim(value) == 0 else np.reshape(value, -1)[pos]) != 0.0)
    if g.op == "embed":
        _, off, st = g.attr
        if not np.intersect1d(indices(off, st, g.args[0].shape).reshape(-1), pos).size:
            return True
        return constant_value(g.args[0]) is not None and not np.any(constant_value(g.args[0]) != 0.0)
    if g.op == "add":
        return all(_zero_positions(a, pos) for a in g.args)
    if g.op in ("neg", "reshape") and g.args[0].shape and math.prod(g.args[0].shape) == math.prod(g.shape):
        return _zero_positions(g.args[0], pos)  # C-order reshape keeps the flat positions
    return False


# -- LU factorization, solve and inverse -----------------------------------------------------------

def lu(a):
    """The LU factorization of ``a`` (n, n) with partial pivoting, packed (n + 2, n):
    row 0 the permutation (row i of PA is row perm[i] of A), row 1 the
    permutation's sign (then zeros), rows 2.. L (unit, below the diagonal) and U.
    Not differentiable by itself: the ops that read it (`lsolve`, `det`...)
    take ``a`` too and differentiate in it, so every solve with one matrix
    shares one factorization (CSE), in forward and reverse mode alike."""
    n = _square(a, "lu")
    return intern("lu", (a,), None, "float", (n + 2, n))


def _lu_eval(v, attr):
    a = np.array(v[0], dtype=float)
    n = a.shape[0]
    perm, sign = np.arange(n, dtype=float), 1.0
    for c in range(n):
        piv = c + int(np.argmax(np.abs(a[c:, c])))
        if piv != c:
            a[[c, piv]], perm[[c, piv]], sign = a[[piv, c]], perm[[piv, c]], -sign
        if a[c, c] != 0.0:  # a zero pivot (exactly singular) is kept, as LAPACK's getrf
            a[c + 1:, c] /= a[c, c]
            a[c + 1:, c + 1:] -= np.outer(a[c + 1:, c], a[c, c + 1:])
    head = np.zeros((2, n))
    head[0], head[1, 0] = perm, sign
    return np.concatenate([head, a])


deftensor("lu", 1, evaluate=_lu_eval, build=lambda args, attr: lu(args[0]),
          cost=lambda node: node.shape[1] ** 3 // 3 + 1,
          differentiable=False, doc="LU with partial pivoting, packed (n + 2, n): permutation, sign, L and U")


def lsolve(a, b, trans=False):
    """``A^{-1} B`` (``A^{-T} B`` with ``trans``) for a square ``a`` (n, n) and ``b`` of
    shape (n,) or (n, k), from the LU factorization `lu` of ``a``."""
    n = _square(a, "lsolve")
    if len(b.shape) not in (1, 2) or b.shape[0] != n:
        raise ValueError(f"lsolve: the right-hand side must have shape ({n},) or ({n}, k), got {b.shape}")
    return intern("lsolve", (a, b, lu(a)), bool(trans), "float", b.shape)


def inv(a):
    """``A^{-1}``."""
    return lsolve(a, _eye(_square(a, "inv")))


def _lsolve_jvp(node, tangents):
    # X = A^{-1} B: dX = A^{-1} (dB - dA X); transposed: dX = A^{-T} (dB - dA^T X)
    a, _, _ = node.args
    ta, tb = tangents[:2]
    rhs = tb
    if ta is not None:
        dax = _mm(_t(ta) if node.attr else ta, node)
        rhs = make("neg", dax) if rhs is None else make("sub", rhs, dax)
    return None if rhs is None else lsolve(a, rhs, node.attr)


def _lsolve_transpose(node, g):
    # B-bar = A^{-T} G, A-bar = -B-bar X^T (transposed: B-bar = A^{-1} G, A-bar = -X B-bar^T)
    a, _, _ = node.args
    gb = lsolve(a, g, not node.attr)
    left, right = (node, gb) if node.attr else (gb, node)
    outer = einsum("i,j->ij", left, right) if len(node.shape) == 1 else einsum("ik,jk->ij", left, right)
    return [make("neg", outer), gb, None]


def _lsolve_eval(v, attr):
    return np.linalg.solve(np.transpose(v[0]) if attr else v[0], v[1])


def _lsolve_cost(node):
    n = node.args[0].shape[0]
    return 2 * n * n * math.prod(node.shape[1:])


deftensor("lsolve", 3, evaluate=_lsolve_eval, build=lambda args, attr: lsolve(args[0], args[1], attr),
          cost=_lsolve_cost, jvp=_lsolve_jvp, transpose=_lsolve_transpose,
          doc="A^{-1} B or A^{-T} B (attr: transposed) from A's LU factors (arguments: A, B, lu(A))")


# -- determinants -----------------------------------------------------------------------------

def det(a):
    """``np.linalg.det`` of a square matrix, from its LU factors."""
    _square(a, "det")
    return intern("det", (a, lu(a)), None, "float", ())


def logabsdet(a):
    """``log |det A|`` (``np.linalg.slogdet``'s second part)."""
    _square(a, "logabsdet")
    return intern("logabsdet", (a, lu(a)), None, "float", ())


def detsign(a):
    """The sign of ``det A`` (-1, 0 or 1; ``np.linalg.slogdet``'s first part)."""
    _square(a, "detsign")
    return intern("detsign", (a, lu(a)), None, "float", ())


def _trace_inv(a, t):
    """tr(A^{-1} T): the derivative of log|det A| along T."""
    return einsum("ij,ji->", inv(a), t)


def _scaled_inv_t(a, g):
    """g A^{-T}: the cotangent of log|det A| for a cotangent g."""
    return make("mul", g, _t(inv(a)))


def _diag_cost(node):
    return node.args[0].shape[0] + 1


deftensor("det", 2, evaluate=lambda v, attr: _nan_if_nan(v[0], np.linalg.det(v[0])),
          build=lambda args, attr: det(args[0]),
          cost=_diag_cost,
          jvp=lambda node, ts: None if ts[0] is None else make("mul", node, _trace_inv(node.args[0], ts[0])),
          transpose=lambda node, g: [_scaled_inv_t(node.args[0], make("mul", g, node)), None],
          doc="determinant from the LU factors (arguments: A, lu(A))")
deftensor("logabsdet", 2, evaluate=lambda v, attr: _nan_if_nan(v[0], np.linalg.slogdet(v[0])[1]),
          build=lambda args, attr: logabsdet(args[0]), cost=_diag_cost,
          jvp=lambda node, ts: None if ts[0] is None else _trace_inv(node.args[0], ts[0]),
          transpose=lambda node, g: [_scaled_inv_t(node.args[0], g), None],
          doc="log |det A| from the LU factors (arguments: A, lu(A))")
deftensor("detsign", 2, evaluate=lambda v, attr: _nan_if_nan(v[0], np.linalg.slogdet(v[0])[0]),
          build=lambda args, attr: detsign(args[0]), cost=_diag_cost, differentiable=False,
          doc="sign of det A: -1, 0 or 1, piecewise constant (arguments: A, lu(A))")


# -- Cholesky -------------------------------------------------------------------------------------

def cholesky(a):
    """The lower Cholesky factor of a symmetric positive definite matrix (from its lower triangle)."""
    _square(a, "cholesky")
    return intern("cholesky", (a,), None, "float", a.shape)


def _phi_mask(n):
    """The lower triangle with a halved diagonal (Phi of the Cholesky derivative)."""
    return tconst(np.tril(np.ones((n, n)), -1) + 0.5 * np.eye(n))


def _cholesky_jvp(node, tangents):
    # dL = L Phi(L^{-1} S L^{-T}), S = (dA + dA^T)/2 (JAX's convention)
    (t,) = tangents
    if t is None:
        return None
    low = node
    y = lsolve(low, _sym(t))  # L^{-1} S
    tmp = lsolve(low, _t(y))  # L^{-1} S L^{-T} (S symmetric)
    return einsum("ij,jk->ik", low, make("mul", tmp, _phi_mask(low.shape[0])))


def _cholesky_transpose(node, g):
    # the JVP's steps in reverse, each transposed
    low = node
    phibar = einsum("ji,jk->ik", low, g)
    tmpbar = make("mul", phibar, _phi_mask(low.shape[0]))
    ybar = _t(lsolve(_t(low), tmpbar))
    sbar = lsolve(_t(low), ybar)
    return [_sym(sbar)]


def _cholesky_eval(v, attr):
    # not positive definite (a pivot <= 0 or NaN): all NaN, as the printed forms
    try:
        low = np.linalg.cholesky(v[0])
    except np.linalg.LinAlgError:
        return np.full(np.shape(v[0]), np.nan)
    return np.full(low.shape, np.nan) if np.any(np.isnan(low)) else low


deftensor("cholesky", 1, evaluate=_cholesky_eval, build=lambda args, attr: cholesky(args[0]),
          cost=lambda node: node.shape[0] ** 3 // 3 + 1, jvp=_cholesky_jvp, transpose=_cholesky_transpose,
          doc="lower Cholesky factor (reads the lower triangle)")


# -- symmetric eigenproblem ----------------------------------------------------------------------------

def eigh(a):
    """``np.linalg.eigh(a)`` packed: (n + 1, n), row 0 the ascending eigenvalues, rows 1.. the eigenvectors
    (columns).  Reads the lower triangle, as NumPy's default ``UPLO='L'``."""
    n = _square(a, "eigh")
    return intern("eigh", (a,), None, "float", (n + 1, n))


def eigh_parts(e):
    """(w, V) of a packed ``eigh`` tensor."""
    n = e.shape[1]
    return view(e, 0, (1,), (n,)), view(e, n, (n, 1), (n, n))


def _gap_inverse(w):
    """F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it (inf where w_i = w_j, i != j)."""
    n = w.shape[0]
    gaps = make("sub", bcast(w, (n, n), (1,)), bcast(w, (n, n), (0,)))
    return make("div", tconst(1.0 - np.eye(n)), make("add", gaps, _eye(n)))


def _eigh_jvp(node, tangents):
    # M = V^T S V: dw = diag(M), dV = V (F o M)
    (t,) = tangents
    if t is None:
        return None
    w, vecs = eigh_parts(node)
    n = w.shape[0]
    m = einsum("ij,jk->ik", einsum("ji,jk->ik", vecs, _sym(t)), vecs)
    dw = view(m, 0, (n + 1,), (n,))
    dv = einsum("ij,jk->ik", vecs, make("mul", _gap_inverse(w), m))
    return concat([reshape(dw, (1, n)), dv], 0)


def _eigh_transpose(node, g):
    # A-bar = sym(V (diag(w-bar) + F o (V^T V-bar)) V^T).  A V-bar that is structurally zero
    # (the eigenvectors unused, or used with no derivative) adds nothing: the eigenvalues' part
    # alone is eigvalsh's rule V diag(w-bar) V^T, finite at repeated eigenvalues (F o 0 would be NaN)
    w, vecs = eigh_parts(node)
    n = w.shape[0]
    gw, gv = eigh_parts(g)
    inner = None if _zero_at(g, 0, (1,), (n,)) else embed(gw, (n, n), 0, (n + 1,))
    if not _zero_at(g, n, (n, 1), (n, n)):
        inner = _add(inner, make("mul", _gap_inverse(w), einsum("ji,jk->ik", vecs, gv)))
    if inner is None:
        return [None]
    return [_sym(einsum("ij,kj->ik", einsum("ij,jk->ik", vecs, inner), vecs))]


def _eigh_eval(v, attr):
    def packed(a):
        w, vecs = np.linalg.eigh(a)
        return np.concatenate([w[None, :], vecs], axis=0)
    n = np.shape(v[0])[0]
    return _nan_unless_finite(packed, v[0], (n + 1, n), lower=True)


deftensor("eigh", 1, evaluate=_eigh_eval, build=lambda args, attr: eigh(args[0]),
          cost=lambda node: 10 * node.shape[1] ** 3, jvp=_eigh_jvp, transpose=_eigh_transpose,
          doc="symmetric eigendecomposition, packed (n + 1, n): eigenvalues, then eigenvectors")


def eigvalsh(a):
    """``np.linalg.eigvalsh(a)``: the ascending eigenvalues alone.  Its derivative
    needs no eigenvalue gaps (finite at repeated eigenvalues, unlike the
    eigenvectors'); the eigenvectors in its rules come from ``eigh(a)``."""
    n = _square(a, "eigvalsh")
    return intern("eigvalsh", (a,), None, "float", (n,))


def _eigvalsh_jvp(node, tangents):
    # dw_i = (V^T dA V)_ii = sum_j V_ji (dA V)_ji
    (t,) = tangents
    if t is None:
        return None
    _, vecs = eigh_parts(eigh(node.args[0]))
    return tsum(make("mul", vecs, einsum("jk,ki->ji", t, vecs)), (0,))


def _eigvalsh_transpose(node, g):
    _, vecs = eigh_parts(eigh(node.args[0]))
    n = node.shape[0]
    return [einsum("ij,kj->ik", make("mul", vecs, bcast(g, (n, n), (1,))), vecs)]  # V diag(g) V^T


deftensor("eigvalsh", 1,
          evaluate=lambda v, attr: _nan_unless_finite(np.linalg.eigvalsh, v[0], np.shape(v[0])[:1], True),
          build=lambda args, attr: eigvalsh(args[0]),
          cost=lambda node: 4 * node.shape[0] ** 3, jvp=_eigvalsh_jvp, transpose=_eigvalsh_transpose,
          doc="eigenvalues of a symmetric matrix, ascending")


# -- singular value decomposition --------------------------------------------------------------------

def svd(a):
    """The thin SVD of ``a`` (m, n) packed flat: U (m, k), s (k,), Vt (k, n), k = min(m, n)."""
    if len(a.shape) != 2:
        raise ValueError(f"svd: a matrix (m, n) is needed, got shape {a.shape}")
    m, n = a.shape
    k = min(m, n)
    return intern("svd", (a,), None, "float", (m * k + k + k * n,))


def svd_parts(p, m, n):
    """(U, s, Vt) of a packed ``svd`` tensor of an (m, n) matrix."""
    k = min(m, n)
    return (view(p, 0, (k, 1), (m, k)), view(p, m * k, (1,), (k,)), view(p, m * k + k, (n, 1), (k, n)))


def _pack_svd(u, s, vt):
    return concat([reshape(u, (math.prod(u.shape),)), s, reshape(vt, (math.prod(vt.shape),))], 0)


def _svd_gaps(s):
    """F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it."""
    k = s.shape[0]
    sj, si = bcast(s, (k, k), (1,)), bcast(s, (k, k), (0,))
    diffs = make("mul", make("add", sj, si), make("sub", sj, si))
    return make("div", tconst(1.0 - np.eye(k)), make("add", diffs, _eye(k))), sj, si


def _svd_jvp(node, tangents):
    # JAX's svd_jvp_rule (real, thin)
    (t,) = tangents
    if t is None:
        return None
    a = node.args[0]
    m, n = a.shape
    u, s, vt = svd_parts(node, m, n)
    k = s.shape[0]
    f, sj, si = _svd_gaps(s)
    ds_mat = einsum("ij,jk->ik", einsum("ji,jk->ik", u, t), _t(vt))  # U^T dA V
    ds = view(ds_mat, 0, (k + 1,), (k,))
    dss = make("mul", sj, ds_mat)  # dS_ij s_j
    sds = make("mul", si, ds_mat)  # s_i dS_ij
    du = einsum("ij,jk->ik", u, make("mul", f, make("add", dss, _t(dss))))
    dv = einsum("ji,jk->ik", vt, make("mul", f, make("add", sds, _t(sds))))  # V (...)
    if m > n:
        dav = einsum("ij,kj->ik", t, vt)  # dA V
        proj = make("sub", dav, einsum("ij,jk->ik", u, einsum("ji,jk->ik", u, dav)))
        du = make("add", du, make("div", proj, bcast(s, (m, k), (1,))))
    if n > m:
        dahu = einsum("ji,jk->ik", t, u)  # dA^T U
        proj = make("sub", dahu, einsum("ji,jk->ik", vt, einsum("ij,jk->ik", vt, dahu)))
        dv = make("add", dv, make("div", proj, bcast(s, (n, k), (1,))))
    return _pack_svd(du, ds, _t(dv))


def _svd_transpose(node, g):
    # the JVP's linear map in dA, transposed term by term.  A structurally zero cotangent of U or
    # Vt (the singular vectors unused) adds nothing: the singular values' part alone is svdvals'
    # rule U diag(s-bar) Vt, finite at repeated and zero singular values (F o 0, 0 / s: NaN)
    a = node.args[0]
    m, n = a.shape
    u, s, vt = svd_parts(node, m, n)
    gu, gs, gvt = svd_parts(g, m, n)
    k = s.shape[0]
    has_u = not _zero_at(g, 0, (k, 1), (m, k))
    has_s = not _zero_at(g, m * k, (1,), (k,))
    has_v = not _zero_at(g, m * k + k, (n, 1), (k, n))
    gv = _t(gvt)
    # du = U (F o (dS S + S dS^T)) [+ (I - U U^T) dA V S^{-1}]; dv = V (F o (S dS + dS^T S)) [+ ...]
    # <C, dS s_j + (dS s_j)^T> = <(C + C^T) s_j ..., dS>: collect the coefficient of dS
    gds = embed(gs, (k, k), 0, (k + 1,)) if has_s else None
    if has_u or has_v:
        f, sj, si = _svd_gaps(s)
        if has_u:
            cu = make("mul", f, einsum("ji,jk->ik", u, gu))  # F o (U^T Gu)
            gds = _add(gds, make("mul", make("add", cu, _t(cu)), sj))
        if has_v:
            cv = make("mul", f, einsum("ij,jk->ik", vt, gv))  # F o (V^T Gv)
            gds = _add(gds, make("mul", make("add", cv, _t(cv)), si))
    ga = None if gds is None else einsum("ij,jk->ik", einsum("ij,jk->ik", u, gds), vt)  # U G V^T
    if m > n and has_u:
        gus = make("div", gu, bcast(s, (m, k), (1,)))
        proj = make("sub", gus, einsum("ij,jk->ik", u, einsum("ji,jk->ik", u, gus)))
        ga = _add(ga, einsum("ij,jk->ik", proj, vt))
    if n > m and has_v:
        gvs = make("div", gv, bcast(s, (n, k), (1,)))
        proj = make("sub", gvs, einsum("ji,jk->ik", vt, einsum("ij,jk->ik", vt, gvs)))
        ga = _add(ga, einsum("ij,kj->ki", proj, u))
    return [ga]


def _svd_eval(v, attr):
    def packed(a):
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        return np.concatenate([u.reshape(-1), s, vt.reshape(-1)])
    m, n = np.shape(v[0])
    k = min(m, n)
    return _nan_unless_finite(packed, v[0], (m * k + k + k * n,))


def svdvals(a):
    """The singular values of ``a`` (m, n), descending (``np.linalg.svd(a, compute_uv=False)``).  Its
    derivative needs no singular-value gaps; the singular vectors in its rules come from ``svd(a)``."""
    if len(a.shape) != 2:
        raise ValueError(f"svdvals: a matrix (m, n) is needed, got shape {a.shape}")
    return intern("svdvals", (a,), None, "float", (min(a.shape),))


def _svdvals_jvp(node, tangents):
    # ds_k = (U^T dA V)_kk = sum_i U_ik (dA V)_ik
    (t,) = tangents
    if t is None:
        return None
    a = node.args[0]
    u, _, vt = svd_parts(svd(a), *a.shape)
    return tsum(make("mul", u, einsum("ij,kj->ik", t, vt)), (0,))


def _svdvals_transpose(node, g):
    a = node.args[0]
    m, n = a.shape
    u, _, vt = svd_parts(svd(a), m, n)
    return [einsum("ik,kj->ij", make("mul", u, bcast(g, (m, node.shape[0]), (1,))), vt)]  # U diag(g) Vt


deftensor("svdvals", 1, evaluate=lambda v, attr: _nan_unless_finite(lambda a: np.linalg.svd(a, compute_uv=False),
                                                                  v[0], (min(np.shape(v[0])),)),
          build=lambda args, attr: svdvals(args[0]),
          cost=lambda node: 10 * max(node.args[0].shape) * min(node.args[0].shape) ** 2,
          jvp=_svdvals_jvp, transpose=_svdvals_transpose, doc="singular values, descending")
deftensor("svd", 1, evaluate=_svd_eval, build=lambda args, attr: svd(args[0]),
          cost=lambda node: 20 * max(node.args[0].shape) * min(node.args[0].shape) ** 2,
          jvp=_svd_jvp, transpose=_svd_transpose,
          doc="thin singular value decomposition, packed flat: U, s, Vt")


# -- pseudo-inverse ------------------------------------------------------------------------------------

def pinv(a):
    """The Moore-Penrose inverse of ``a`` (m, n); its derivative holds where the rank is constant (full rank)."""
    if len(a.shape) != 2:
        raise ValueError(f"pinv: a matrix (m, n) is needed, got shape {a.shape}")
    return intern("pinv", (a,), None, "float", (a.shape[1], a.shape[0]))


def _pinv_lin(x, a, t):
    # Golub-Pereyra: dX = -X dA X + X X^T dA^T (I - A X) + (I - X A) dA^T X^T X
    m, n = a.shape
    xdax = einsum("ij,jk->ik", einsum("ij,jk->ik", x, t), x)
    left = make("sub", _eye(m), einsum("ij,jk->ik", a, x))
    right = make("sub", _eye(n), einsum("ij,jk->ik", x, a))
    xxt = einsum("ij,kj->ik", x, x)
    term2 = einsum("ij,jk->ik", einsum("ij,kj->ik", xxt, t), left)  # X X^T dA^T (I - A X)
    xtx = einsum("ji,jk->ik", x, x)
    term3 = einsum("ij,jk->ik", einsum("ij,kj->ik", right, t), xtx)  # (I - X A) dA^T X^T X
    return make("add", make("sub", term2, xdax), term3)


def _pinv_transpose(node, g):
    # each term <G, P dA Q> = <P^T G Q^T, dA>, and <G, P dA^T Q> = <Q G^T P, dA>
    x, a = node, node.args[0]
    m, n = a.shape
    left = make("sub", _eye(m), einsum("ij,jk->ik", a, x))
    right = make("sub", _eye(n), einsum("ij,jk->ik", x, a))
    xxt = einsum("ij,kj->ik", x, x)
    xtx = einsum("ji,jk->ik", x, x)
    t1 = einsum("ji,jk->ik", x, einsum("ij,kj->ik", g, x))  # X^T G X^T
    t2 = einsum("ij,kj->ik", einsum("ij,kj->ik", left, g), xxt)  # (I - A X) G^T X X^T
    t3 = einsum("ij,jk->ik", einsum("ij,kj->ik", xtx, g), right)  # X^T X G^T (I - X A)
    return [make("add", make("sub", t2, t1), t3)]


deftensor("pinv", 1, evaluate=lambda v, attr: _nan_unless_finite(np.linalg.pinv, v[0], np.shape(v[0])[::-1]),
          build=lambda args, attr: pinv(args[0]),
          cost=lambda node: 20 * max(node.shape) * min(node.shape) ** 2,
          jvp=lambda node, ts: None if ts[0] is None else _pinv_lin(node, node.args[0], ts[0]),
          transpose=_pinv_transpose, doc="Moore-Penrose pseudo-inverse (by the SVD)")
