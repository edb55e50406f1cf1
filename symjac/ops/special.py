"""SciPy's special functions (``scipy.special``) as elementwise ops.

Each op is the SciPy ufunc of its name and traces from it by the ufunc's
``__name__``: ``psi`` serves both ``digamma`` and ``psi``, ``jv`` serves
``jn`` (one ufunc in SciPy).  NumPy kernels call ``scipy.special``; Numba
kernels call SciPy's own C code through ``cython_special`` (the ``_sc_<op>``
bindings of `codegen.scipy_special`); CUDA kernels call libdevice (erfinv,
erfcinv, ndtr, j0, j1, y0, y1; gamma and gammaln as ``math.gamma`` and
``math.lgamma``) and a generated digamma (``_cu_psi``), and the CUDA printer
refuses the others, naming the function.

Derivatives are partials built from other ops, so second derivatives follow.
At edge points they follow JAX: ``xlogy`` has partials ``log(y)`` and ``x/y``
(-inf and NaN at (0, 0)), ``xlog1py`` ``log1p(y)`` and ``x/(1+y)``; ``entr``
has ``-(log x + 1)`` for ``x >= 0`` (+inf at 0) and 0 for ``x < 0`` (where
its value is the constant -inf).  The incomplete gamma and beta densities use
``xlogy``/``xlog1py``, so ``d/dx gammainc(1, x)`` at 0 is 1 (JAX: NaN).

Orders and shape parameters without a closed-form derivative (``v`` of
``iv``/``ive``/``jv``, ``n`` of ``yn``, ``a`` of ``gammainc``/``gammaincc``,
``a`` and ``b`` of ``betainc``) pass through a ``<function>_<argument>``
identity op whose derivative rule raises `MissingRuleError` naming the
function and the argument.  The sweeps differentiate a node only when it
depends on a variable, so the error comes exactly when that derivative is
asked for; a constant parameter (a number, a constant array, an argument
not differentiated, ``nn.stop_gradient``) is never differentiated.  (The
sweeps track dependence node by node, a tensor as a whole: a parameter read
out of a tensor that also holds differentiated values counts as
differentiated; keep it in an argument of its own.)  The function's own
partial in such an argument is a stand-in 1, which only routes reverse
mode's cotangent to the raising op.  ``polygamma``'s order
must be a constant non-negative integer.
"""

from __future__ import annotations

import math

from symjac.errors import MissingRuleError, UnsupportedOperationError
from symjac.ir import ONE, ZERO, defufunc, make, to_node
from symjac.ops.define import defelementwise

__all__ = ["NAMES", "PARAMETERS", "polygamma"]

m = make
SQRT_PI_2 = math.sqrt(math.pi) / 2.0
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

NAMES: list = []  # the ops of this module (tests/test_special.py covers each)
PARAMETERS: dict = {}  # (function, argument) -> the op that carries that argument


def _scipy(name):
    """``scipy.special.<name>`` as an evaluator, SciPy imported on first use
    (``import symjac`` stays light)."""
    def evaluate(*values):
        from scipy import special

        return getattr(special, name)(*values)

    return evaluate


def _pair(to, heads=None, convert=None):
    """A SymPy pair: ``to(sp, *args)``; ``heads(sp)`` (default none) convert back."""
    pair = (lambda sp, c: to(sp, *c.nums), heads or (lambda sp: ()))
    return pair if convert is None else pair + (convert,)


def _special(name, nargs, partials, *, cost=40, ufunc=True, cuda=None, sympy=None):
    """Declare ``scipy.special.<name>``: printed as ``_sp.<name>`` by NumPy
    kernels, ``_sc_<name>`` (SciPy's C code) by Numba kernels."""
    printing = {"numpy": f"_sp.{name}({{args}})", "numba": f"_sc_{name}({{args}})"}
    if cuda is not None:
        printing["cuda"] = cuda
    defelementwise(name, nargs, _scipy(name), partials=partials, cost=cost, ufuncs=(name,) if ufunc else (),
                   sympy=sympy, printing=printing)
    NAMES.append(name)


