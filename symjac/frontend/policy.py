"""When array work stays whole (a tensor op, printed as a loop) and when it is
unrolled into scalars that simplify symbolically.

The policy is a context variable, not module state: a trace in another
thread keeps its own.
"""

from __future__ import annotations

import contextvars
import numbers
import threading

__all__ = ["tensor_policy", "policy"]

# Arrays of at least this many entries stay whole by default.  Below it, unrolled
# scalar code is faster per call (values stay in registers, constants and zeros
# simplify away: 3-4x on the 30-species kinetics model at B = 10^5, 665
# statements) and still compiles in seconds; above it, unrolling makes
# kernels whose compile time explodes (a 200-point model: minutes).
MIN_ARRAY = 128
# Contractions of at least 32 multiply-adds with a 32-entry runtime operand stay whole: a PINN's
# 16 x 2 first layer unrolled made its training step's kernel 1,001 statements and 20 s of Numba
# compile instead of 186 and 10 s, for the same time per step (0.50 vs 0.49 ms; benchmarks/first_call.py).
_DEFAULT = {"min_work": 32, "min_operand": 32, "unroll_size": 8, "min_array": MIN_ARRAY}
_UNSET = object()
_POLICY = contextvars.ContextVar("symjac_tensor_policy", default=_DEFAULT)


def policy():
    """The current policy: a dict with ``min_work``, ``min_operand``, ``unroll_size``."""
    return _POLICY.get()


class tensor_policy:
    """When contractions become tensor ops (loops) instead of unrolled scalars.

    A contraction (``@``, ``np.dot``, ``np.einsum``, ``np.tensordot``) becomes
    one tensor op when an operand already is one, or when it costs at least
    ``min_work`` multiply-adds and an operand holds at least ``min_operand``
    non-constant entries (runtime weights, not a rotation matrix whose zeros
    and ones simplify away).  Results of at most ``unroll_size`` entries are
    unrolled into scalars.  ``tensor_policy(min_work=None)`` unrolls everything.
    Elementwise math, indexing, assignment and NumPy's array functions
    (``np.concatenate``, ``np.cumsum``, ``np.roll``...) on traced arrays of at
    least ``min_array`` entries (default 128) stay whole too, even when the
    array is made of scalars, so a kernel's size does not grow with the
    arrays; ``min_array=None`` keeps only contractions' results whole.
    ``tensor_policy(min_work=None)`` unrolls everything (``min_array``
    defaults to None with it): the scalar path, the oracle for the array
    path.  The setting belongs to the current thread (and asyncio task).

    >>> import numpy as np, symjac
    >>> with symjac.tensor_policy(min_work=None):
    ...     g = symjac.trace(lambda x, W: np.tanh(W @ x), (40,), (40, 40))
    >>> len(g) > 1600
    True
    """

    def __init__(self, min_work=32, min_operand=32, unroll_size=8, min_array=_UNSET):
        if min_array is _UNSET:
            min_array = None if min_work is None else MIN_ARRAY
        for name, v in (("min_work", min_work), ("min_operand", min_operand), ("unroll_size", unroll_size),
                        ("min_array", min_array)):
            optional = name in ("min_work", "min_array")
            if (v is None and optional) or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0):
                continue
            raise ValueError(f"tensor_policy: {name} must be a non-negative int"
                             f"{' or None' if optional else ''}, got {v!r}")
        self.new = {"min_work": min_work, "min_operand": min_operand, "unroll_size": unroll_size,
                    "min_array": min_array}
        self._local = threading.local()  # one object may be entered by several threads at once

    def __enter__(self):
        stack = self._local.__dict__.setdefault("tokens", [])
        stack.append(_POLICY.set(dict(self.new)))
        return self

    def __exit__(self, *exc):
        _POLICY.reset(self._local.tokens.pop())
