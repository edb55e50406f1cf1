"""SciPy's Python-level functions on traced values, and errors that name a
library function that cannot be traced.

SciPy writes ``scipy.special.logsumexp``, ``softmax``, ``log_softmax``,
``multigammaln``, ``polygamma`` and the ``scipy.stats`` distributions in Python, with
branches on the data (the index of a maximum, a support check), which a
trace taken once cannot follow.  symjac has its own traced implementation of
each (`TRACED`), with SciPy's signature and results, and *routes* SciPy's
function to it while a trace runs and a traced value is among the
arguments: the function object's code is swapped for a two-line trampoline
that calls `_Route`, and swapped back when the last trace ends.  A call with
no traced argument (another thread, a constant) runs SciPy's own code,
unchanged; `from scipy.special import logsumexp` is routed too, since the
function object is the same.

Any other failure inside a library function (`library_error`) names that
function and says it is not traceable, rather than pointing at the line deep
inside the library where a traced value met control flow.
"""

from __future__ import annotations

import math
import re
import sys
import sysconfig
import threading
import types

import numpy as np

from symjac.errors import NumericArrayError, SymjacError, TracerBoolError, UnsupportedOperationError
from symjac.frontend.nn import stop_gradient
from symjac.frontend.traced import TracedArray, is_traced

__all__ = ["routed", "library_error", "TRACED"]

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _any_traced(args, kwargs):
    return any(is_traced(a) for a in args) or any(is_traced(v) for v in kwargs.values())


def _array(a):
    """``a`` as an array: a traced array as is, a list or tuple holding traced
    values stacked (NumPy's np.asarray would make a plain object array)."""
    if isinstance(a, (list, tuple)) and any(is_traced(e) or isinstance(e, (list, tuple)) for e in a):
        parts = [_array(e) for e in a]
        if any(is_traced(p) for p in parts):
            return np.stack([p if is_traced(p) else np.asarray(p, dtype=float) for p in parts])
    return a if is_traced(a) else np.asarray(a, dtype=float)


def _shift(x, axis):
    """The maximum over ``axis`` (kept), 0 where it is infinite, without derivative."""
    m = stop_gradient(np.max(x, axis=axis, keepdims=True))
    return np.where(np.isfinite(m), m, 0.0)


# -- scipy.special ------------------------------------------------------------------------

