"""Exceptions symjac raises; each message says what was wrong and the fix."""

import dis
import sys

__all__ = ["SymjacError", "TracerBoolError", "NumericArrayError", "UnsupportedOperationError",
           "MissingRuleError", "conversion_error"]


class SymjacError(Exception):
    """Base class of symjac's own errors."""


class TracerBoolError(SymjacError, TypeError):
    """Python control flow (``if``, ``bool()``, ``float()``) on a traced value."""

    def __init__(self, what="bool()"):
        super().__init__(
            f"{what} was called on a traced value: symjac traces your function once with "
            "symbolic arrays, so Python control flow (`if x > 0:`, `while`, `and`/`or`, "
            "`float(x)`) cannot depend on the data. Use np.where(condition, a, b) for a "
            "branch, np.maximum/np.minimum/np.clip for limits; build arrays with np.array([...]), "
            "np.stack or np.zeros_like(x) instead of assigning traced values into np.zeros(n). If this came "
            "from np.where/np.maximum/np.max on an array made with np.array([...]) of traced values, "
            "make that array with np.stack([...]) instead (np.array returns a plain object array)."
        )


class UnsupportedOperationError(SymjacError, TypeError):
    """A NumPy/SciPy function or ufunc symjac cannot trace."""


class MissingRuleError(SymjacError, NotImplementedError):
    """An op has no derivative rule (never a silent zero)."""


class NumericArrayError(SymjacError, TypeError):
    """A traced value stored into (or converted to) an array of numbers."""

    def __init__(self, what="stored into a NumPy array of numbers"):
        super().__init__(
            f"a traced value was {what}. NumPy converts the value to a number itself, without asking "
            "symjac, so the trace cannot follow it; this is what happens to `dy = np.zeros(n); "
            "dy[0] = y[1]` (also np.empty(n), np.ones(n), np.array(..., dtype=float)). Make the array "
            "from a traced value instead: np.zeros_like(y), np.empty_like(y), y.copy(), or "
            "np.zeros(n, like=y); or collect the values and np.stack them.")


_STORES = {dis.opmap[name] for name in ("STORE_SUBSCR", "STORE_SLICE") if name in dis.opmap}


def conversion_error(what, depth=1):
    """The error for a traced value converted to a Python number: a store into a
    numeric array when the caller ``depth`` frames up is executing ``a[i] = v``
    (NumPy converts stored items with ``float()``), else Python control flow."""
    try:
        frame = sys._getframe(depth + 1)
        code, i = frame.f_code.co_code, frame.f_lasti
        storing = 0 <= i < len(code) and code[i] in _STORES
    except (ValueError, AttributeError):
        storing = False
    return NumericArrayError() if storing else TracerBoolError(what)
