"""backend="cuda" on a GPU: correctness against the CPU backend, speed against
JAX and PyTorch on the same GPU.  One call on a machine with an NVIDIA GPU:

    PYTHONPATH=. python -m benchmarks.gpu              # pinn, arm, kinetics at the issue's sizes
    PYTHONPATH=. python -m benchmarks.gpu --quick      # small batches: a smoke run (minutes)
    PYTHONPATH=. python -m benchmarks.gpu --only pinn  # one problem
    NUMBA_ENABLE_CUDASIM=1 python -m benchmarks.gpu --batch 64 --repeat 1   # the script itself, no GPU

Problems (the reference problems of benchmarks/pinn.py, arm.py, kinetics.py):
- pinn: u, grad u and the forward Laplacian of a 3-32-32-32-1 tanh MLP per point,
  float32 and float64, B = 10^6;
- arm: the 6 x 7 pose Jacobian of a 7-joint arm, float32 and float64, B = 10^6 and 10^7;
- kinetics: the 30 x 30 Jacobian of a mass-action RHS (259 structural nonzeros), dense
  and sparse, float64, B = 10^6 (JAX in chunks when one batch does not fit).

symjac runs on device arrays with preallocated device outputs (`out=`); a second
row times host arrays in and out, copies included.  JAX: `jit(vmap(...))` on device
arrays, float32 at its default matmul precision (TF32 on recent GPUs) and at
"highest"; PyTorch: `torch.func` on CUDA tensors.  Every method's first 4,096
samples are compared with symjac's CPU kernel in float64 (max error over max |value|).
Times are medians of ``--repeat`` calls after a warm-up, each ended by a device
synchronisation.  Prints a table and writes ``gpu.json`` into $OUT (or the
current directory).  Without a GPU (Numba's simulator) only ``--quick`` makes sense
and the peers run on whatever device they find: for checking this script, not for figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

CHECK = 4096  # samples compared with the CPU reference


def _sync():
    from numba import cuda

    cuda.synchronize()


def timed(run, repeat, sync):
    run()  # warm-up (compiles)
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(1e-300, np.max(np.abs(want))))


# -- problems: (name, dtype, B) -> symjac callable and arguments; peers --------------------------

def pinn_case(B, dtype):
    from benchmarks import pinn

    p = pinn.make_problem(B)
    X = p.X.astype(dtype)
    W = [w.astype(dtype) for w in p.W]
    return dict(f=pinn._per_point("forward"), in_axes=pinn.IN_AXES, args=[X, *W], kind="compile",
                pack=lambda res: pinn._pack(*[np.asarray(r) for r in res]), jax=_jax_pinn, torch=_torch_pinn)


def arm_case(B, dtype):
    from benchmarks import arm

    p = arm.make_problem(B)
    return dict(f=p.fk, in_axes=0, args=[p.Q.astype(dtype)], kind="jacobian",
                pack=lambda J: np.asarray(J).reshape(len(J), -1), jax=_jax_arm, torch=_torch_arm)


def kinetics_case(B, dtype, sparse=False):
    from benchmarks import kinetics

    p = kinetics.make_problem(B)
    return dict(f=p.rhs, in_axes=0, args=[p.X.astype(dtype), p.K.astype(dtype)], kind="jacobian", net=p.net,
                sparse=sparse, pack=lambda J: np.asarray(J).reshape(len(J), -1), jax=_jax_kinetics,
                torch=_torch_kinetics)


def _jax_pinn(case, precision):
    import jax
    import jax.numpy as jnp

    from benchmarks import pinn

    def u(x, W1, b1, W2, b2, W3, b3, w4):
        h = jnp.tanh(W1 @ x + b1)
        h = jnp.tanh(W2 @ h + b2)
        h = jnp.tanh(W3 @ h + b3)
        return w4 @ h

    def f(x, *w):
        val, g = jax.value_and_grad(u)(x, *w)
        eye = jnp.eye(pinn.N_IN, dtype=x.dtype)

        def d2(e):
            return jax.jvp(lambda y: jax.jvp(lambda z: u(z, *w), (y,), (e,))[1], (x,), (e,))[1]

        return val, g, sum(d2(eye[i]) for i in range(pinn.N_IN))

    with jax.default_matmul_precision(precision):
        fn = jax.jit(jax.vmap(f, in_axes=pinn.IN_AXES))
    args = [jax.device_put(a) for a in case["args"]]

    def run():
        with jax.default_matmul_precision(precision):
            case["jax_res"] = jax.block_until_ready(fn(*args))

    return run, lambda: case["pack"](case["jax_res"])


def _jax_arm(case, precision):
    import jax
    import jax.numpy as jnp

    from benchmarks import arm

    fn = jax.jit(jax.vmap(jax.jacfwd(arm.make_fk(jnp))))
    Q = jax.device_put(case["args"][0])

    def run():
        case["jax_res"] = fn(Q).block_until_ready()

    return run, lambda: case["pack"](case["jax_res"])


def _jax_kinetics(case, precision):
    import jax
    import jax.numpy as jnp

    net = case["net"]
    dt = case["args"][0].dtype
    S, ia, ib = jnp.asarray(net.S.astype(dt)), jnp.asarray(net.ia), jnp.asarray(net.ib)

    def rhs(x, k):
        xp = jnp.concatenate([x, jnp.ones(1, x.dtype)])
        return S @ (k * xp[ia] * xp[ib])

    fn = jax.jit(jax.vmap(jax.jacfwd(rhs, argnums=0)))
    X, K = (jax.device_put(a) for a in case["args"])
    B = X.shape[0]
    chunk = [B]

    def run():
        while True:
            try:
                res = None
                for lo in range(0, B, chunk[0]):
                    res = fn(X[lo: lo + chunk[0]], K[lo: lo + chunk[0]]).block_until_ready()
                case["jax_res"] = res if chunk[0] == B else None
                case["jax_first"] = res if chunk[0] == B else fn(X[:CHECK], K[:CHECK])
                return
            except Exception as e:  # noqa: BLE001  (out of device memory: smaller chunks)
                if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower() or chunk[0] < 1000:
                    raise
                chunk[0] //= 2
                case["jax_chunk"] = chunk[0]

    return run, lambda: case["pack"](case["jax_first"])


def _torch_pinn(case):
    import torch
    from torch.func import grad_and_value, hessian, vmap

    from benchmarks import pinn

    def u(x, W1, b1, W2, b2, W3, b3, w4):
        h = torch.tanh(W1 @ x + b1)
        h = torch.tanh(W2 @ h + b2)
        h = torch.tanh(W3 @ h + b3)
        return w4 @ h

    def f(x, *w):
        g, val = grad_and_value(u)(x, *w)
        return val, g, torch.trace(hessian(u)(x, *w))

    fn = vmap(f, in_dims=pinn.IN_AXES)
    args = [torch.from_numpy(a).cuda() for a in case["args"]]

    def run():
        with torch.no_grad():
            case["torch_res"] = fn(*args)

    return run, lambda: case["pack"]([r.cpu().numpy() for r in case["torch_res"]])


def _torch_arm(case):
    import torch
    from torch.func import jacfwd, vmap

    from benchmarks import arm

    def fk(q):
        T = None
        for i in range(arm.NQ):
            c, s = torch.cos(q[i]), torch.sin(q[i])
            z = torch.zeros_like(c)
            A = torch.stack([torch.stack([c, -s * arm.CA[i], s * arm.SA[i], arm.A_[i] * c]),
                             torch.stack([s, c * arm.CA[i], -c * arm.SA[i], arm.A_[i] * s]),
                             torch.stack([z, z + arm.SA[i], z + arm.CA[i], z + arm.D_[i]]),
                             torch.stack([z, z, z, z + 1.0])])
            T = A if T is None else T @ A
        R = T[:3, :3]
        yaw = torch.atan2(R[1, 0], R[0, 0])
        pitch = torch.atan2(-R[2, 0], torch.sqrt(R[2, 1] ** 2 + R[2, 2] ** 2))
        roll = torch.atan2(R[2, 1], R[2, 2])
        return torch.stack([T[0, 3], T[1, 3], T[2, 3], yaw, pitch, roll])

    fn = vmap(jacfwd(fk))
    Q = torch.from_numpy(case["args"][0]).cuda()

    def run():
        with torch.no_grad():
            case["torch_res"] = fn(Q)

    return run, lambda: case["pack"](case["torch_res"].cpu().numpy())


def _torch_kinetics(case):
    import torch
    from torch.func import jacfwd, vmap

    net = case["net"]
    dt = case["args"][0].dtype
    S = torch.from_numpy(net.S.astype(dt)).cuda()
    ia, ib = torch.from_numpy(net.ia).cuda(), torch.from_numpy(net.ib).cuda()
    one = torch.ones(1, dtype=S.dtype, device="cuda")

    def rhs(x, k):
        xp = torch.cat([x, one])
        return S @ (k * xp[ia] * xp[ib])

    fn = vmap(jacfwd(rhs, argnums=0))
    X, K = (torch.from_numpy(a).cuda() for a in case["args"])

    def run():
        with torch.no_grad():
            case["torch_res"] = fn(X, K)

    return run, lambda: case["pack"](case["torch_res"][:CHECK].cpu().numpy())


# -- symjac ---------------------------------------------------------------------------------------

def symjac_kernel(case, backend):
    import symjac

    if case["kind"] == "compile":
        return symjac.compile(case["f"], in_axes=case["in_axes"], backend=backend)
    return symjac.jacobian(case["f"], in_axes=case["in_axes"], backend=backend, sparse=case.get("sparse", False))


def dense_of(case, res):
    if case.get("sparse"):
        return res.todense().reshape(res.values.shape[0], -1)
    return case["pack"](res)


def _leaves(res):
    if hasattr(res, "values") and hasattr(res, "rows"):  # a SparseJacobian
        return [res.values]
    return list(res) if isinstance(res, tuple) else [res]


def check_device_rows(case, cpu, res, B):
    """The timed device output against the CPU kernel on 64 samples spread over the
    whole batch (the last ones included: the grid-stride loop's later passes)."""
    idx = np.unique(np.linspace(0, B - 1, 64).astype(np.int64))
    batched = [i == 0 or case["in_axes"] == 0 for i in range(len(case["args"]))]
    ref = cpu(*[a[idx].astype(np.float64) if b else a.astype(np.float64) for a, b in zip(case["args"], batched)])
    err = 0.0
    for leaf, want in zip(_leaves(res), _leaves(ref)):
        rows = [leaf[int(i)] for i in idx]  # a 1-D device array's entry comes back as a number
        got = np.stack([np.asarray(r.copy_to_host() if hasattr(r, "copy_to_host") else r) for r in rows])
        err = max(err, rel_err(got.reshape(len(idx), -1), np.asarray(want).reshape(len(idx), -1)))
    return err


def run_case(name, case, repeat, peers, rows):
    from numba import cuda

    B = case["args"][0].shape[0]
    dtype = case["args"][0].dtype.name
    label = f"{name} {dtype} B={B:.0e}".replace("e+0", "e")
    small = [a[:CHECK] if i == 0 or case["in_axes"] == 0 else a for i, a in enumerate(case["args"])]
    ref_args = [a.astype(np.float64) for a in small]
    cpu = symjac_kernel(case, "numba-parallel")
    want = dense_of(case, cpu(*ref_args))

    k = symjac_kernel(case, "cuda")
    t0 = time.perf_counter()
    k(*small)  # first call: trace, print, CUDA compile
    first = time.perf_counter() - t0
    dev_args = [cuda.to_device(a) for a in case["args"]]
    out = [None]

    def run_dev():
        if out[0] is None:
            out[0] = k(*dev_args)
        else:  # a sparse Jacobian's buffer is its (B, nnz) values
            k(*dev_args, out=out[0].values if case.get("sparse") else out[0])

    t_dev = timed(run_dev, repeat, _sync)
    got = k(*small)
    err = max(rel_err(dense_of(case, got), want), check_device_rows(case, cpu, out[0], B))
    rows.append(dict(problem=label, method="symjac cuda (device arrays, out=)", seconds=t_dev, rel_err=err,
                     first_call_s=first))
    t_host = timed(lambda: k(*case["args"]), max(1, repeat // 3), _sync)
    rows.append(dict(problem=label, method="symjac cuda (host arrays in/out, copies timed)", seconds=t_host,
                     rel_err=err))
    out.clear(), dev_args.clear()  # device memory back before the peers run
    if "jax" in peers and case.get("jax"):
        precisions = ["default", "highest"] if dtype == "float32" and name.startswith("pinn") else ["highest"]
        for prec in precisions:
            try:
                run, dense = case["jax"](case, prec)
                t = timed(run, repeat, lambda: None)
                e = rel_err(dense()[:CHECK], want)
                note = f"jit(vmap), matmul precision {prec}" + (f", chunks of {case['jax_chunk']}"
                                                                  if "jax_chunk" in case else "")
                rows.append(dict(problem=label, method=f"JAX ({note})", seconds=t, rel_err=e))
            except Exception as ex:  # noqa: BLE001
                rows.append(dict(problem=label, method=f"JAX ({prec})", error=f"{type(ex).__name__}: {ex}"[:300]))
            case.pop("jax_res", None), case.pop("jax_first", None)
    if "torch" in peers and case.get("torch") and not case.get("sparse"):
        try:
            import torch

            run, dense = case["torch"](case)
            t = timed(run, max(1, repeat // 3), torch.cuda.synchronize)
            e = rel_err(dense()[:CHECK], want)
            rows.append(dict(problem=label, method="PyTorch torch.func (vmap)", seconds=t, rel_err=e))
        except Exception as ex:  # noqa: BLE001
            rows.append(dict(problem=label, method="PyTorch torch.func", error=f"{type(ex).__name__}: {ex}"[:300]))
        case.pop("torch_res", None)


def device_info():
    from numba import cuda

    info = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("numpy", "numba", "jax", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    if getattr(cuda, "get_current_device", None) is None:
        info["gpu"] = "none: Numba's CUDA simulator (figures mean nothing)"
    elif cuda.is_available():
        dev = cuda.get_current_device()
        info["gpu"] = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        info["compute_capability"] = dev.compute_capability
        info["multiprocessors"] = dev.MULTIPROCESSOR_COUNT
    try:
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:  # noqa: BLE001
        pass
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small batches (a smoke run)")
    ap.add_argument("--only", default="pinn,arm,kinetics", help="comma-separated problems")
    ap.add_argument("--peers", default="jax,torch", help="comma-separated peers to time (jax, torch)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--batch", type=int, default=None, help="one batch size for every problem (overrides)")
    args = ap.parse_args(argv)
    from codegen.cuda import cuda_module

    cuda_module()  # numba.cuda with symjac's shim for numba 0.68.0 + NumPy 2.5, before anything imports it
    try:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 where asked; float32 arrays stay float32
    except ImportError:
        pass
    only, peers = set(args.only.split(",")), set(args.peers.split(","))
    big = args.batch or (10_000 if args.quick else 1_000_000)
    plan = []
    if "pinn" in only:
        plan += [("pinn", lambda: pinn_case(big, np.float32)), ("pinn", lambda: pinn_case(big, np.float64))]
    if "arm" in only:
        for B in ([big] if args.quick or args.batch else [1_000_000, 10_000_000]):
            plan += [("arm", lambda B=B: arm_case(B, np.float32)), ("arm", lambda B=B: arm_case(B, np.float64))]
    if "kinetics" in only:
        plan += [("kinetics dense", lambda: kinetics_case(big, np.float64)),
                 ("kinetics sparse", lambda: kinetics_case(big, np.float64, sparse=True))]
    info = device_info()
    print("# benchmarks.gpu:", " ".join(sys.argv[1:]) or "(full sizes)")
    for key, val in info.items():
        print(f"- {key}: {val}")
    rows = []
    for name, make in plan:
        try:
            run_case(name, make(), args.repeat, peers, rows)
        except Exception as ex:  # noqa: BLE001  (one problem's failure must not lose the others' figures)
            traceback.print_exc()
            rows.append(dict(problem=name, method="symjac cuda", error=f"{type(ex).__name__}: {ex}"[:300]))
        print_rows([r for r in rows if r["problem"].startswith(name)])
    out_dir = os.environ.get("OUT") or "."
    with open(os.path.join(out_dir, "gpu.json"), "w") as fh:
        json.dump({"argv": sys.argv[1:], "info": info, "rows": rows}, fh, indent=1, default=str)
    return 0


def print_rows(rows):
    base = {}
    for r in rows:
        if r["method"].startswith("symjac cuda (device"):
            base[r["problem"]] = r["seconds"]
    print()
    print(f"{'problem':26s} {'method':58s} {'median':>10s} {'x symjac':>9s} {'rel err':>9s}")
    for r in rows:
        if "error" in r:
            print(f"{r['problem']:26s} {r['method']:58s} failed: {r['error']}")
            continue
        ratio = r["seconds"] / base[r["problem"]] if r["problem"] in base else float("nan")
        print(f"{r['problem']:26s} {r['method']:58s} {r['seconds'] * 1e3:8.2f}ms {ratio:8.2f}x {r['rel_err']:9.1e}"
              + (f"  (first call {r['first_call_s']:.2f} s)" if "first_call_s" in r else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
