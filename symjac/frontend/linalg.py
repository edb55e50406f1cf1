"""``np.linalg`` on traced arrays: solve, inv, det, slogdet, cholesky, eigh,
eigvalsh, svd, pinv (and through them ``np.linalg.norm(..., 'nuc')``).

Each function makes its argument one tensor (small arrays of scalars are
packed), applies the op of `symjac.ops.linalg` to each matrix of a stack,
and hands the result back through `from_tensor`, which unrolls small
results into scalars again: the op itself is always one factorization, in
the kernel's loops.  Arguments NumPy accepts but symjac does not (complex
matrices, ``full_matrices=True`` for a non-square ``svd``, ``hermitian=True``)
raise `UnsupportedOperationError` naming the function and the argument.
"""

from __future__ import annotations

import math

import numpy as np

from symjac.errors import UnsupportedOperationError
from symjac.frontend.traced import from_tensor, implements, is_traced, tensor_of
from symjac.ir import tconst
from symjac.ops import linalg as lops
from symjac.ops import tensor as tops
from symjac.ops.array import concat, view

__all__ = []

# NumPy's own result types (named tuples), so attribute access works as on numbers
_SLOGDET = type(np.linalg.slogdet(np.eye(1)))
_EIGH = type(np.linalg.eigh(np.eye(1)))
_SVD = type(np.linalg.svd(np.eye(1)))


def _operand(x, func, name, square=True, ndmin=2):
    """The tensor node of argument ``name`` of ``np.linalg.func``: real, at least
    ``ndmin``-D (a stack of matrices when more), square when ``square``."""
    if is_traced(x):
        t = tensor_of(x)
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise UnsupportedOperationError(f"np.linalg.{func}: argument {name!r} of dtype {arr.dtype} is not "
                                            "supported on traced models (real matrices only)")
        t = tconst(arr.astype(float))
    if len(t.shape) < ndmin:
        raise np.linalg.LinAlgError(f"np.linalg.{func}: {name!r} must be at least {ndmin}-D, got shape {t.shape}")
    if square and t.shape[-1] != t.shape[-2]:
        raise np.linalg.LinAlgError(f"np.linalg.{func}: {name!r} must be square in its last two axes, got "
                                    f"shape {t.shape}")
    return t


def _matrices(t):
    """The matrices of a stack ``t`` (lead + (m, n)), in C order of the lead axes."""
    lead, (m, n) = t.shape[:-2], t.shape[-2:]
    if not lead:
        return [t]
    return [view(t, i * m * n, (n, 1), (m, n)) for i in range(math.prod(lead))]


def _stacked(parts, lead):
    """One tensor of ``lead + shape`` from equal-shaped nodes (C order of ``lead``)."""
    if not lead:
        return parts[0]
    if not parts[0].shape:
        return tops.pack(parts, lead)
    shape = parts[0].shape
    return tops.reshape(concat([tops.reshape(p, (1,) + shape) for p in parts], 0), lead + shape)


def _per_matrix(t, fn):
    """``fn`` (matrix node -> node or tuple of nodes) on each matrix of ``t``, results stacked."""
    lead = t.shape[:-2]
    outs = [fn(m) for m in _matrices(t)]
    if isinstance(outs[0], tuple):
        return tuple(_stacked([o[k] for o in outs], lead) for k in range(len(outs[0])))
    return _stacked(outs, lead)


def _solve(a, b):
    """np.linalg.solve: ``b`` of shape (n,), or (..., n, k) with ``a``'s stack shape."""
    ta = _operand(a, "solve", "a")
    tb = _operand(b, "solve", "b", square=False, ndmin=1)
    n = ta.shape[-1]
    if len(tb.shape) == 1:  # a vector right-hand side, the same for every matrix of a stack
        if tb.shape[0] != n:
            raise ValueError(f"np.linalg.solve: b of shape {tb.shape} does not fit a of shape {ta.shape}")
        return from_tensor(_per_matrix(ta, lambda m: lops.lsolve(m, tb)))
    if tb.shape[:-2] != ta.shape[:-2] or tb.shape[-2] != n:
        raise UnsupportedOperationError(f"np.linalg.solve: b of shape {tb.shape} for a of shape {ta.shape}: "
                                        "symjac solves a (..., n, n) with b (n,) or (..., n, k) of the same "
                                        "stack shape (broadcast the stacks first)")
    parts = [lops.lsolve(m, r) for m, r in zip(_matrices(ta), _matrices(tb))]
    return from_tensor(_stacked(parts, ta.shape[:-2]))


