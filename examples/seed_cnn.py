"""MATLAB's dljacobian documentation example, end to end, with symjac.

The network of that example, with random (seeded) weights: 16x16x3 images ->
3x3 convolution with 64 filters (padding "same") -> ReLU -> fully connected
to 5 -> softmax.  128 observations come in MATLAB's "SSCB" layout, X of
shape (16, 16, 3, 128), batch last.  The model function, written with
`symjac.nn` layers, returns Y and dljacobian(Y, X, 0) (MATLAB's dim=1).
`symjac.dlfeval` traces it once, for one observation, compiles one Numba
kernel (the default backend; the convolution and the dense layer run as loops
over the weight arrays) and runs it over the batch.  The Jacobian has
MATLAB's size, (5, 16, 16, 3, 128): dY(i, b)/dX(h, w, c, b) per observation b.

The example prints the first-call time (trace, differentiate, compile, run)
and a second-call time, then compares a few Jacobian entries with central
finite differences of a plain NumPy forward pass.

Run:  python examples/seed_cnn.py [--batch N]
"""

import argparse
import time

import numpy as np

import symjac
from symjac import nn

H, W, C, FILTERS, CLASSES = 16, 16, 3, 64, 5


def model(X, Wc, bc, Wf, bf):
    """The network on X (16, 16, 3, B): Y (5, B) ("CB") and dY/dX (5, 16, 16, 3, B)."""
    A = nn.relu(nn.conv2d(X, Wc, bc, padding="same"))   # (16, 16, 64, B)
    Y = nn.softmax(nn.dense(A, Wf, bf), axis=0)          # (5, B), softmax over the channels
    return Y, symjac.dljacobian(Y, X, 0)                 # MATLAB dim=1 is dim=0 here


def forward_np(X, Wc, bc, Wf, bf):
    """The same network in plain NumPy (no symjac): Y (5, B) from X (16, 16, 3, B)."""
    x = np.pad(np.moveaxis(X, -1, 0), ((0, 0), (1, 1), (1, 1), (0, 0)))  # (B, 18, 18, 3), "same" for 3x3
    A = sum(x[:, i:i + H, j:j + W] @ Wc[i, j] for i in range(3) for j in range(3)) + bc
    Z = np.maximum(A, 0.0).reshape(len(A), -1) @ Wf + bf                  # (B, 5)
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return (E / E.sum(axis=1, keepdims=True)).T


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="number of observations (default 128)")
    batch = parser.parse_args(argv).batch

    rng = np.random.default_rng(0)
    Wc = rng.normal(size=(3, 3, C, FILTERS)) / np.sqrt(3 * 3 * C)      # (kh, kw, C_in, C_out)
    bc = 0.1 * rng.normal(size=FILTERS)
    Wf = rng.normal(size=(H * W * FILTERS, CLASSES)) / np.sqrt(H * W * FILTERS)
    bf = 0.1 * rng.normal(size=CLASSES)
    X = rng.random((H, W, C, batch))                                   # "SSCB", batch last
    args = (X, Wc, bc, Wf, bf)
    batch_axis = (-1, None, None, None, None)                          # the weights are shared

    t = time.perf_counter()
    Y, dYdX = symjac.dlfeval(model, *args, batch_axis=batch_axis)
    print(f"first call (trace, differentiate, compile, run): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    Y, dYdX = symjac.dlfeval(model, *args, batch_axis=batch_axis)
    print(f"second call: {1e3 * (time.perf_counter() - t):.1f} ms")
    print("size of Y:", Y.shape)
    print("size of dYdX:", dYdX.shape)

    # spot-check random entries against central differences of the NumPy forward pass
    step, worst = 1e-6, 0.0
    for _ in range(6):
        i, h, w, c, b = (int(rng.integers(n)) for n in (CLASSES, H, W, C, batch))
        x = X[..., b:b + 1].copy()                                     # observation b alone
        x[h, w, c] += step
        up = forward_np(x, *args[1:])[i, 0]
        x[h, w, c] -= 2 * step
        down = forward_np(x, *args[1:])[i, 0]
        fd = (up - down) / (2 * step)
        worst = max(worst, abs(fd - dYdX[i, h, w, c, b]) / abs(fd))
    print(f"max relative error against central differences on 6 entries: {worst:.1e}")
    assert worst < 1e-6, worst
    assert np.allclose(Y, forward_np(*args)), "Y differs from the NumPy forward pass"
    return Y, dYdX


if __name__ == "__main__":
    main()