def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a)))`` over ``axis``, shifted by the maximum (SciPy's
    signature; ``return_sign`` gives ``(log|s|, sign(s))``)."""
    a = _array(a)
    if b is not None:
        a, b = np.broadcast_arrays(a, _array(b))
    # the shift is the largest entry with a nonzero weight (SciPy's): a 0/1 mask in b may hide the largest a
    m = _shift(a if b is None else np.where(b != 0, a, -np.inf), axis)
    e = np.exp(a - m) if b is None else np.where(b != 0, b * np.exp(a - m), 0.0)  # no 0 * inf
    s = np.sum(e, axis=axis, keepdims=True)
    if return_sign:
        out, sign = np.log(np.abs(s)) + m, np.sign(s)
        return (out, sign) if keepdims else (np.squeeze(out, axis=axis), np.squeeze(sign, axis=axis))
    out = np.log(s) + m  # NaN for a negative sum, as SciPy
    return out if keepdims else np.squeeze(out, axis=axis)


def softmax(x, axis=None):
    """``exp(x) / sum(exp(x))`` over ``axis`` (SciPy's signature)."""
    x = _array(x)
    e = np.exp(x - _shift(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=None):
    """``x - logsumexp(x)`` over ``axis`` (SciPy's signature)."""
    x = _array(x)
    z = x - _shift(x, axis)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def multigammaln(a, d):
    """The log of the multivariate gamma function of dimension ``d`` (NaN where
    ``a <= (d - 1) / 2``, where SciPy raises)."""
    import scipy.special

    if not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"multigammaln: d should be a positive integer, got {d!r}")
    r = d * (d - 1) / 4.0 * math.log(math.pi)
    for j in range(d):
        r = r + scipy.special.gammaln(a - j / 2.0)
    return np.where(a > (d - 1) / 2.0, r, np.nan)


def polygamma(n, x):
    """The n-th derivative of digamma (SciPy's Python wrapper calls np.asarray on
    ``x``, which loses the trace): the ``polygamma`` op, entry by entry."""
    from symjac.ops.special import polygamma as op

    if is_traced(n):
        return TracedArray._elementwise(op, (n, x))  # the op refuses a traced order, naming it
    n = np.asarray(n, dtype=float)
    if n.ndim == 0:
        return TracedArray._elementwise(lambda v: op(float(n), v), (x,))
    result = None  # an array of orders: one op per distinct order, selected entry by entry
    for k in np.unique(n):
        r = TracedArray._elementwise(lambda v, k=float(k): op(k, v), (x,))
        result = r if result is None else np.where(n == k, r, result)
    return np.broadcast_to(result, np.broadcast_shapes(n.shape, np.shape(result)))


# -- scipy.stats: the continuous distributions, by name ------------------------------------

def _standard(x, loc, scale):
    return (x - loc) / scale


def _norm(method, x, loc=0.0, scale=1.0):
    import scipy.special as sc

    z = _standard(x, loc, scale)
    logpdf = -0.5 * z * z - LOG_SQRT_2PI - np.log(scale)
    forms = {"logpdf": lambda: logpdf, "pdf": lambda: np.exp(logpdf), "cdf": lambda: sc.ndtr(z),
             "logcdf": lambda: sc.log_ndtr(z), "sf": lambda: sc.ndtr(-z), "logsf": lambda: sc.log_ndtr(-z)}
    return forms, scale > 0


def _t(method, x, df, loc=0.0, scale=1.0):
    import scipy.special as sc

    z = _standard(x, loc, scale)
    finite = np.isfinite(df)
    dfs = np.where(finite, df, 1.0)  # df = inf is the normal distribution: no NaN in the branch not taken
    normal, _ = _norm(method, x, loc, scale)
    # -betaln(df/2, 1/2) - log(df)/2: the log of the normalizing constant, accurate for large df
    logpdf = (-sc.betaln(dfs / 2.0, 0.5) - 0.5 * np.log(dfs) - (dfs + 1.0) / 2.0 * np.log1p(z * z / dfs)
              - np.log(scale))

    def cdf(sign):
        return sc.stdtr(dfs, sign * z)

    forms = {"logpdf": lambda: logpdf, "pdf": lambda: np.exp(logpdf), "cdf": lambda: cdf(1.0),
             "logcdf": lambda: np.log(cdf(1.0)), "sf": lambda: cdf(-1.0), "logsf": lambda: np.log(cdf(-1.0))}
    forms = {k: (lambda k=k, v=v: np.where(finite, v(), normal[k]())) for k, v in forms.items()}
    return forms, (df > 0) & (scale > 0)


def _gamma(method, x, a, loc=0.0, scale=1.0):
    import scipy.special as sc

    z = _standard(x, loc, scale)
    inside = z >= 0  # the support includes 0: xlogy(a - 1, 0) is 0 for a = 1, -inf for a > 1, inf for a < 1
    zs = np.where(inside, z, 1.0)
    logpdf = np.where(inside, sc.xlogy(a - 1.0, zs) - zs - sc.gammaln(a) - np.log(scale), -np.inf)
    zc = np.maximum(z, 0.0)
    forms = {"logpdf": lambda: logpdf, "pdf": lambda: np.exp(logpdf), "cdf": lambda: sc.gammainc(a, zc),
             "logcdf": lambda: np.log(sc.gammainc(a, zc)), "sf": lambda: sc.gammaincc(a, zc),
             "logsf": lambda: np.log(sc.gammaincc(a, zc))}
    return forms, (a > 0) & (scale > 0)


def _beta(method, x, a, b, loc=0.0, scale=1.0):
    import scipy.special as sc

    z = _standard(x, loc, scale)
    inside = (z >= 0) & (z <= 1)  # the closed support, as SciPy's (xlogy/xlog1py at its ends)
    zs = np.where(inside, z, 0.5)
    logpdf = np.where(inside, sc.xlogy(a - 1.0, zs) + sc.xlog1py(b - 1.0, -zs) - sc.betaln(a, b) - np.log(scale),
                      -np.inf)
    zc = np.clip(z, 0.0, 1.0)
    upper = lambda: sc.betainc(b, a, 1.0 - zc)  # noqa: E731  (I_x(a, b) = 1 - I_{1-x}(b, a): the upper tail kept)
    forms = {"logpdf": lambda: logpdf, "pdf": lambda: np.exp(logpdf), "cdf": lambda: sc.betainc(a, b, zc),
             "logcdf": lambda: np.log(sc.betainc(a, b, zc)), "sf": upper, "logsf": lambda: np.log(upper())}
    return forms, (a > 0) & (b > 0) & (scale > 0)


DISTRIBUTIONS = {"norm": _norm, "t": _t, "gamma": _gamma, "beta": _beta}
METHODS = ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf")


def _continuous(method):
    def traced(dist, x, *args, **kwds):
        build = DISTRIBUTIONS.get(dist.name)
        if build is None or type(dist).__name__ != f"{dist.name}_gen":
            raise UnsupportedOperationError(
                f"scipy.stats.{dist.name}.{method} is not traceable: symjac traces the {method} of "
                f"{', '.join(sorted(DISTRIBUTIONS))} and multivariate_normal; write the density with NumPy "
                "and scipy.special functions")
        x, args = _array(x), [_array(p) for p in args]
        kwds = {k: _array(v) for k, v in kwds.items()}
        with np.errstate(all="ignore"):  # constant parameters out of range: NaN, as SciPy, without warnings
            forms, valid = build(method, x, *args, **kwds)
            r = np.where(valid, forms[method](), np.nan)
            return np.where(np.isnan(x), np.nan, r)  # NaN in, NaN out (the support tests were false)
    traced.__name__ = method
    return traced


def _mvn_parts(mean, cov, allow_singular, where):
    if is_traced(cov):
        raise UnsupportedOperationError(f"{where} with a traced cov: give the covariance as a constant")
    if allow_singular:
        raise UnsupportedOperationError(f"{where}(..., allow_singular=True) is not traceable")
    cov = np.asarray(cov, dtype=float)
    return mean, cov


def _mvn_logpdf_of(x, mean, cov):
    """SciPy's shapes: the dimension comes from ``mean`` or ``cov`` (1 when
    both are scalars or absent); with dimension 1 each entry of ``x`` is a point."""
    x = _array(x)
    mean = None if mean is None else _array(mean)
    d = np.size(mean) if mean is not None and np.ndim(mean) else cov.shape[0] if cov.ndim else 1
    if d == 1 and np.ndim(x) <= 1:
        x = np.reshape(x, np.shape(x) + (1,))
        if mean is not None:
            mean = np.reshape(mean, (1,))
    cov = cov * np.eye(d) if cov.ndim == 0 else np.diag(cov) if cov.ndim == 1 else cov
    if cov.shape != (d, d):
        raise ValueError(f"multivariate_normal: cov of shape {cov.shape} for {d}-dimensional x")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("multivariate_normal: the covariance matrix is not positive definite") from None
    inv_chol = np.linalg.inv(chol)
    r = (x if mean is None else x - mean) @ inv_chol.T
    maha = np.sum(r * r, axis=-1)
    return -0.5 * (d * math.log(2.0 * math.pi) + 2.0 * np.sum(np.log(np.diag(chol))) + maha)


def _mvn_logpdf(dist, x, mean=None, cov=1, allow_singular=False):
    mean, cov = _mvn_parts(mean, cov, allow_singular, "scipy.stats.multivariate_normal.logpdf")
    return _mvn_logpdf_of(x, mean, cov)


def _mvn_pdf(dist, x, mean=None, cov=1, allow_singular=False):
    return np.exp(_mvn_logpdf(dist, x, mean, cov, allow_singular))


def _mvn_frozen(method):
    def traced(frozen, x):
        lp = _mvn_logpdf_of(x, frozen.mean, np.asarray(frozen.cov, dtype=float))
        return lp if method == "logpdf" else np.exp(lp)
    return traced


# (module, qualified name) -> traced implementation; the module is imported only if the model did
TRACED = {
    ("scipy.special._logsumexp", "logsumexp"): logsumexp,
    ("scipy.special._logsumexp", "softmax"): softmax,
    ("scipy.special._logsumexp", "log_softmax"): log_softmax,
    ("scipy.special._spfun_stats", "multigammaln"): multigammaln,
    ("scipy.special._basic", "polygamma"): polygamma,
    **{("scipy.stats._distn_infrastructure", f"rv_continuous.{m}"): _continuous(m) for m in METHODS},
    ("scipy.stats._multivariate", "multivariate_normal_gen.logpdf"): _mvn_logpdf,
    ("scipy.stats._multivariate", "multivariate_normal_gen.pdf"): _mvn_pdf,
    ("scipy.stats._multivariate", "multivariate_normal_frozen.logpdf"): _mvn_frozen("logpdf"),
    ("scipy.stats._multivariate", "multivariate_normal_frozen.pdf"): _mvn_frozen("pdf"),
}


# -- routing --------------------------------------------------------------------------------

def _trampoline(*args, _symjac_route, **kwargs):
    return _symjac_route(*args, **kwargs)


class _Route:
    """Calls the traced implementation when a traced value is among the
    arguments, else a copy of the library's own function."""

    def __init__(self, fn, traced):
        self.fn = fn
        self.saved = (fn.__code__, fn.__defaults__, fn.__kwdefaults__)
        self.original = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                                           fn.__closure__)
        self.original.__kwdefaults__ = fn.__kwdefaults__
        self.traced = traced

    def __call__(self, *args, **kwargs):
        if _any_traced(args, kwargs):
            return self.traced(*args, **kwargs)
        return self.original(*args, **kwargs)

    def install(self):
        self.fn.__code__, self.fn.__defaults__ = _trampoline.__code__, None
        self.fn.__kwdefaults__ = {"_symjac_route": self}

    def remove(self):
        self.fn.__code__, self.fn.__defaults__, self.fn.__kwdefaults__ = self.saved