def _parameter(function, argument, why):
    """The identity op carrying ``argument`` of ``function``; its derivative raises."""
    name = f"{function}_{argument}"

    def no_derivative(node, a):
        raise MissingRuleError(
            f"scipy.special.{function}: no derivative with respect to its argument {argument!r} ({why}). "
            f"Hold {argument!r} constant: pass it as a number or a constant array, differentiate with respect "
            f"to the other arguments only, or wrap it in symjac.nn.stop_gradient")

    defelementwise(name, 1, lambda x: x, cost=0, partials=no_derivative, printing={"numpy": "{0}"},
                   sympy=_pair(lambda sp, a: a))
    PARAMETERS[function, argument] = name
    NAMES.append(name)
    return name


def _held(op, x):
    """``x`` through the parameter op ``op`` (a number needs none: it has no derivative)."""
    x = to_node(x)
    return x if x.op in ("const", "tconst") else m(op, x)


# -- gamma and beta functions ---------------------------------------------------------------

_special("gamma", 1, lambda n, x: (m("mul", n, m("psi", x)),), cuda="math.gamma({0})",
         sympy=_pair(lambda sp, x: sp.gamma(x), lambda sp: (sp.gamma,)))
# log|gamma(x)|; SymPy's loggamma is log(gamma(x)) on its principal branch (the same for x > 0)
_special("gammaln", 1, lambda n, x: (m("psi", x),), cuda="math.lgamma({0})",
         sympy=_pair(lambda sp, x: sp.loggamma(x), lambda sp: (sp.loggamma,)))
_special("psi", 1, lambda n, x: (m("polygamma", 1.0, x),), cuda="_cu_psi({0})",
         sympy=_pair(lambda sp, x: sp.polygamma(0, x), lambda sp: (sp.digamma,)))


def polygamma(n, x):
    """``scipy.special.polygamma(n, x)``, the n-th derivative of ``psi``; ``n``
    must be a constant non-negative integer (``psi`` for 0)."""
    n = to_node(n)
    if n.op != "const" or not (n.attr >= 0 and float(n.attr).is_integer()):
        what = "a traced value" if n.op != "const" else repr(n.attr)
        raise UnsupportedOperationError(f"scipy.special.polygamma(n, x): the order n must be a constant "
                                        f"non-negative integer, got {what}")
    return m("psi", x) if n.attr == 0 else m("polygamma", n, x)


_special("polygamma", 2, lambda node, n, x: (ZERO, m("polygamma", m("add", n, 1.0), x)), ufunc=False,
         sympy=_pair(lambda sp, n, x: sp.polygamma(n, x), lambda sp: (sp.polygamma,),
                     lambda e, a: polygamma(a[0], a[1])))


def _digamma_difference(a, b):
    return m("sub", m("psi", a), m("psi", m("add", a, b)))


_special("beta", 2, lambda node, a, b: (m("mul", node, _digamma_difference(a, b)),
                                        m("mul", node, _digamma_difference(b, a))),
         sympy=_pair(lambda sp, a, b: sp.beta(a, b), lambda sp: (sp.beta,)))
_special("betaln", 2, lambda node, a, b: (_digamma_difference(a, b), _digamma_difference(b, a)),
         sympy=_pair(lambda sp, a, b: sp.log(sp.Abs(sp.beta(a, b)))))

# -- error function inverses, normal distribution -------------------------------------------

_special("erfinv", 1, lambda n, x: (m("mul", SQRT_PI_2, m("exp", m("mul", n, n))),),
         cuda="_cu_erfinv({0})", sympy=_pair(lambda sp, x: sp.erfinv(x), lambda sp: (sp.erfinv,)))
