"""The op declarations, grouped by kind.  Importing this package fills the
registry (`symjac.ir.registry`); each module declares its ops with all their
rules side by side.

- `arithmetic`: + - * / ** and the binary functions of two numbers;
- `elementary`: roots, exponentials, logarithms, trigonometric and special
  functions, abs, sign and rounding;
- `logic`: comparisons, logic, ``where`` and ``stop``;
- `tensor`: structural tensor ops (pack/elem, broadcasts, reductions,
  reshapes, transposes, captured constants);
- `contract`: ``einsum`` and the convolutions;
- `array`: NumPy's array functions as tensor ops (cumsum, diff, flip, roll,
  trace, diag, outer, kron, tril/triu);
- `special`: SciPy's special functions (gamma, Bessel, incomplete gamma and beta...);
- `linalg`: LU, solves, determinants, Cholesky, eigh, SVD, pinv (np.linalg).
"""

from symjac.ops import arithmetic, array, contract, elementary, logic, special, tensor  # noqa: F401  (declarations)
from symjac.ops import linalg  # noqa: F401  (solve, det, cholesky, eigh, svd, pinv)
from symjac.ops.contract import conv2d, conv2d_bw, conv2d_bx, conv_padding, conv_reference, einsum
from symjac.ops.tensor import (bcast, broadcast_to, constant_value, elem, extreme_weights, fit, pack, reshape,
                               tconst, textreme, transpose, tsum)

__all__ = ["tconst", "constant_value", "pack", "elem", "bcast", "broadcast_to", "fit", "tsum", "textreme",
           "extreme_weights", "reshape", "transpose", "einsum", "conv2d", "conv2d_bx", "conv2d_bw", "conv_padding",
           "conv_reference"]