_LOCK = threading.Lock()
_ACTIVE: list = []  # [depth, routes]


def _library_function(module, qualname):
    mod = sys.modules.get(module)
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, types.FunctionType) and not obj.__code__.co_freevars else None


def is_routable(e):
    """True when ``e`` (or its cause) was raised inside one of SciPy's functions
    that `routed` would route but did not (its module was imported by the model
    while it was being traced)."""
    codes = set()
    for module, qualname in TRACED:
        fn = _library_function(module, qualname)
        if fn is not None and fn.__code__ is not _trampoline.__code__:
            codes.add(fn.__code__)
    while e is not None and codes:
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                return True
            tb = tb.tb_next
        e = e.__cause__
    return False


class routed:
    """While a trace runs: SciPy's functions of `TRACED` (those of modules
    already imported) route traced arguments to symjac's implementations."""

    def __enter__(self):
        with _LOCK:
            if _ACTIVE:
                _ACTIVE[0] += 1
                return self
            routes = []
            for (module, qualname), traced in TRACED.items():
                fn = _library_function(module, qualname)
                if fn is not None and fn.__code__ is not _trampoline.__code__:
                    routes.append(_Route(fn, traced))
            for r in routes:
                r.install()
            _ACTIVE[:] = [1, routes]
        return self

    def __exit__(self, *exc):
        with _LOCK:
            _ACTIVE[0] -= 1
            if _ACTIVE[0] == 0:
                for r in _ACTIVE[1]:
                    r.remove()
                _ACTIVE.clear()


