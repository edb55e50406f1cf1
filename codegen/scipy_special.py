"""SciPy's special functions in printed kernels: the lines a module needs
before its kernel.

- NumPy kernels call ``scipy.special`` as ``_sp``, imported by the module
  only when a template names it (SciPy takes a tenth of a second to load).
- Numba kernels call SciPy's own C code: each ``_sc_<name>`` a template
  names is bound when the module loads, from the function pointer that
  ``scipy.special.cython_special`` exports (``CYTHON``: the double version
  of each), as a Numba ``ExternalFunction`` on a symbol added to LLVM.  A
  ctypes pointer would do too, but Numba refuses to cache a function that
  holds one ("dynamic globals"); a symbol keeps ``cache=True`` working.  The
  C functions take and return doubles: ``_sc_<name>`` casts its result to
  ``_F``, so float32 kernels stay float32.  Values are SciPy's bit for bit.
- ``polygamma`` has no C entry point: ``_sc_polygamma`` is printed here
  (``psi`` for n = 0, else (-1)^(n+1) n! zeta(n+1, x), the Hurwitz zeta by
  Cephes' Euler-Maclaurin sum, as SciPy computes it).

These bindings run on the CPU only: `cpu_only` names the SciPy function a
CUDA template would reach, so the CUDA printer refuses it by name instead of
failing in Numba-CUDA's typing.  Only names from these tables reach the
source (never user text).
"""

from __future__ import annotations

import re

__all__ = ["CYTHON", "numpy_lines", "numba_lines", "cpu_only"]

# op -> (cython_special capsule of its double version, number of arguments)
CYTHON = {
    "gamma": ("__pyx_fuse_1gamma", 1), "gammaln": ("gammaln", 1), "psi": ("__pyx_fuse_1psi", 1),
    "beta": ("beta", 2), "betaln": ("betaln", 2), "erfinv": ("__pyx_fuse_0erfinv", 1),
    "erfcinv": ("erfcinv", 1), "ndtr": ("__pyx_fuse_1ndtr", 1), "log_ndtr": ("__pyx_fuse_1log_ndtr", 1),
    "xlogy": ("__pyx_fuse_1xlogy", 2), "xlog1py": ("__pyx_fuse_1xlog1py", 2), "entr": ("entr", 1),
    "j0": ("j0", 1), "j1": ("j1", 1), "y0": ("y0", 1), "y1": ("y1", 1), "i0": ("i0", 1), "i1": ("i1", 1),
    "iv": ("__pyx_fuse_1iv", 2), "ive": ("__pyx_fuse_1ive", 2), "jv": ("__pyx_fuse_1jv", 2),
    "yn": ("__pyx_fuse_0yn", 2), "gammainc": ("gammainc", 2), "gammaincc": ("gammaincc", 2),
    "stdtr": ("__pyx_fuse_0stdtr", 2),
    "betainc": ("__pyx_fuse_0betainc", 3),
}
PRINTED = {"polygamma": ("psi",)}  # printed here, with the bindings each needs

_CALL = re.compile(r"\b_sc_([a-z0-9_]+)\(")


def _used(program, target):
    """Names of ``_sc_`` bindings the program's templates for ``target`` call."""
    names = set()
    for op in program.functions:
        names.update(_CALL.findall(program.template(op, target) or ""))
    for name in list(names):
        names.update(PRINTED.get(name, ()))
    unknown = names - CYTHON.keys() - PRINTED.keys()
    if unknown:
        raise ValueError(f"no SciPy binding for _sc_{sorted(unknown)[0]}")
    return sorted(names)


def numpy_lines(program):
    """``import scipy.special as _sp`` when a NumPy template calls it."""
    if any("_sp." in (program.template(op, "numpy") or "") for op in program.functions):
        return ["from scipy import special as _sp", ""]
    return []


def numba_lines(program, decorator):
    """The ``_sc_`` bindings the program's Numba templates call (``decorator``:
    the printer's ``@numba.njit(...)`` lines)."""
    names = _used(program, "numba")
    if not names:
        return []
    lines = ["# SciPy's C special functions (scipy.special.cython_special), by symbol: Numba caches them",
             "import llvmlite.binding as _llvm",
             "from numba.extending import get_cython_function_address as _cython_address", ""]
    for name in names:
        if name in PRINTED:
            continue
        capsule, nargs = CYTHON[name]
        params = ", ".join(f"a{i}" for i in range(nargs))
        sig = ", ".join(["numba.float64"] * nargs + ["numba.intc"])
        lines += [f'_llvm.add_symbol("symjac_sc_{name}", _cython_address("scipy.special.cython_special", '
                  f'"{capsule}"))',
                  f'_c_{name} = numba.types.ExternalFunction("symjac_sc_{name}", numba.float64({sig}))', "", "",
                  *decorator, f"def _sc_{name}({params}):", f"    return _F(_c_{name}({params}, 0))", "", ""]
    if "polygamma" in names:
        lines += [*decorator, *_POLYGAMMA.strip().splitlines(), "", ""]
    return lines


_POLYGAMMA = '''
def _sc_polygamma(n, x):
    # psi for n = 0, else (-1)^(n+1) n! zeta(n+1, x): SciPy's definition
    if n == 0:
        return _sc_psi(x)
    s = n + 1.0
    q = float(x)
    if q <= 0.0 and q == math.floor(q):
        z = math.inf
    elif q > 1e8:  # asymptotic expansion (DLMF 25.11.43)
        z = (1.0 / (s - 1.0) + 1.0 / (2.0 * q)) * q ** (1.0 - s)
    else:  # Cephes' Euler-Maclaurin summation
        z = q ** -s
        a = q
        b = 0.0
        i = 0
        done = False
        while i < 9 or a <= 9.0:
            i += 1
            a += 1.0
            b = a ** -s
            z += b
            if -1.11022302462515654042e-16 * z < b < 1.11022302462515654042e-16 * z:
                done = True
                break
        if not done:
            w = a
            z += b * w / (s - 1.0)
            z -= 0.5 * b
            a = 1.0
            k = 0.0
            for j in range(12):
                a *= s + k
                b /= w
                t = a * b / _ZETA_A[j]
                z += t
                if abs(t / z) < 1.11022302462515654042e-16:
                    break
                k += 1.0
                a *= s + k
                b /= w
                k += 1.0
    sign = 1.0 if int(n) % 2 == 1 else -1.0
    return _F(sign * math.gamma(n + 1.0) * z)


_ZETA_A = (12.0, -720.0, 30240.0, -1209600.0, 47900160.0, -1.8924375803183791606e9, 7.47242496e10,
           -2.950130727918164224e12, 1.1646782814350067249e14, -4.5979787224074726105e15,
           1.8152105401943546773e17, -7.1661652561756670113e18)
'''


def cpu_only(program, target="cuda"):
    """The SciPy function (``scipy.special.<name>``) that ``program``'s templates
    for ``target`` would reach through a CPU-only binding, or None."""
    names = _used(program, target)
    return names[0] if names else None
