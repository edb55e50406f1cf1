"""The table of supported operations: one line per op.

Each entry: name, per-sample function of a 1-D input slice, slice length,
sampling interval, and whether the complex step is a valid oracle (the
function is complex-analytic in NumPy).  `fused` builds one model holding
every entry, so each backend and mode compiles one kernel for the whole table.
The table runs twice: as traced (small arrays unrolled into scalars), and
under ``tensor_policy(min_array=1)`` (TENSOR), where elementwise math and
NumPy's array functions stay tensor ops, so each row checks the op's tensor
rules and printing too.
"""

import numpy as np
import scipy.special

import symjac

C = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
TENSOR = {"min_array": 1}  # the tensor_policy of the table's tensor run
K = np.array([[0.5, -1.0], [0.25, 2.0]]).reshape(2, 2, 1, 1)
IDX = np.array([2, 0, 1, 1])


def _np_array_of_scalars(x):
    a, b, c = x[0], x[1], x[2]
    return np.array([a * b, b - c, 3.0, np.sin(a)])


def _zeros_assign(x):
    out = np.zeros_like(x)
    out[0] = x[1] * x[2]
    out[2] = x[0]
    return out


def _scatter_assign(x):
    out = x ** 2
    out[[3, 0, 2]] = x[:3] * x[3]  # integer-array positions: a scatter in the tensor run
    out[np.array([False, True, False, False])] = 5.0
    return out


def _add_at(x):
    out = np.zeros_like(x)
    np.add.at(out, [0, 2, 2, 3], x * x[1])  # repeated positions accumulate
    np.subtract.at(out, [1], x[3])
    return out * x