# -- errors that name the library function -------------------------------------------------

_LIBRARY_DIRS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def _public_name(module, name):
    """``scipy.special.multigammaln`` for ``scipy.special._spfun_stats.multigammaln``."""
    parts = module.split(".")
    for i in range(1, len(parts)):
        public = ".".join(parts[:i])
        mod = sys.modules.get(public)
        if mod is not None and getattr(mod, name.split(".")[0], None) is not None:
            return f"{public}.{name}"
    return f"{module}.{name}"


# messages of NumPy and SciPy meeting traced values (or the object arrays NumPy makes of them)
_OBJECT_HINTS = re.compile(r"TracedArray|\bNode\b|dtype\('O'\)|ObjectDType|object arrays?|dtype=object|"
                           r"for the input types")


def object_array_error(e):
    """For NumPy's own failure on a plain object array of traced values (made by
    ``np.array([...])``, which NumPy cannot dispatch): an error saying so; else None."""
    if isinstance(e, TracerBoolError):
        return _numpy_comparison_error(e)
    if isinstance(e, TypeError) and _OBJECT_HINTS.search(str(e)) and not isinstance(e, SymjacError):
        err = UnsupportedOperationError(
            f"NumPy could not compute on traced values ({e}): a plain NumPy object array of them reached a "
            "NumPy function that symjac cannot see (np.array([...]) of traced values makes one). Make that "
            "array with np.stack([...]) or np.array([...], like=x), so it stays traced")
        err.__cause__ = e
        return err
    return None


