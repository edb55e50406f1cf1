"""Exceptions symjac raises; each message says what was wrong and the fix."""

__all__ = ["SymjacError", "TracerBoolError", "UnsupportedOperationError", "MissingRuleError"]


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
