"""Arm benchmark: 6 x 7 Jacobian of the forward kinematics of a 7-joint serial arm.

Per sample: joint angles q (7,).  Standard Denavit-Hartenberg chain
T = A_1(q_1) ... A_7(q_7) with a Panda-like table (Franka Panda link lengths
placed in the standard-DH convention; not the exact Panda kinematics).  The
output is the 6-vector pose: the flange position (x, y, z) and the ZYX Euler
angles (yaw, pitch, roll) of its rotation, via arctan2.  The Jacobian
d pose / d q (6 x 7) has 36 structural nonzeros of 42: the position does not
depend on q_7 (no link offset after joint 7), and z, pitch and roll do not
depend on q_1 (a rotation about the base z axis).

Run:  python -m benchmarks.arm [--quick] [--repeats N] [-B N] [--methods a,b]
"""

from __future__ import annotations

import math
import os
import sys
from types import SimpleNamespace

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common
from benchmarks.common import Method, Runner, nz_to_dense

common.setup_env()  # fresh SYMJAC_CACHE_DIR before symjac is imported anywhere

NAME = "arm"
TITLE = "arm: forward kinematics of a 7-joint arm (standard DH), 6 x 7 pose Jacobian"
DEFAULT_B = 1_000_000
QUICK_B = 20_000
NQ, NOUT = 7, 6

# standard DH: (a, alpha, d) per joint; theta_i = q_i
DH = [
    (0.0, -math.pi / 2, 0.333),
    (0.0, math.pi / 2, 0.0),
    (0.0825, math.pi / 2, 0.316),
    (-0.0825, -math.pi / 2, 0.0),
    (0.0, math.pi / 2, 0.384),
    (0.088, math.pi / 2, 0.0),
    (0.0, 0.0, 0.107),
]


def _exact(v):
    """cos/sin of multiples of pi/2 as exact integers (so 0 * x folds away everywhere)."""
    r = round(v)
    return int(r) if abs(v - r) < 1e-12 else v


A_ = [a for a, _, _ in DH]
D_ = [d for _, _, d in DH]
CA = [_exact(math.cos(al)) for _, al, _ in DH]
SA = [_exact(math.sin(al)) for _, al, _ in DH]


def make_fk(xp):
    """The per-sample model written once for NumPy (symjac traces it) and jax.numpy."""

    def fk(q):
        T = None
        for i in range(NQ):
            c, s = xp.cos(q[i]), xp.sin(q[i])
            A = xp.array([[c, -s * CA[i], s * SA[i], A_[i] * c],
                          [s, c * CA[i], -c * SA[i], A_[i] * s],
                          [0.0, SA[i], CA[i], D_[i]],
                          [0.0, 0.0, 0.0, 1.0]])
            T = A if T is None else T @ A
        R = T[:3, :3]
        yaw = xp.arctan2(R[1, 0], R[0, 0])
        pitch = xp.arctan2(-R[2, 0], xp.sqrt(R[2, 1] ** 2 + R[2, 2] ** 2))
        roll = xp.arctan2(R[2, 1], R[2, 2])
        return xp.array([T[0, 3], T[1, 3], T[2, 3], yaw, pitch, roll])

    return fk


def fk_scalar(q, m):
    """The same model on scalar symbols (SymPy, SymEngine, CasADi SX); ``m`` gives sin, cos, atan2, sqrt."""
    T = None
    for i in range(NQ):
        c, s = m.cos(q[i]), m.sin(q[i])
        A = [[c, -s * CA[i], s * SA[i], A_[i] * c],
             [s, c * CA[i], -c * SA[i], A_[i] * s],
             [0, SA[i], CA[i], D_[i]],
             [0, 0, 0, 1]]
        if T is None:
            T = A
        else:
            T = [[sum((T[r][k] * A[k][col] for k in range(4)), 0) for col in range(4)] for r in range(4)]
    yaw = m.atan2(T[1][0], T[0][0])
    pitch = m.atan2(-T[2][0], m.sqrt(T[2][1] ** 2 + T[2][2] ** 2))
    roll = m.atan2(T[2][1], T[2][2])
    return [T[0][3], T[1][3], T[2][3], yaw, pitch, roll]


