"""`SparseJacobian`: structural nonzeros of a batch of Jacobians.

The pattern is known when the kernel is compiled; the kernel writes only the
``nnz`` values per sample.  Rows index the flattened output, columns the
flattened input, sorted row-major so the values are already in CSR order.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SparseJacobian"]


class SparseJacobian:
    """Batch of Jacobians sharing one sparsity pattern.

    Attributes: ``values`` ``(B, nnz)``; ``rows``, ``cols`` ``(nnz,)``;
    ``out_shape``, ``in_shape``; ``shape`` = ``(m, n)`` of each flattened
    per-sample matrix; ``indptr`` for CSR.

    >>> import numpy as np, symjac
    >>> J = symjac.jacobian(lambda x: x ** 2, sparse=True, backend="numpy")(np.ones((2, 3)))
    >>> J.nnz, J.values.shape, J.todense().shape
    (3, (2, 3), (2, 3, 3))
    """

    def __init__(self, values, rows, cols, out_shape, in_shape):
        self.values = values
        self.rows = rows
        self.cols = cols
        self.out_shape = tuple(out_shape)
        self.in_shape = tuple(in_shape)
        self.shape = (math.prod(self.out_shape), math.prod(self.in_shape))
        self._indptr = None

    @property
    def indptr(self):
        """CSR row pointers (made on first use)."""
        if self._indptr is None:
            self._indptr = np.searchsorted(self.rows, np.arange(self.shape[0] + 1)).astype(np.int64)
        return self._indptr

    @property
    def nnz(self):
        return len(self.rows)

    @property
    def batch_size(self):
        return self.values.shape[0]

    @property
    def density(self):
        return self.nnz / max(1, self.shape[0] * self.shape[1])

    def todense(self):
        """Dense array ``(B, *out_shape, *in_shape)``."""
        B = self.batch_size
        dense = np.zeros((B,) + self.shape, dtype=self.values.dtype)
        dense[:, self.rows, self.cols] = self.values
        return dense.reshape((B,) + self.out_shape + self.in_shape)

    def to_scipy(self, b):
        """Sample ``b``'s Jacobian as a ``scipy.sparse.csr_matrix`` of shape ``(m, n)``."""
        from scipy import sparse

        if not -self.batch_size <= b < self.batch_size:
            raise IndexError(f"sample index {b} out of range for batch size {self.batch_size}")
        return sparse.csr_matrix((self.values[b].copy(), self.cols.copy(), self.indptr.copy()), shape=self.shape)

    def to_scipy_list(self):
        """One ``csr_matrix`` per sample."""
        return [self.to_scipy(b) for b in range(self.batch_size)]

    def block_diag(self):
        """All samples as one block-diagonal ``csr_matrix`` of shape ``(B*m, B*n)``."""
        from scipy import sparse

        B, (m, n), nnz = self.batch_size, self.shape, self.nnz
        indices = (self.cols[None, :] + n * np.arange(B)[:, None]).ravel()
        indptr = np.concatenate([(self.indptr[:-1][None, :] + nnz * np.arange(B)[:, None]).ravel(),
                                 [B * nnz]]).astype(np.int64)
        return sparse.csr_matrix((self.values.ravel(), indices, indptr), shape=(B * m, B * n))

    def __repr__(self):
        return (f"<SparseJacobian batch={self.batch_size} per-sample {self.shape[0]}x{self.shape[1]}, "
                f"nnz={self.nnz} ({100 * self.density:.1f}% dense)>")