_special("erfcinv", 1, lambda n, x: (m("mul", -SQRT_PI_2, m("exp", m("mul", n, n))),),
         cuda="_cu_erfcinv({0})", sympy=_pair(lambda sp, x: sp.erfcinv(x), lambda sp: (sp.erfcinv,)))


def _normal_density(x):
    return m("mul", INV_SQRT_2PI, m("exp", m("mul", m("mul", x, x), -0.5)))


_special("ndtr", 1, lambda n, x: (_normal_density(x),), cuda="_cu_ndtr({0})",
         sympy=_pair(lambda sp, x: (1 + sp.erf(x / sp.sqrt(2))) / 2))
# density / ndtr, as one exponential: finite where both underflow (x -> -inf)
_special("log_ndtr", 1, lambda n, x: (m("exp", m("sub", m("sub", m("mul", m("mul", x, x), -0.5), n),
                                                   LOG_SQRT_2PI)),),
         sympy=_pair(lambda sp, x: sp.log((1 + sp.erf(x / sp.sqrt(2))) / 2)))

# -- x log y, entropy -------------------------------------------------------------------------

_special("xlogy", 2, lambda n, x, y: (m("log", y), m("div", x, y)),
         sympy=_pair(lambda sp, x, y: x * sp.log(y)))
_special("xlog1py", 2, lambda n, x, y: (m("log1p", y), m("div", x, m("add", y, 1.0))),
         sympy=_pair(lambda sp, x, y: x * sp.log(1 + y)))
_special("entr", 1, lambda n, x: (m("where", m("lt", x, 0.0), 0.0, m("neg", m("add", m("log", x), 1.0))),),
         sympy=_pair(lambda sp, x: -x * sp.log(x)))

# -- Bessel functions ---------------------------------------------------------------------------

def _order_one_rule(f0):
    """C1' = C0 - C1/x (for J, Y and I): the functions the value needs anyway,
    all with libdevice forms for J and Y (the recurrence (C0 -+ C2)/2 would call
    the order-2 function, which the GPU lacks).  J1(x)/x and I1(x)/x are 1/2 to
    double precision below 1e-150, where the quotient would meet subnormals."""
    def partials(n, x):
        d = m("sub", m(f0, x), m("div", n, x))
        if f0 != "y0":
            d = m("where", m("lt", m("abs", x), 1e-150), 0.5, d)
        return (d,)

    return partials


_special("j0", 1, lambda n, x: (m("neg", m("j1", x)),), cuda="_cu_j0({0})",
         sympy=_pair(lambda sp, x: sp.besselj(0, x)))
_special("j1", 1, _order_one_rule("j0"), cuda="_cu_j1({0})", sympy=_pair(lambda sp, x: sp.besselj(1, x)))
_special("y0", 1, lambda n, x: (m("neg", m("y1", x)),), cuda="_cu_y0({0})",
         sympy=_pair(lambda sp, x: sp.bessely(0, x)))
_special("y1", 1, _order_one_rule("y0"), cuda="_cu_y1({0})", sympy=_pair(lambda sp, x: sp.bessely(1, x)))
_special("i0", 1, lambda n, x: (m("i1", x),), sympy=_pair(lambda sp, x: sp.besseli(0, x)))
_special("i1", 1, _order_one_rule("i0"), sympy=_pair(lambda sp, x: sp.besseli(1, x)))

_NO_CLOSED_FORM = "it has no closed form"


def _order_rule(op, sign, extra=None):
    """Partials of a Bessel function of order v: (stand-in, the recurrence in x)."""
    def partials(node, v, x):
        d = m("mul", m("add" if sign > 0 else "sub", m(op, m("sub", v, 1.0), x), m(op, m("add", v, 1.0), x)), 0.5)
        return ONE, (d if extra is None else extra(node, d, x))

    return partials


