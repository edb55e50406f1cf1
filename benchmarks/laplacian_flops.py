"""Forward Laplacian against the Hessian trace: flops per sample from `.stats`.

Both kernels go through the same CSE and dead-code elimination, so the
Hessian-trace kernel already drops the off-diagonal second derivatives; the
difference left is what the forward sweep saves.

Run:  python -m benchmarks.laplacian_flops
"""

import numpy as np

import symjac


def quartic(x):  # 20 inputs, every pair coupled
    s = np.sum(np.sin(x) * np.arange(1.0, 21.0))
    return np.tanh(s) * np.sum(x ** 2) + np.exp(0.1 * np.sum(x))


def pinn(x, W1, b1, W2, b2, W3, b3, w4):  # DESIGN's pinn network, 3 -> 32 -> 32 -> 32 -> 1
    h = np.tanh(W1 @ x + b1)
    h = np.tanh(W2 @ h + b2)
    h = np.tanh(W3 @ h + b3)
    return w4 @ h


def flops(f, shapes, axes):
    return symjac.compile(f, backend="numpy").specialize(shapes, axes).stats["flops_per_sample"]


def main():
    weights = [(32, 3), (32,), (32, 32), (32,), (32, 32), (32,), (32,)]
    cases = [("20-input scalar function", quartic, [(20,)], [0]),
             ("PINN MLP 3-32-32-32-1 tanh", pinn, [(3,)] + weights, [0] + [None] * 7)]
    print("| function | forward Laplacian | Hessian trace | ratio |")
    print("|---|---|---|---|")
    for name, f, shapes, axes in cases:
        lap = flops(lambda *a: symjac.laplacian(f)(*a), shapes, axes)
        tr = flops(lambda *a: np.trace(symjac.hessian(f)(*a)), shapes, axes)
        print(f"| {name} | {lap:,} | {tr:,} | {tr / lap:.2f}x |")


if __name__ == "__main__":
    main()