def make_problem(B, seed=0):
    rng = np.random.default_rng(4321 + seed)
    Q = rng.uniform(-2.5, 2.5, (B, NQ))
    return SimpleNamespace(B=B, Q=Q, fk=make_fk(np))


def describe(p):
    return [f"- chain: 7 revolute joints, standard DH, a = {A_}, d = {D_}, alpha = +-pi/2 (0 for joint 7)",
            "- output: flange position xyz + ZYX Euler angles (arctan2); Jacobian 6 x 7 w.r.t. q; "
            "structural nonzeros reported per method below (`nnz=`)"]


def floor_shapes(p):
    return [("dense", (p.B, NOUT * NQ)), ("nnz", (p.B, 36))]


def check_indices(B):
    return np.unique(np.linspace(0, B - 1, min(B, 257)).astype(np.int64))


# -- symjac ---------------------------------------------------------------------

def _preload_symjac():
    import numba  # noqa: F401  (library import is not part of the first call)

    import symjac  # noqa: F401


def _symjac(p, backend, sparse, use_out=True, non_ieee=False):
    return common.symjac_runner(p.fk, (p.Q,), (NOUT, NQ), backend=backend, sparse=sparse, use_out=use_out,
                                non_ieee=non_ieee)


# -- peers ----------------------------------------------------------------------

def _preload_jax():
    import jax

    jax.config.update("jax_enable_x64", True)


def _jax(p):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    fn = jax.jit(jax.vmap(jax.jacfwd(make_fk(jnp))))
    Q = jnp.asarray(p.Q)
    state = {}

    def run():
        state["res"] = fn(Q).block_until_ready()

    return Runner(run, lambda idx: np.asarray(state["res"])[idx])


def _preload_torch():
    import torch
    import torch.func  # noqa: F401


def _torch(p):
    import torch
    from torch.func import jacfwd, vmap

    def fk(q):
        T = None
        for i in range(NQ):
            c, s = torch.cos(q[i]), torch.sin(q[i])
            z = torch.zeros_like(c)
            A = torch.stack([torch.stack([c, -s * CA[i], s * SA[i], A_[i] * c]),
                             torch.stack([s, c * CA[i], -c * SA[i], A_[i] * s]),
                             torch.stack([z, z + SA[i], z + CA[i], z + D_[i]]),
                             torch.stack([z, z, z, z + 1.0])])
            T = A if T is None else T @ A
        R = T[:3, :3]
        yaw = torch.atan2(R[1, 0], R[0, 0])
        pitch = torch.atan2(-R[2, 0], torch.sqrt(R[2, 1] ** 2 + R[2, 2] ** 2))
        roll = torch.atan2(R[2, 1], R[2, 2])
        return torch.stack([T[0, 3], T[1, 3], T[2, 3], yaw, pitch, roll])

    fn = vmap(jacfwd(fk))
    Q = torch.from_numpy(p.Q)
    state = {}

    def run():
        with torch.no_grad():
            state["res"] = fn(Q)

    return Runner(run, lambda idx: state["res"].numpy()[idx], info={"torch_threads": torch.get_num_threads()})


def _symbolic_jacobian(mod):
    """(symbols q, row-major nonzero entries, rows, cols) with SymPy or SymEngine."""
    # Not "x0", ...: SymEngine's Lambdify(cse=True) names its temporaries x0, x1, ...
    qs = [mod.Symbol(f"q{i}") for i in range(NQ)]
    pose = fk_scalar(qs, mod)
    rows, cols, nz = [], [], []
    for i in range(NOUT):
        for j in range(NQ):
            e = mod.diff(pose[i], qs[j])
            if e != 0:
                rows.append(i)
                cols.append(j)
                nz.append(e)
    return qs, nz, np.array(rows), np.array(cols)