def _bessel(name, argument, sign, sympy, extra=None, cuda=None):
    held = _parameter(name, argument, _NO_CLOSED_FORM if name != "yn" else "it is an integer order")
    _special(name, 2, _order_rule(name, sign, extra), ufunc=False, cuda=cuda,
             sympy=_pair(*sympy, convert=lambda e, a: m(name, _held(held, a[0]), a[1])) if sympy else None)
    defufunc(name, lambda v, x: m(name, _held(held, v), x))


_bessel("iv", "v", +1, (lambda sp, v, x: sp.besseli(v, x), lambda sp: (sp.besseli,)))
# ive = iv e^{-|x|}: the recurrence, less sign(x) ive
_bessel("ive", "v", +1, (lambda sp, v, x: sp.besseli(v, x) * sp.exp(-sp.Abs(x)),),
        extra=lambda node, d, x: m("sub", d, m("mul", m("sign", x), node)))
_bessel("jv", "v", -1, (lambda sp, v, x: sp.besselj(v, x), lambda sp: (sp.besselj,)))
_bessel("yn", "n", -1, (lambda sp, n, x: sp.bessely(n, x), lambda sp: (sp.bessely,)))

# -- regularized incomplete gamma and beta functions ----------------------------------------------


def _gamma_density(a, x):
    """x^(a-1) e^-x / gamma(a), with xlogy: 1 at (a, x) = (1, 0), where (a-1) log x is NaN."""
    return m("exp", m("sub", m("sub", m("xlogy", m("sub", a, 1.0), x), x), m("gammaln", a)))


_A = _parameter("gammainc", "a", _NO_CLOSED_FORM)
_special("gammainc", 2, lambda n, a, x: (ONE, _gamma_density(a, x)), ufunc=False,
         sympy=_pair(lambda sp, a, x: sp.lowergamma(a, x) / sp.gamma(a)))
defufunc("gammainc", lambda a, x: m("gammainc", _held(_A, a), x))
_AC = _parameter("gammaincc", "a", _NO_CLOSED_FORM)
_special("gammaincc", 2, lambda n, a, x: (ONE, m("neg", _gamma_density(a, x))), ufunc=False,
         sympy=_pair(lambda sp, a, x: sp.uppergamma(a, x) / sp.gamma(a)))
defufunc("gammaincc", lambda a, x: m("gammaincc", _held(_AC, a), x))


def _beta_density(a, b, x):
    """x^(a-1) (1-x)^(b-1) / B(a, b)."""
    log = m("add", m("xlogy", m("sub", a, 1.0), x), m("xlog1py", m("sub", b, 1.0), m("neg", x)))
    return m("exp", m("sub", log, m("betaln", a, b)))


_BA = _parameter("betainc", "a", _NO_CLOSED_FORM)
_BB = _parameter("betainc", "b", _NO_CLOSED_FORM)
_special("betainc", 3, lambda n, a, b, x: (ONE, ONE, _beta_density(a, b, x)), ufunc=False,
         sympy=_pair(lambda sp, a, b, x: sp.betainc_regularized(a, b, 0, x)))
defufunc("betainc", lambda a, b, x: m("betainc", _held(_BA, a), _held(_BB, b), x))


# -- Student's t distribution function ------------------------------------------------------------

def _t_density(df, t):
    """Student's t density: exp(-betaln(df/2, 1/2) - log(df)/2 - (df+1)/2 log1p(t^2/df))
    (betaln keeps it accurate for large df, where a difference of gammaln loses digits)."""
    half = m("mul", df, 0.5)
    log = m("add", m("add", m("neg", m("betaln", half, 0.5)), m("mul", m("log", df), -0.5)),
            m("mul", m("mul", m("add", df, 1.0), -0.5), m("log1p", m("div", m("mul", t, t), df))))
    return m("exp", log)


_DF = _parameter("stdtr", "df", _NO_CLOSED_FORM)
_special("stdtr", 2, lambda n, df, t: (ONE, _t_density(df, t)), ufunc=False)
defufunc("stdtr", lambda df, t: m("stdtr", _held(_DF, df), t))