def _numpy_comparison_error(e):
    """bool() of a traced value inside one of NumPy's Python functions (np.max,
    np.sort... of a plain object array: NumPy compares its entries itself): an
    error naming that function; else None (the user's own ``if``)."""
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").split(".")[0] == "numpy":
            name = f"np.{frame.f_code.co_name}"
            err = TracerBoolError(f"bool() inside {name}")
            err.args = (f"{name} compared traced values in NumPy's own code: its argument is a plain NumPy "
                        "object array holding traced values (np.array([...]) of traced values makes one, and "
                        f"NumPy cannot hand it to symjac). Make it with np.stack([...]) or np.array([...], "
                        f"like=x), so that {name} is traced",)
            err.__cause__ = e
            return err
        tb = tb.tb_next
    return None


def _named_frame(tb, top):
    """(module, qualified name) of the outermost function of package ``top`` from
    ``tb`` inward that is not a decorator's wrapper (``<locals>``)."""
    first = None
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] != top:
            break
        found = (module, frame.f_code.co_qualname)
        first = first or found
        if "<locals>" not in found[1]:
            return found
        tb = tb.tb_next
    return first


def library_error(e, f):
    """For a tracing error raised inside a library function that ``f`` called
    (not NumPy, whose errors say what to do already): an error naming that
    function; else None."""
    if not isinstance(e, (TracerBoolError, NumericArrayError)) and not (
            isinstance(e, (TypeError, ValueError, AttributeError)) and _OBJECT_HINTS.search(str(e))):
        return None
    own = (getattr(f, "__module__", None) or "").split(".")[0]
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        top = module.split(".")[0]
        if top not in ("symjac", own, "numpy", "__main__") and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
            if top in ("importlib", "contextlib", "functools"):
                return None
            name = _public_name(*_named_frame(tb, top))
            if isinstance(e, (TracerBoolError, NumericArrayError)):
                why = "its code branches on the values or converts them to numbers"
            else:
                why = f"it raised {type(e).__name__}: {e}"
            err = UnsupportedOperationError(
                f"{name} is not traceable: {why}. symjac traces NumPy's functions and ufuncs (np.linalg too), "
                "scipy.special's ufuncs, and SciPy's logsumexp, softmax, log_softmax, multigammaln, polygamma and "
                "the scipy.stats norm, t, gamma, beta and multivariate_normal densities; write this step with those")
            err.__cause__ = e
            return err
        if top == "numpy":
            return None
        tb = tb.tb_next
    return None

