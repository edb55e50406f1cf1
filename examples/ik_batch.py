"""Inverse kinematics for a batch of 7-joint arms by damped least squares.

Each arm moves its flange to its own target position: per iteration, one
batched symjac Jacobian of the forward kinematics (3 x 7 per arm, every arm
in one kernel call) and one batched solve,

    dq = J^T (J J^T + lambda^2 I)^-1 (target - p(q)).

    python examples/ik_batch.py             # 10,000 arms
    python examples/ik_batch.py --arms 200
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import symjac

# standard DH table of a Panda-like arm: (a, alpha, d)
DH = [(0.0, -math.pi / 2, 0.333), (0.0, math.pi / 2, 0.0), (0.0825, math.pi / 2, 0.316),
      (-0.0825, -math.pi / 2, 0.0), (0.0, math.pi / 2, 0.384), (0.088, math.pi / 2, 0.0), (0.0, 0.0, 0.107)]


def flange(q):
    """Flange position of one arm (q: 7 joint angles), plain NumPy."""
    T = None
    for i, (a, alpha, d) in enumerate(DH):
        c, s = np.cos(q[i]), np.sin(q[i])
        ca, sa = round(math.cos(alpha), 15), round(math.sin(alpha), 15)
        A = np.array([[c, -s * ca, s * sa, a * c],
                      [s, c * ca, -c * sa, a * s],
                      [0.0, sa, ca, d],
                      [0.0, 0.0, 0.0, 1.0]])
        T = A if T is None else T @ A
    return T[:3, 3]


def solve(targets, q0, iterations=50, damping=0.05, backend="auto"):
    """Joint angles (B, 7) whose flanges reach ``targets`` (B, 3), and the
    final position errors (B,)."""
    position = symjac.compile(flange, backend=backend)
    jacobian = symjac.jacobian(flange, backend=backend)
    q = q0.copy()
    eye = np.eye(3)
    for _ in range(iterations):
        e = targets - position(q)
        J = jacobian(q)  # (B, 3, 7): every arm's Jacobian in one call
        JJt = J @ np.swapaxes(J, 1, 2) + damping ** 2 * eye
        q += np.einsum("bji,bj->bi", J, np.linalg.solve(JJt, e[..., None])[..., 0])
    return q, np.linalg.norm(targets - position(q), axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", type=int, default=10_000)
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    q_true = rng.uniform(-1.5, 1.5, (args.arms, 7))
    targets = np.stack([flange(q) for q in q_true[: min(args.arms, 64)]])  # reachable targets ...
    targets = np.resize(targets, (args.arms, 3))  # ... reused across the batch
    q0 = q_true + rng.normal(scale=0.3, size=q_true.shape)  # start near a solution
    q, err = solve(targets, q0, args.iterations)
    print(f"{args.arms} arms, {args.iterations} iterations: median error {np.median(err):.1e} m, "
          f"max {err.max():.1e} m, {np.mean(err < 1e-6) * 100:.1f}% under 1 um")
    return q, err


if __name__ == "__main__":
    main()
    sys.exit(0)