def _inv(a):
    return from_tensor(_per_matrix(_operand(a, "inv", "a"), lops.inv))


def _det(a):
    return from_tensor(_per_matrix(_operand(a, "det", "a"), lops.det))


def _slogdet(a):
    t = _operand(a, "slogdet", "a")
    sign, logdet = _per_matrix(t, lambda m: (lops.detsign(m), lops.logabsdet(m)))
    return _SLOGDET(from_tensor(sign), from_tensor(logdet))


def _cholesky(a, /, *, upper=False):
    low = _per_matrix(_operand(a, "cholesky", "a"), lops.cholesky)
    if upper:
        nd = len(low.shape)
        low = tops.transpose(low, tuple(range(nd - 2)) + (nd - 1, nd - 2))
    return from_tensor(low)


def _uplo(t, func, uplo):
    """The matrix whose lower triangle holds the triangle ``UPLO`` names (either case, as NumPy)."""
    if not isinstance(uplo, str) or uplo.upper() not in ("L", "U"):
        raise ValueError(f"np.linalg.{func}: UPLO must be 'L' or 'U', got {uplo!r}")
    if uplo.upper() == "L":
        return t
    nd = len(t.shape)
    return tops.transpose(t, tuple(range(nd - 2)) + (nd - 1, nd - 2))


def _eigh(a, UPLO="L"):  # noqa: N803  (NumPy's name)
    t = _uplo(_operand(a, "eigh", "a"), "eigh", UPLO)
    w, vecs = _per_matrix(t, lambda m: lops.eigh_parts(lops.eigh(m)))
    return _EIGH(from_tensor(w), from_tensor(vecs))


def _eigvalsh(a, UPLO="L"):  # noqa: N803
    t = _uplo(_operand(a, "eigvalsh", "a"), "eigvalsh", UPLO)
    return from_tensor(_per_matrix(t, lops.eigvalsh))


def _svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    t = _operand(a, "svd", "a", square=False)
    if hermitian:
        raise UnsupportedOperationError("np.linalg.svd(..., hermitian=True) is not supported on traced arrays; "
                                        "drop it (the general SVD gives the same singular values)")
    if not compute_uv:
        return from_tensor(_per_matrix(t, lops.svdvals))
    m, n = t.shape[-2:]
    if full_matrices and m != n:
        raise UnsupportedOperationError(
            f"np.linalg.svd(..., full_matrices=True) of a {m}x{n} matrix is not supported on traced arrays (the "
            "complement of the thin factors is not differentiable); pass full_matrices=False")
    u, s, vt = _per_matrix(t, lambda x: lops.svd_parts(lops.svd(x), m, n))
    return _SVD(from_tensor(u), from_tensor(s), from_tensor(vt))


def _pinv(a, rcond=None, hermitian=False, *, rtol=None):
    if hermitian:
        raise UnsupportedOperationError("np.linalg.pinv(..., hermitian=True) is not supported on traced arrays; "
                                        "drop it")
    if rcond is not None or rtol is not None:
        raise UnsupportedOperationError("np.linalg.pinv(..., rcond=/rtol=) is not supported on traced arrays: "
                                        "the derivative holds for full-rank matrices, where the cutoff has no "
                                        "effect; drop it")
    return from_tensor(_per_matrix(_operand(a, "pinv", "a", square=False), lops.pinv))


def nuclear_norm(x, axis, keepdims):
    """``np.linalg.norm(x, 'nuc', axis)``: the sum of the singular values of the
    matrices over the two axes ``axis``."""
    t = tensor_of(x)
    nd = len(t.shape)
    r, c = (a % nd for a in axis)
    rest = [i for i in range(nd) if i not in (r, c)]
    moved = tops.transpose(t, tuple(rest) + (r, c))
    total = from_tensor(_per_matrix(moved, lambda m: tops.tsum(lops.svdvals(m), (0,))))
    if keepdims:
        shape = tuple(1 if i in (r, c) else d for i, d in enumerate(t.shape))
        return total.reshape(shape)
    return total


implements(np.linalg.solve)(_solve)
implements(np.linalg.inv)(_inv)
implements(np.linalg.det)(_det)
implements(np.linalg.slogdet)(_slogdet)
implements(np.linalg.cholesky)(_cholesky)
implements(np.linalg.eigh)(_eigh)
implements(np.linalg.eigvalsh)(_eigvalsh)
implements(np.linalg.svd)(_svd)
implements(np.linalg.pinv)(_pinv)