OPS = [
    # arithmetic with Python scalars, NumPy constants, traced arrays, broadcasting
    ("add", lambda x: x[:2] + x[2:] + 1.5 + np.float64(2.0), 4, -2, 2, True),
    ("sub", lambda x: x[:2] - x[2:] - 3 - np.array([1.0, 2.0]), 4, -2, 2, True),
    ("mul", lambda x: x[:2] * x[2:] * 2 * np.array([[1.0], [-3.0]]), 4, -2, 2, True),
    ("div", lambda x: x[:2] / x[2:] / 4.0 + 1.0 / x[2:], 4, 0.5, 2, True),
    ("neg", lambda x: -x, 2, -2, 2, True),
    ("pos", lambda x: +x * 2, 2, -2, 2, True),
    ("pow_int", lambda x: x ** 2 + x ** 3 + x ** -1 + x ** -2 + x ** 5, 2, 0.5, 2, True),
    ("pow_frac", lambda x: x ** 0.5 + x ** 1.5 + x ** (1 / 3), 2, 0.5, 2, True),
    ("pow_traced", lambda x: x[:2] ** x[2:] + 2.0 ** x[:2], 4, 0.5, 2, True),
    ("rpow_scalar", lambda x: 3 ** x, 2, -1, 1, True),
    ("abs", lambda x: np.abs(x) + abs(x), 2, 0.3, 2, False),
    ("abs_neg", lambda x: np.abs(x), 2, -2, -0.3, False),
    ("fabs", lambda x: np.fabs(x), 2, -2, -0.3, False),
    ("sqrt", np.sqrt, 2, 0.2, 3, True),
    ("cbrt", np.cbrt, 2, 0.2, 3, False),
    ("cbrt_neg", np.cbrt, 2, -3, -0.2, False),
    ("square", np.square, 2, -2, 2, True),
    ("reciprocal", np.reciprocal, 2, 0.5, 2, True),
    ("exp", np.exp, 2, -2, 2, True),
    ("exp2", np.exp2, 2, -2, 2, True),
    ("expm1", np.expm1, 2, -2, 2, True),
    ("log", np.log, 2, 0.2, 3, True),
    ("log2", np.log2, 2, 0.2, 3, True),
    ("log10", np.log10, 2, 0.2, 3, True),
    ("log1p", np.log1p, 2, -0.5, 3, True),
    ("sin", np.sin, 2, -3, 3, True),
    ("cos", np.cos, 2, -3, 3, True),
    ("tan", np.tan, 2, -1.2, 1.2, True),
    ("arcsin", np.arcsin, 2, -0.9, 0.9, True),
    ("arccos", np.arccos, 2, -0.9, 0.9, True),
    ("arctan", np.arctan, 2, -3, 3, True),
    ("arctan2", lambda x: np.arctan2(x[:2], x[2:]), 4, -2, 2, False),
    ("sinh", np.sinh, 2, -2, 2, True),
    ("cosh", np.cosh, 2, -2, 2, True),
    ("tanh", np.tanh, 2, -2, 2, True),
    ("arcsinh", np.arcsinh, 2, -2, 2, True),
    ("arccosh", np.arccosh, 2, 1.2, 3, True),
    ("arctanh", np.arctanh, 2, -0.9, 0.9, True),
    ("hypot", lambda x: np.hypot(x[:2], x[2:]), 4, 0.3, 2, False),
    ("sign", lambda x: np.sign(x) * x, 2, -2, 2, False),
    ("maximum", lambda x: np.maximum(x[:2], x[2:]) + np.maximum(x[:2], 0.1), 4, -2, 2, False),
    ("minimum", lambda x: np.minimum(x[:2], x[2:]) + np.minimum(0.1, x[2:]), 4, -2, 2, False),
    ("clip", lambda x: np.clip(x, -0.5, 0.5) + x.clip(-1.0, None), 4, -2, 2, False),
    ("where_cmp", lambda x: np.where(x[:2] > x[2:], x[:2] ** 2, -x[2:]) + np.where(x[:2] <= 0, 1.0, x[2:]), 4, -2, 2, False),
    ("where_logic", lambda x: np.where((x[:2] >= 0) & (x[2:] != 1.0) | ~(x[:2] < -1), x[:2], 2 * x[2:]), 4, -2, 2, False),
    ("erf", scipy.special.erf, 2, -2, 2, True),
    ("erfc", scipy.special.erfc, 2, -2, 2, True),
    ("expit", scipy.special.expit, 2, -3, 3, False),
    ("deg2rad", lambda x: np.sin(np.deg2rad(x * 40)), 2, -2, 2, False),
    # reductions
    ("sum", lambda x: np.array([np.sum(x), x.sum()]), 6, -2, 2, True),
    ("sum_axis", lambda x: np.sum(x.reshape(2, 3), axis=0) + x.reshape(2, 3).sum(axis=1, keepdims=True).ravel()[0], 6, -2, 2, True),
    ("prod", lambda x: np.prod(x.reshape(2, 3), axis=1), 6, 0.5, 1.5, True),
    ("mean", lambda x: np.mean(x.reshape(2, 3), axis=(0, 1)) + x.mean(), 6, -2, 2, True),
    # np.var and np.std of complex input use |x - mean|: no complex step
    ("var_std", lambda x: np.var(x) + np.std(x.reshape(2, 3), axis=1, ddof=1), 6, -2, 2, False),
    ("fmax_fmin", lambda x: np.fmax(x[:2], x[2:]) * np.fmin(x[:2], x[2:] + 0.5), 4, -2, 2, False),
    ("max", lambda x: np.max(x.reshape(2, 3), axis=1), 6, -2, 2, False),
    ("min", lambda x: np.min(x) + np.amin(x.reshape(3, 2), axis=0)[1], 6, -2, 2, False),
    ("max_method", lambda x: x.reshape(2, 3).max(axis=0), 6, -2, 2, False),
    # contractions
    ("dot", lambda x: np.dot(C, x[:3]) + C.dot(x[3:]), 6, -2, 2, True),
    ("matmul", lambda x: np.concatenate([C @ x[:3], x[:2] @ C, [x[3:] @ x[:3]]]), 6, -2, 2, True),
    ("matmul_traced", lambda x: x[:4].reshape(2, 2) @ x[2:].reshape(2, 2), 6, -2, 2, True),
    ("einsum", lambda x: np.einsum("ij,j->i", C, x[:3]) + np.einsum("i,i->", x[:3], x[3:]), 6, -2, 2, True),
    ("outer", lambda x: np.outer(x[:2], x[2:5]).ravel(), 6, -2, 2, True),
    # shapes and indexing
    ("transpose", lambda x: (x.reshape(2, 3).T * np.arange(1.0, 4.0)[:, None]).ravel(), 6, -2, 2, True),
    ("np_transpose", lambda x: np.transpose(x.reshape(3, 2)).ravel() ** 2, 6, -2, 2, True),
    ("reshape_ravel", lambda x: np.ravel(np.reshape(x, (3, 2))) * x.reshape(-1)[::-1], 6, -2, 2, True),
    ("squeeze_expand", lambda x: np.squeeze(np.expand_dims(x, 0)) * x[None, :][0] + x[:, None].squeeze(1), 3, -2, 2, True),
    ("basic_index", lambda x: x[1:4] * x[-1] + x[::2][0], 6, -2, 2, True),
    ("int_index", lambda x: x[IDX] * x[[0, 0, 1, 2]], 3, -2, 2, True),
    ("bool_index", lambda x: x[np.array([True, False, True])], 3, -2, 2, True),
    ("concatenate", lambda x: np.concatenate([x[:2] ** 2, [1.0], x[1:]]), 3, -2, 2, True),
    ("stack", lambda x: np.stack([x, x ** 2], axis=1).ravel(), 3, -2, 2, True),
    ("hstack_vstack", lambda x: np.hstack([x, np.vstack([x, x * 3]).ravel()]), 3, -2, 2, True),
    ("norm", lambda x: np.array([np.linalg.norm(x), np.linalg.norm(x, 1), np.linalg.norm(x, np.inf)]), 3, 0.2, 2, False),
    ("norm_axis", lambda x: np.linalg.norm(x.reshape(2, 3), axis=1), 6, 0.2, 2, False),
    ("constants", lambda x: x * np.asarray([1.0, 2.0, 3.0]) + np.arange(3) + np.zeros(3) + np.ones(3) * np.pi, 3, -2, 2, True),
    ("np_array_scalars", _np_array_of_scalars, 3, -2, 2, True),
    ("np_array_ufuncs", lambda x: np.sin(np.array([x[0], x[1]])) * np.exp(np.array([x[2], x[0]]))
     + np.arctan2(np.array([x[1], x[2]]), 2.0) + np.cbrt(np.array([x[2] + 3, x[0] + 3])), 3, -2, 2, False),
    ("zeros_like_assign", _zeros_assign, 3, -2, 2, True),
    ("scatter_assign", _scatter_assign, 4, -2, 2, True),
    ("add_at", _add_at, 4, -2, 2, True),
    ("split", lambda x: np.split(x, 2)[1] * np.array_split(x, 3)[0].sum() + np.append(x[:1], x[3]), 4, -2, 2, True),
    ("unpack", lambda x: (lambda a, b, c: a * b * c)(*x), 3, -2, 2, True),
    ("cross", lambda x: np.cross(x[:3], x[3:]), 6, -2, 2, True),
    # rounding, remainders, and the other functions of two numbers
    ("floor_ceil_trunc", lambda x: np.floor(x) * x + np.ceil(x) + np.trunc(x * 3) + np.rint(x * 2), 2, -2, 2, False),
    ("round", lambda x: np.round(x * 3.0) + np.round(x, 1) * x + np.around(x ** 2, 2), 2, -2, 2, False),
    ("heaviside", lambda x: np.heaviside(x[:2], x[2:]) * x[2:] + np.heaviside(x[:2], 0.5), 4, -2, 2, False),
    ("mod", lambda x: np.mod(x[:2], x[2:]) + np.remainder(x[:2] * 3, 1.5) + x[:2] % 0.7, 4, 0.5, 3, False),
    ("fmod", lambda x: np.fmod(x[:2], x[2:]) + np.fmod(-x[:2] * 3, 1.5), 4, 0.5, 3, False),
    ("copysign", lambda x: np.copysign(x[:2], x[2:]) + np.copysign(2.0, x[:2]) * x[2:], 4, -2, 2, False),
    ("logaddexp", lambda x: np.logaddexp(x[:2], x[2:]) + np.logaddexp2(x[:2], 1.0), 4, -2, 2, False),
    ("sinc", lambda x: np.sinc(x) + np.sinc(x * 1e-3) * 7.0, 2, -2, 2, True),
    ("rad2deg", lambda x: np.cos(np.rad2deg(x) / 40.0) + np.radians(x) * np.degrees(x), 2, -2, 2, False),
    # NumPy's array functions (tensor ops in the tensor run)
    ("cumsum", lambda x: np.concatenate([np.cumsum(x), np.cumsum(x.reshape(2, 3), axis=0).ravel() * x]),
     6, -2, 2, True),
    ("diff", lambda x: np.concatenate([np.diff(x ** 2), np.diff(x, 2), np.diff(x.reshape(2, 3), axis=0).ravel()]),
     6, -2, 2, True),
    ("flip", lambda x: np.flip(x) * x + np.flip(x.reshape(2, 3), 1).ravel() ** 2
     + np.fliplr(x.reshape(2, 3)).ravel() + np.flipud(x.reshape(3, 2)).ravel(), 6, -2, 2, True),
    ("roll", lambda x: np.roll(x, 2) * x + np.roll(x.reshape(2, 3), -1, axis=1).ravel() + np.roll(x, 1) ** 3,
     6, -2, 2, True),
    ("trace", lambda x: np.array([np.trace(x.reshape(3, 3)), np.trace(x.reshape(3, 3), 1) * x[0]])
     + np.trace(x.reshape(3, 3) ** 2), 9, -2, 2, True),
    ("diag", lambda x: np.concatenate([np.diag(x[:3]).ravel() * 2.0, np.diag(x[3:].reshape(2, 3), 1) * x[0],
                                       np.diag(x[:2], -1).ravel()]), 9, -2, 2, True),
    ("diagonal", lambda x: np.diagonal(x.reshape(2, 3)) * np.diagonal(x.reshape(3, 2), -1), 6, -2, 2, True),
    ("tril_triu", lambda x: (np.tril(x.reshape(3, 3)) * 2.0 + np.triu(x.reshape(3, 3), 1) ** 2).ravel(),
     9, -2, 2, True),
    ("conv2d", lambda x: symjac.nn.conv2d(x[:9].reshape(3, 3, 1), x[9:].reshape(2, 2, 1, 1), padding="same").ravel()
     + symjac.nn.conv2d(x[:9].reshape(3, 3, 1), K, stride=2).ravel()[0], 13, -2, 2, True),
    ("outer_kron", lambda x: np.concatenate([np.outer(x[:2], x[2:5]).ravel(), np.kron(x[:2], x[2:4] ** 2),
                                             np.kron(x[:4].reshape(2, 2), x[4:].reshape(1, 2)).ravel()]),
     6, -2, 2, True),
]


def layout():
    """(offsets, total length) of the fused model's input."""
    offsets, n = [], 0
    for entry in OPS:
        offsets.append(n)
        n += entry[2]
    return offsets, n


def fused(x):
    offsets, _ = layout()
    parts = [np.ravel(fn(x[o: o + k])) for (_, fn, k, *_), o in zip(OPS, offsets)]
    return np.concatenate(parts)


def sample(rng, batch):
    """A batch of inputs, each op's slice drawn from its interval."""
    offsets, n = layout()
    x = np.empty((batch, n))
    for (_, _, k, lo, hi, _), o in zip(OPS, offsets):
        x[:, o: o + k] = rng.uniform(lo, hi, size=(batch, k))
    return x
