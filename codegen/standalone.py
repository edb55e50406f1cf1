"""The run-time half of an exported kernel module: argument checks, output
buffers, the batch loop, threads.

`symjac.export` copies this file's text (below the marker line) into every
module it writes, after the printed kernel, so it must stay standalone: it
imports only the standard library and NumPy, never symjac or codegen.  The
module that holds it defines ``SPEC`` (arguments, outputs, dtype, backend),
``HIDDEN`` (the model's constant tensors), ``kernel`` and, for tiled Numba
kernels, ``WORKSPACE``; its ``evaluate`` calls `run`.
"""

# -- standalone: everything below this line is copied into exported modules --
import math
import os
import threading

import numpy as np


def check_arguments(spec, args):
    """(arrays with the batch axis first, batch size), or an error naming the argument."""
    names = [a[0] for a in spec["args"]]
    if len(args) != len(names):
        raise TypeError(f"evaluate takes {len(names)} argument(s) ({', '.join(names)}), got {len(args)}")
    arrays, batch, first = [], None, None
    for (name, shape, axis), a in zip(spec["args"], args):
        if isinstance(a, (tuple, list, dict)):
            raise TypeError(f"argument {name!r} is a {type(a).__name__}; pass one array")
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"argument {name!r} must be a real numeric array, got dtype {arr.dtype}")
        if axis is None:
            if arr.shape != tuple(shape):
                raise ValueError(f"argument {name!r} is shared and must have shape {tuple(shape)}, got {arr.shape}")
        else:
            if arr.ndim != len(shape) + 1:
                raise ValueError(f"argument {name!r} must have {len(shape) + 1} dimensions (a batch axis at "
                                 f"{axis} and per-sample shape {tuple(shape)}), got shape {arr.shape}")
            arr = np.moveaxis(arr, axis, 0) if axis else arr
            if arr.shape[1:] != tuple(shape):
                raise ValueError(f"argument {name!r} has per-sample shape {arr.shape[1:]}, but this kernel was "
                                 f"made for {tuple(shape)}")
            if batch is None:
                batch, first = arr.shape[0], name
            elif arr.shape[0] != batch:
                raise ValueError(f"argument {name!r} has batch size {arr.shape[0]} but {first!r} has {batch}")
        arrays.append(arr)
    return arrays, batch


def check_slice(start, stop, batch):
    stop = batch if stop is None else stop
    for name, v in (("start", start), ("stop", stop)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if not 0 <= start <= stop <= batch:
        raise ValueError(f"need 0 <= start <= stop <= batch size {batch}, got start={start}, stop={stop}")
    return int(start), int(stop)


def output_buffers(spec, out, batch):
    dtype = np.dtype(spec["dtype"])
    shapes = [tuple(s) if reduced else (batch,) + tuple(s) for s, reduced in spec["outs"]]
    if out is None:
        return [np.zeros(s, dtype) for s in shapes]
    bufs = list(out) if isinstance(out, (tuple, list)) else [out]
    if len(bufs) != len(shapes):
        raise ValueError(f"out= must hold {len(shapes)} array(s), one per output, got {len(bufs)}")
    for k, (b, s) in enumerate(zip(bufs, shapes)):
        if not isinstance(b, np.ndarray) or b.shape != s or b.dtype != dtype:
            got = f"{b.shape} {b.dtype}" if isinstance(b, np.ndarray) else type(b).__name__
            raise ValueError(f"out[{k}] must be a NumPy array of shape {s} and dtype {dtype}, got {got}")
        if not b.flags.c_contiguous or not b.flags.writeable:
            raise ValueError(f"out[{k}] must be C-contiguous and writeable")
        for j in range(k):
            if np.may_share_memory(b, bufs[j]):
                raise ValueError(f"out[{j}] and out[{k}] share memory; give each output a buffer of its own")
    return bufs


def flatten(tree):
    """(leaves, treedef) of nested tuples, lists and dicts, as symjac encodes them."""
    leaves = []

    def flat(r):
        if isinstance(r, tuple):
            return tuple(flat(e) for e in r)
        if isinstance(r, list):
            return ("L", tuple(flat(e) for e in r))
        if isinstance(r, dict):
            keys = tuple(r)
            return ("D", keys, tuple(flat(r[k]) for k in keys))
        leaves.append(r)
        return "*"

    return leaves, flat(tree)


def unflatten(treedef, leaves):
    it = iter(leaves)

    def build(d):
        if d == "*":
            return next(it)
        if d and d[0] == "L":
            return [build(e) for e in d[1]]
        if d and d[0] == "D":
            return {k: build(e) for k, e in zip(d[1], d[2])}
        return tuple(build(e) for e in d)

    return build(treedef)


def run(kernel, spec, hidden, args, out=None, start=0, stop=None, extra=(), workspace=None, min_chunk=2048):
    """Check ``args``, run ``kernel`` on samples [start, stop), return the outputs
    (``extra``: trailing kernel inputs the caller computes, such as 1 / B)."""
    arrays, batch = check_arguments(spec, args)
    start, stop = check_slice(start, stop, batch)
    outs = output_buffers(spec, out, batch)
    dtype = np.dtype(spec["dtype"])
    ins = []
    for arr, (_, _, axis) in zip(arrays, spec["args"]):
        c = np.ascontiguousarray(arr, dtype=dtype)
        if out is not None and any(np.may_share_memory(c, o) for o in outs):
            c = c.copy()  # out= overlaps this input: read it before anything is written
        ins.append(c.reshape(batch, math.prod(c.shape[1:])) if axis is not None else c.reshape(-1))
    ins += [np.asarray(e, dtype).reshape(-1) for e in extra] + list(hidden)
    flat = []
    for (_, reduced), o in zip(spec["outs"], outs):
        if reduced:
            o[...] = 0  # a batch sum over [start, stop) starts from zero
            flat.append(o.reshape(-1))
        else:
            flat.append(o.reshape(batch, math.prod(o.shape[1:])))
    if stop > start:
        _call(kernel, spec, start, stop, ins, flat, workspace, min_chunk)
    return outs


def _call(kernel, spec, start, stop, ins, flat, workspace, min_chunk):
    def one(lo, hi, outs):
        ws = ()
        if workspace is not None:
            ws = (np.empty(workspace[0], np.dtype(spec["dtype"])), np.empty(workspace[1], np.bool_))
        kernel(lo, hi, *ins, *outs, *ws)

    n = stop - start
    threads = 1
    if spec["backend"] == "numba-parallel":
        env = os.environ.get("SYMJAC_NUM_THREADS", "")
        if env and (not env.isdigit() or int(env) < 1):
            raise ValueError(f"SYMJAC_NUM_THREADS must be a positive integer, got {env!r}")
        cpus = int(env) if env else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                     else os.cpu_count() or 1)
        threads = max(1, min(cpus, n // min_chunk))  # below min_chunk samples a thread costs more than it saves
    if threads == 1:
        return one(start, stop, flat)
    bounds = [start + (n * i) // threads for i in range(threads + 1)]
    reduced = [k for k, (_, r) in enumerate(spec["outs"]) if r]
    private = [list(flat)] + [[np.zeros_like(o) if k in reduced else o for k, o in enumerate(flat)]
                              for _ in range(1, threads)]  # each thread sums into accumulators of its own
    errors = []

    def work(t):
        try:
            one(bounds[t], bounds[t + 1], private[t])
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller)
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(1, threads)]
    for w in workers:
        w.start()
    work(0)
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    for t in range(1, threads):
        for k in reduced:
            flat[k] += private[t][k]
