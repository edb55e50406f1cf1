"""One-sample Jacobians, as SciPy calls them (``jac(t, y)``): per-call time of
symjac (``in_axes=None``) against a hand-written NumPy Jacobian, JAX
``jit(jacfwd)`` and SymEngine ``Lambdify`` (LLVM), and symjac's overhead above
its own compiled kernel (the Numba dispatcher called directly on prepared
arrays).

    python -m benchmarks.one_sample            # Robertson (3 states), HIRES (8 states)

Median of 7 runs of N calls each; prints a table (microseconds per call).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

K = np.array([0.04, 1e4, 3e7])


def robertson(t, y, xp=np):
    return xp.stack([-K[0] * y[0] + K[1] * y[1] * y[2],
                     K[0] * y[0] - K[1] * y[1] * y[2] - K[2] * y[1] ** 2,
                     K[2] * y[1] ** 2])


def robertson_hand(t, y):
    return np.array([[-K[0], K[1] * y[2], K[1] * y[1]],
                     [K[0], -K[1] * y[2] - 2 * K[2] * y[1], -K[1] * y[1]],
                     [0.0, 2 * K[2] * y[1], 0.0]])


def hires(t, y, xp=np):
    y1, y2, y3, y4, y5, y6, y7, y8 = (y[i] for i in range(8))
    return xp.stack([-1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007, 1.71 * y1 - 8.75 * y2,
                     -10.03 * y3 + 0.43 * y4 + 0.035 * y5, 8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                     -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
                     -280.0 * y6 * y8 + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                     280.0 * y6 * y8 - 1.81 * y7, -280.0 * y6 * y8 + 1.81 * y7])


def hires_hand(t, y):
    J = np.zeros((8, 8))
    J[0, :3] = -1.71, 0.43, 8.32
    J[1, :2] = 1.71, -8.75
    J[2, [2, 3, 4]] = -10.03, 0.43, 0.035
    J[3, [1, 2, 3]] = 8.32, 1.71, -1.12
    J[4, [4, 5, 6]] = -1.745, 0.43, 0.43
    J[5, [3, 4, 5, 6, 7]] = 0.69, 1.71, -280.0 * y[7] - 0.43, 0.69, -280.0 * y[5]
    J[6, [5, 6, 7]] = 280.0 * y[7], -1.81, 280.0 * y[5]
    J[7, [5, 6, 7]] = -280.0 * y[7], 1.81, -280.0 * y[5]
    return J


def per_call(fn, n):
    fn()
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


def main(n=20_000):
    import symjac

    rows = []
    for name, f, hand, y in (("robertson", robertson, robertson_hand, np.array([1.0, 1e-4, 0.2])),
                             ("hires", hires, hires_hand, np.linspace(0.1, 0.8, 8))):
        t = 0.5
        J = symjac.jacobian(f, argnums=1, in_axes=None, backend="numba")
        J(t, y)
        symjac.wait_compiled()
        J(t, y)
        assert np.allclose(J(t, y), hand(t, y), rtol=1e-14)
        res = {"numpy-hand": per_call(lambda: hand(t, y), n), "symjac": per_call(lambda: J(t, y), n)}
        # the kernel alone: the Numba dispatcher on prepared (1, n) rows
        k = J.kernel_for(np.float64(t), y)
        kernel = k._compile("float64", 1).func
        kernel = getattr(kernel, "func", kernel)
        kernel = getattr(kernel, "func", kernel)
        ins = [np.array([[t]]), y.reshape(1, -1).copy()] + k._hidden("float64")
        out = np.empty((1, y.size * y.size))
        res["symjac kernel alone"] = per_call(lambda: kernel(0, 1, *ins, out), n)
        try:
            import jax
            import jax.numpy as jnp

            jax.config.update("jax_enable_x64", True)
            jf = jax.jit(jax.jacfwd(lambda t, y: f(t, y, jnp), argnums=1))
            yj = jnp.asarray(y)
            jf(t, yj).block_until_ready()
            res["jax jit(jacfwd)"] = per_call(lambda: jf(t, yj).block_until_ready(), n // 4)
            res["jax jit(jacfwd), NumPy in/out"] = per_call(lambda: np.asarray(jf(t, y)), n // 4)
        except ImportError:
            pass
        try:
            import symengine as se

            ys = se.symbols(f"y0:{y.size}")
            expr = se.Matrix(list(f(t, list(ys), xp=_SymStack)))
            jac = expr.jacobian(se.Matrix(ys))
            lam = se.Lambdify(list(ys), jac, backend="llvm", cse=True)
            res["symengine Lambdify (llvm)"] = per_call(lambda: lam(y), n)
            assert np.allclose(np.asarray(lam(y)).reshape(y.size, y.size), hand(t, y), rtol=1e-12)
        except ImportError:
            pass
        rows.append((name, res))
    print(f"# one-sample Jacobian per call (us), median of 7 x {n} calls")
    for name, res in rows:
        print(f"\n{name}")
        for method, us in res.items():
            print(f"  {method:34s} {us:8.2f} us")
        print(f"  {'symjac above its kernel':34s} {res['symjac'] - res['symjac kernel alone']:8.2f} us")
    return 0


class _SymStack:
    """``xp`` for SymEngine: ``stack`` of scalars is a list."""

    @staticmethod
    def stack(items):
        return list(items)


if __name__ == "__main__":
    sys.exit(main())