def _preload_sympy():
    import sympy  # noqa: F401


def _sympy(p):
    import sympy

    qs, nz, rows, cols = _symbolic_jacobian(sympy)
    fn = sympy.lambdify((qs,), nz, modules="numpy", cse=True)
    QT = np.ascontiguousarray(p.Q.T)  # (7, B): layout, untimed, see note
    buf = np.empty((len(nz), p.B))

    def run():
        vals = fn(QT)
        for j, v in enumerate(vals):
            buf[j] = v

    return Runner(run, lambda idx: nz_to_dense(buf[:, idx].T, rows, cols, (NOUT, NQ)), info={"nnz": len(nz)})


def _preload_symengine():
    import symengine  # noqa: F401


def _symengine(p):
    import symengine

    qs, nz, rows, cols = _symbolic_jacobian(symengine)
    fn = symengine.Lambdify(qs, nz, cse=True, backend="llvm")
    buf = np.empty((p.B, len(nz)))
    Q = np.ascontiguousarray(p.Q)

    def run():
        fn(Q, out=buf)

    return Runner(run, lambda idx: nz_to_dense(buf[idx], rows, cols, (NOUT, NQ)), info={"nnz": len(nz)})


def _preload_casadi():
    import casadi  # noqa: F401


def _casadi(p, mode):
    import casadi as ca

    q = ca.SX.sym("q", NQ)
    pose = ca.vertcat(*fk_scalar([q[i] for i in range(NQ)], ca))
    Jsx = ca.jacobian(pose, q)
    rows, cols = (np.array(a) for a in Jsx.sparsity().get_triplet())  # column-major nonzeros
    F = ca.Function("jac_nz", [q], [Jsx.nz[:]])
    Fm = F.map(p.B, mode, 2) if mode == "thread" else F.map(p.B, "serial")
    QT = p.Q.T  # (7, B) view: CasADi is column-major
    state = {}

    def run():
        state["res"] = Fm(QT).full()

    return Runner(run, lambda idx: nz_to_dense(state["res"][:, idx].T, rows, cols, (NOUT, NQ)),
                  info={"nnz": len(rows)})


METHODS = common.symjac_methods(_symjac, _preload_symjac, "(B, 6, 7)") + [
    Method("symjac dense, non_ieee_rewrites (numba-parallel)",
           lambda p: _symjac(p, "numba-parallel", False, non_ieee=True), _preload_symjac,
           "traced in symjac.non_ieee_rewrites(): 0.0*x folds, as in SymEngine", key="symjac-dense-nonieee"),
    Method("symjac sparse, non_ieee_rewrites (numba-parallel)",
           lambda p: _symjac(p, "numba-parallel", True, non_ieee=True), _preload_symjac,
           "as above, (B, nnz) values", key="symjac-sparse-nonieee"),
] + common.peer_methods(sys.modules[__name__], "(B, 6, 7)",
                        "nnz entries, NumPy-vectorized, into a preallocated (nnz, B) buffer; input pre-transposed",
                        "nnz entries, cse=True, out= (B, nnz)")

REFS = [("symjac dense", "symjac dense (numba-parallel)"), ("symjac sparse", "symjac sparse (numba-parallel)")]

TARGETS = [
    ("faster", "symjac dense (numba-parallel)", "SymEngine Lambdify LLVM (1 thread)", 2.0),
    ("faster", "symjac sparse (numba-parallel)", "SymEngine Lambdify LLVM (1 thread)", 2.0),
    ("first", "symjac dense (numba-parallel)", 5.0),
    ("first", "symjac sparse (numba-parallel)", 5.0),
]


if __name__ == "__main__":
    common.main(sys.modules[__name__])
