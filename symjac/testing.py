"""Checks of symjac's derivatives against independent oracles.

`check_jacobian` compares the compiled Jacobian with complex-step derivatives
(exact to rounding for real-analytic NumPy code) and central differences in
random directions, and forward mode with reverse mode.  It ships in the
package so users can check their own models the way symjac checks itself.
"""

from __future__ import annotations

import numpy as np

from symjac.transforms import jacobian

__all__ = ["check_jacobian", "complex_step_jvp", "central_difference_jvp"]

_TOLERANCES = {  # (complex step, central differences, fwd vs rev), relative to scale
    "float64": (1e-11, 1e-6, 1e-12),
    "float32": (2e-4, 2e-3, 1e-5),
}


def _call(f, args, argnum, value):
    a = list(args)
    a[argnum] = value
    return np.asarray(f(*a))


def complex_step_jvp(f, args, argnum, v, h=1e-30):
    """``J v`` by the complex step: ``Im f(x + i h v) / h`` (no cancellation)."""
    x = np.asarray(args[argnum], dtype=float)
    with np.errstate(all="ignore"):
        y = _call(f, args, argnum, x + 1j * h * v)
    if not np.iscomplexobj(y):
        raise TypeError("f did not return a complex result for a complex input")
    return y.imag / h


def central_difference_jvp(f, args, argnum, v):
    """``J v`` by central differences with a step scaled to ``x``."""
    x = np.asarray(args[argnum], dtype=float)
    h = np.cbrt(np.finfo(float).eps) * max(1.0, float(np.max(np.abs(x), initial=0.0)))
    with np.errstate(all="ignore"):
        return (_call(f, args, argnum, x + h * v) - _call(f, args, argnum, x - h * v)) / (2 * h)


def _scaled(a, b, scale):
    return float(np.max(np.abs(a - b), initial=0.0)) / max(scale, float(np.max(np.abs(b), initial=0.0)))


def check_jacobian(f, *args, argnum=0, backend="numpy", dtype=np.float64, directions=3,
                   complex_step="auto", seed=0):
    """Check symjac's Jacobian of the per-sample ``f`` at one sample ``args``.

    Compares ``J v`` for random directions ``v`` with the complex step (when
    ``f`` accepts complex input and the result agrees with central
    differences: ``complex_step="auto"`` tries it; ``True`` insists) and with
    central differences, and forward mode with reverse mode, with tolerances
    for ``dtype``.  Raises ``AssertionError`` naming the failing check;
    returns a dict of the largest scaled errors.

    >>> import numpy as np
    >>> from symjac.testing import check_jacobian
    >>> report = check_jacobian(lambda x: np.sin(x) * x[0], np.array([0.3, 1.2]))
    >>> report["complex_step"] < 1e-12, report["fwd_vs_rev"] < 1e-12
    (True, True)
    """
    dtype = np.dtype(dtype)
    tol_cs, tol_fd, tol_modes = _TOLERANCES[dtype.name]
    args = [np.asarray(a, dtype=float) for a in args]
    batched = [np.asarray(a, dtype=dtype)[None] for a in args]
    jac = {}
    for mode in ("fwd", "rev"):
        J = jacobian(f, argnum, mode=mode, backend=backend)(*batched)
        if J.dtype != dtype:
            raise AssertionError(f"{mode} Jacobian has dtype {J.dtype}, expected {dtype}")
        jac[mode] = np.asarray(J[0], dtype=float)
    value = f(*args)
    if isinstance(value, tuple):
        raise TypeError("check_jacobian checks a function with one array output; check each output of a "
                        "tuple-returning function with a wrapper such as lambda x: f(x)[0]")
    out_shape = np.shape(value)
    in_shape = args[argnum].shape
    Jf = jac["fwd"].reshape(int(np.prod(out_shape)), int(np.prod(in_shape)))
    Jr = jac["rev"].reshape(Jf.shape)
    scale = max(1.0, float(np.max(np.abs(Jf), initial=0.0)))
    report = {"fwd_vs_rev": float(np.max(np.abs(Jf - Jr), initial=0.0)) / scale}
    if not report["fwd_vs_rev"] <= tol_modes:
        raise AssertionError(f"forward and reverse mode differ by {report['fwd_vs_rev']:.3g} (scaled)")
    rng = np.random.default_rng(seed)
    use_cs = complex_step
    cs_err = fd_err = 0.0
    for _ in range(directions):
        v = rng.standard_normal(in_shape)
        jv = Jf @ v.ravel()
        fd = central_difference_jvp(f, args, argnum, v).ravel()
        fd_err = max(fd_err, _scaled(jv, fd, scale))
        if use_cs:
            try:
                cs = complex_step_jvp(f, args, argnum, v).ravel()
            except (TypeError, ValueError):
                if use_cs is True:
                    raise
                use_cs = False
                continue
            if use_cs == "auto" and _scaled(cs, fd, scale) > tol_fd:
                use_cs = False  # f is not complex-analytic (abs, max, comparisons): no oracle
                continue
            cs_err = max(cs_err, _scaled(jv, cs, scale))
    if use_cs:
        report["complex_step"] = cs_err
        if not cs_err <= tol_cs:
            raise AssertionError(f"Jacobian differs from the complex step by {cs_err:.3g} (scaled), "
                                 f"tolerance {tol_cs:g}")
    report["central_difference"] = fd_err
    if not fd_err <= tol_fd:
        raise AssertionError(f"Jacobian differs from central differences by {fd_err:.3g} (scaled), "
                             f"tolerance {tol_fd:g}")
    return report
