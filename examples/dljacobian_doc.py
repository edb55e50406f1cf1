"""The dljacobian documentation's workflow, in plain NumPy with symjac.

MATLAB's example builds a network (16x16x3 images, 3x3 convolution with 64
filters, ReLU, fully connected to 5, softmax), feeds 128 observations in
"SSCB" layout and returns, from one model-loss function, the loss, the
gradients of the loss with respect to the learnable parameters and
dljacobian(Y, X, 1).  This example keeps the workflow and the layouts but
writes the model as ordinary NumPy code (no `symjac.nn` layers), with dense
layers in MATLAB's weight layout (n_out, n_in) on smaller 4x4x3 images:
flatten -> fully connected 24 -> ReLU -> fully connected 5 -> softmax.
`symjac.dlfeval` traces it once, keeps the matrix products whole as tensor
ops and compiles one Numba kernel (the default backend) for the loss, the
four gradients and the Jacobian: a few seconds on the first call,
milliseconds after.  The full-size convolutional network, written with
`symjac.nn`, is examples/seed_cnn.py.

Run:  python examples/dljacobian_doc.py
"""

import time

import numpy as np

import symjac

rng = np.random.default_rng(0)
H, W_, C, B, HIDDEN, CLASSES = 4, 4, 3, 128, 24, 5

params = {
    "W1": rng.normal(size=(HIDDEN, H * W_ * C)) / np.sqrt(H * W_ * C),
    "b1": np.zeros(HIDDEN),
    "W2": rng.normal(size=(CLASSES, HIDDEN)) / np.sqrt(HIDDEN),
    "b2": np.zeros(CLASSES),
}
X = rng.random((H, W_, C, B))                                  # "SSCB"
T = np.eye(CLASSES)[:, rng.integers(0, CLASSES, size=B)]       # one-hot targets, "CB"


def forward(X, W1, b1, W2, b2):
    flat = X.reshape(H * W_ * C, X.shape[-1])                   # keeps the batch axis whole
    hidden = np.maximum(W1 @ flat + b1[:, None], 0.0)           # ReLU
    Z = W2 @ hidden + b2[:, None]
    Z = Z - np.max(Z, axis=0, keepdims=True)
    E = np.exp(Z)
    return E / np.sum(E, axis=0, keepdims=True)                 # softmax over channels


def model_loss(X, T, W1, b1, W2, b2):
    Y = forward(X, W1, b1, W2, b2)
    loss = -np.sum(T * np.log(Y)) / X.shape[-1]                 # cross-entropy, mean over observations
    gradients = symjac.dlgradient(loss, W1, b1, W2, b2)
    dYdX = symjac.dljacobian(Y, X, 0)                           # MATLAB dim=1 is dim=0 here
    return loss, gradients, dYdX


def flat_model_loss(X, T, *p):
    loss, gradients, dYdX = model_loss(X, T, *p)
    return (loss, *gradients, dYdX)


def run():
    loss, g1, gb1, g2, gb2, dYdX = symjac.dlfeval(flat_model_loss, X, T, *params.values(),
                                                  batch_axis=(-1, -1, None, None, None, None))
    return loss, (g1, gb1, g2, gb2), dYdX


if __name__ == "__main__":
    t = time.perf_counter()
    loss, gradients, dYdX = run()
    print(f"first call (trace, differentiate, compile, run): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    run()
    print(f"second call: {1e3 * (time.perf_counter() - t):.1f} ms")
    print("loss:", float(loss))
    print("gradient shapes:", [g.shape for g in gradients])
    print("size of dYdX:", dYdX.shape)

    # spot-check a few entries against central differences of the plain NumPy forward pass
    worst = 0.0
    for i, (h, w, c, b) in [(0, (1, 2, 0, 5)), (3, (3, 0, 2, 77)), (4, (0, 3, 1, 127))]:
        e = np.zeros_like(X)
        e[h, w, c, b] = 1e-6
        fd = (forward(X + e, *params.values())[i, b] - forward(X - e, *params.values())[i, b]) / 2e-6
        worst = max(worst, abs(fd - dYdX[i, h, w, c, b]))
    print(f"max deviation from central differences on 3 entries: {worst:.1e}")
    assert worst < 1e-7
