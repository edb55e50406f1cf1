"""A 2-D Poisson problem solved by a physics-informed network, with symjac.

    -Laplacian(u) = f   on (0, 1)^2,   u = 0 on the boundary,
    f = 2 pi^2 sin(pi x) sin(pi y),  exact solution u = sin(pi x) sin(pi y).

The network is a small tanh MLP (2 -> 16 -> 16 -> 1); the boundary condition
is built in, u = x (1 - x) y (1 - y) N(x, y).  The loss is the mean squared
residual at collocation points, written with `symjac.dllaplacian`; its
gradient with respect to the weights comes from `symjac.dlgradient`.  One
compiled kernel returns both, and a plain NumPy Adam loop trains the network.

Run:  python examples/pinn_poisson.py [--steps N] [--backend numpy|numba]
"""

import argparse
import time

import numpy as np

import symjac

WIDTH = 16


def init(rng):
    def dense(n_out, n_in):
        return rng.normal(size=(n_out, n_in)) * np.sqrt(1.0 / n_in), np.zeros(n_out)

    W1, b1 = dense(WIDTH, 2)
    W2, b2 = dense(WIDTH, WIDTH)
    w3, _ = dense(1, WIDTH)
    return [W1, b1, W2, b2, w3]


def u_model(X, W1, b1, W2, b2, w3):
    """X: (2, B) "CB" points -> u: (1, B), zero on the boundary by construction."""
    h = np.tanh(W1 @ X + b1[:, None])
    h = np.tanh(W2 @ h + b2[:, None])
    x, y = X[0], X[1]
    return (w3 @ h) * (x * (1 - x) * y * (1 - y))


def loss_and_gradients(X, W1, b1, W2, b2, w3):
    U = u_model(X, W1, b1, W2, b2, w3)
    f = 2 * np.pi ** 2 * np.sin(np.pi * X[0]) * np.sin(np.pi * X[1])
    residual = symjac.dllaplacian(U, X, 0) + f
    loss = np.mean(residual ** 2)
    return (loss, *symjac.dlgradient(loss, W1, b1, W2, b2, w3))


def predict(X, *params):
    return u_model(X, *params)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--points", type=int, default=256)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "numba", "numba-parallel", "auto"])
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    params = init(rng)
    axes = (-1,) + (None,) * len(params)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, beta1, beta2, eps = 3e-3, 0.9, 0.999, 1e-8
    t0 = time.perf_counter()
    losses = []
    for step in range(1, args.steps + 1):
        X = rng.uniform(0.0, 1.0, size=(2, args.points))      # fresh collocation points each step
        loss, *grads = symjac.dlfeval(loss_and_gradients, X, *params, batch_axis=axes, backend=args.backend)
        losses.append(float(loss))
        for k, g in enumerate(grads):
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g * g
            mhat, vhat = m[k] / (1 - beta1 ** step), v[k] / (1 - beta2 ** step)
            params[k] = params[k] - lr * mhat / (np.sqrt(vhat) + eps)
        if step == 1 or step % (args.steps // 10 or 1) == 0:
            print(f"step {step:5d}   loss {float(loss):.3e}   ({time.perf_counter() - t0:.1f} s)")

    g = np.linspace(0.0, 1.0, 41)
    GX, GY = np.meshgrid(g, g)
    grid = np.stack([GX.ravel(), GY.ravel()])
    u = symjac.dlfeval(predict, grid, *params, batch_axis=axes, backend=args.backend)[0]
    exact = np.sin(np.pi * grid[0]) * np.sin(np.pi * grid[1])
    err = np.max(np.abs(u - exact)) / np.max(np.abs(exact))
    print(f"max error against the exact solution on a 41x41 grid: {err:.2e} (relative)")
    return err, losses


if __name__ == "__main__":
    main()
