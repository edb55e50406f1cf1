"""Export a compiled kernel as one standalone Python module.

The module holds, in order: a docstring (the model, its arguments, outputs,
sparsity and the options that made it), the kernel printed for the chosen
backend and dtype (the same text the cache holds), the model's constant
tensors (zlib-compressed bytes in base64), ``SPEC``, the run-time code of
`codegen.standalone`, and ``evaluate(*args, out=None, start=0, stop=None)``
with the in-process call's meaning and checks.  It imports NumPy (and Numba
for the Numba backends), never symjac.  The same model and options give the
same bytes.  User-controlled text (the function's and arguments' names)
enters only through ``repr`` or an escaped docstring.
"""

from __future__ import annotations

import base64
import inspect
import os
import zlib
from pathlib import Path

import numpy as np

from codegen import standalone
from codegen.backends import print_program, write_atomically
from symjac.frontend.graph import Graph
from symjac.lower import lower
from symjac.version import __version__

__all__ = ["export_kernel", "plain_tree"]

EXPORT_BACKENDS = ("numba", "numba-parallel", "numpy", "cuda")
_MARKER = "# -- standalone: everything below this line is copied into exported modules --\n"


def _runtime_text():
    text = Path(standalone.__file__).read_text(encoding="utf-8")
    return text.split(_MARKER, 1)[1]


def _safe(text):
    """``text`` fit to sit inside a triple-quoted docstring: backslashes and quotes
    escaped, control and non-ASCII characters as escapes (newlines kept)."""
    text = str(text).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    text = "".join(c if c == "\n" or c.isprintable() else repr(c)[1:-1] for c in text)
    return text.encode("ascii", "backslashreplace").decode()


def _const(a):
    a = np.ascontiguousarray(a)
    data = base64.b64encode(zlib.compress(a.tobytes(), 9)).decode("ascii")
    lines = [data[i:i + 96] for i in range(0, len(data), 96)] or [""]
    body = "\n".join(f"    {line!r}" for line in lines)
    return f"_const((\n{body}\n), {a.dtype.str!r}, {tuple(a.shape)!r})"


_CONST_HELPER = '''
def _const(data, dtype, shape):
    """A constant array stored in this file (zlib, base64)."""
    import base64
    import zlib

    return np.frombuffer(zlib.decompress(base64.b64decode("".join(data))), dtype).reshape(shape).copy()
'''


def plain_tree(treedef):
    """dlfeval's output structure with plain tuples and lists (a namedtuple becomes a tuple)."""
    if treedef is None:
        return "*"
    kind, parts = treedef
    if isinstance(kind, tuple):  # (dict, keys)
        return ("dict", list(kind[1]), [plain_tree(p) for p in parts])
    return ("list" if kind is list else "tuple", [plain_tree(p) for p in parts])


def argument_names(fn, count):
    """The names of ``fn``'s first ``count`` positional parameters (``arg{i}`` where unknown)."""
    try:
        params = [p.name for p in inspect.signature(inspect.unwrap(fn)).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(count)]


def _check_target(path, backend, dtype, kernel_backend):
    backend = backend or kernel_backend
    if backend not in EXPORT_BACKENDS:
        raise ValueError(f"export: backend must be one of {', '.join(map(repr, EXPORT_BACKENDS))}, got "
                         f"{backend!r}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"export: dtype must be 'float64' or 'float32', got {dtype!r}")
    path = Path(os.fspath(path))
    if path.suffix != ".py":
        raise ValueError(f"export: path must name a .py file (it is imported as a module), got {str(path)!r}")
    if not path.stem.isidentifier():
        raise ValueError(f"export: the file name {path.name!r} is not a valid module name")
    return path, backend


def export_kernel(kernel, path, *, backend=None, dtype="float64", title, in_axes=None, sparsity=None,
                  dlfeval=None, one_sample=False, options="", arg_trees=None):
    """Write ``kernel`` (a traced `symjac.Kernel`) as a standalone module at ``path``.

    ``title`` names the model; ``in_axes`` the batch axis of each argument (the
    kernel's own by default); ``sparsity`` (rows, cols, out_shape, in_shape)
    for a sparse Jacobian; ``dlfeval`` dlfeval's output plan.  Returns the path.
    """
    if kernel.graph is None:
        raise RuntimeError("export: the kernel is not traced yet; call it once (or pass example arguments "
                           "to the transform's export)")
    path, backend = _check_target(path, backend, dtype, kernel.backend)
    program = kernel.program
    n_user = len(kernel._shapes) - (1 if dlfeval is not None else 0)  # dlfeval's last input is 1 / B
    axes = list(in_axes if in_axes is not None else kernel._axes)[:n_user]
    names = argument_names(kernel.fn, n_user)
    args = [(names[i], tuple(kernel._shapes[i]), None if axes[i] is None else int(axes[i])) for i in range(n_user)]
    outs = [(tuple(o.shape), k in kernel.reduced) for k, o in enumerate(kernel.graph.outputs)]
    source = print_program(program, backend, dtype)
    hidden = [np.ascontiguousarray(h, dtype=dtype if np.asarray(h).dtype.kind == "f" else np.asarray(h).dtype)
              .reshape(-1) for h in program.hidden_inputs]
    spec = {"args": args, "outs": outs, "treedef": kernel.graph.treedef, "dtype": dtype, "backend": backend}
    if dlfeval is not None:
        spec["batch"] = int(dlfeval[3])  # the model may read its batch size: another one is refused
        spec["arg_trees"] = arg_trees  # (treedef, leaves) per argument when some are trees, else None
    doc = _docstring(title, args, outs, backend, dtype, __version__, sparsity, dlfeval, kernel, one_sample, options)
    parts = [f'"""{_safe(doc)}"""\n', source.rstrip("\n") + "\n", _CONST_HELPER,
             f"SPEC = {spec!r}", f"HIDDEN = [{', '.join(_const(h) for h in hidden)}]", ""]
    if sparsity is not None:
        rows, cols, out_shape, in_shape = sparsity
        parts += [f"ROWS = {_const(np.asarray(rows, np.int64))}", f"COLS = {_const(np.asarray(cols, np.int64))}",
                  f"OUT_SHAPE, IN_SHAPE = {tuple(out_shape)!r}, {tuple(in_shape)!r}", _TO_SCIPY]
    parts.append(_runtime_text())
    if backend == "cuda":  # the launcher: host arrays in and out, the batch sums' second kernel
        parts += [_cuda_runtime(), f"_KERNEL = Launcher(kernel, _sum_parts, REDUCE, {len(program.inputs)})",
                  "_WORKSPACE = None  # a CUDA kernel's buffers are its threads' local arrays", ""]
    else:
        parts += ["_KERNEL = kernel", "_WORKSPACE = globals().get(\"WORKSPACE\")  # a tiled kernel's buffers", ""]
    parts.append(_dlfeval_part(kernel, dlfeval, dtype) if dlfeval is not None else
                 _EVALUATE_ONE if one_sample else _EVALUATE)
    text = "\n".join(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text.encode("utf-8"))
    return path


_EVALUATE = '''

def evaluate(*args, out=None, start=0, stop=None):
    """The kernel on samples [start, stop) of the batch (see the module docstring):
    arguments in their natural shapes; ``out`` buffers are filled in place."""
    return unflatten(SPEC["treedef"], run(_KERNEL, SPEC, HIDDEN, args, out, start, stop,
                                          workspace=_WORKSPACE,
                                          min_chunk=globals().get("MIN_CHUNK", 2048)))
'''

_EVALUATE_ONE = '''

def evaluate(*args, out=None):
    """The kernel on one sample (see the module docstring): arguments and results
    in per-sample shapes; ``out`` buffers (per-sample shapes) are filled in place."""
    if out is not None:
        bufs = list(out) if isinstance(out, (tuple, list)) else [out]
        if not all(isinstance(b, np.ndarray) for b in bufs):
            raise TypeError("out= must hold NumPy arrays")
        run(_KERNEL, SPEC, HIDDEN, [np.asarray(a)[None] for a in args], [b[None] for b in bufs],
            workspace=_WORKSPACE, min_chunk=globals().get("MIN_CHUNK", 2048))
        return out
    res = run(_KERNEL, SPEC, HIDDEN, [np.asarray(a)[None] for a in args], workspace=_WORKSPACE,
              min_chunk=globals().get("MIN_CHUNK", 2048))
    return unflatten(SPEC["treedef"], [r[0] for r in res])
'''

_TO_SCIPY = '''

def to_scipy(values, sample=0):
    """One sample's Jacobian as a ``scipy.sparse.csr_array`` (SciPy imported only here);
    ``values`` is what ``evaluate`` returns: ``(B, nnz)`` (``sample`` picks one), or ``(nnz,)``."""
    from scipy.sparse import csr_array

    m, n = int(np.prod(OUT_SHAPE)), int(np.prod(IN_SHAPE))
    indptr = np.searchsorted(ROWS, np.arange(m + 1))
    values = np.asarray(values)
    return csr_array((values if values.ndim == 1 else values[sample], COLS, indptr), shape=(m, n))
'''


def _cuda_runtime():
    """The source of codegen.cuda's launcher and what it calls (standalone: numpy and numba.cuda)."""
    from codegen import cuda

    pieces = [cuda.cuda_module, cuda.as_device, cuda.Launcher, cuda._simulating, cuda._multiprocessors]
    return "\n_ROW_STACK_SHIM = False\n\n\n" + "\n\n".join(inspect.getsource(p) for p in pieces)


def _docstring(title, args, outs, backend, dtype, version, sparsity, dlfeval, kernel, one_sample, options):
    lines = [f"{title}: a kernel exported by symjac {version}." + (f" ({options})" if options else ""), "",
             "Standalone: needs NumPy" + (" and Numba." if backend.startswith("numba") else
                                          " and Numba's CUDA target (host arrays in and out)."
                                          if backend == "cuda" else "."),
             f"Backend {backend}, {dtype} (arguments are converted to {dtype}).", "", "Arguments, in order:"]
    for name, shape, axis in args:
        if one_sample:
            lines.append(f"  {name}: one sample, shape {shape}")
            continue
        where = "shared by every sample" if axis is None else f"batched along axis {axis}, one sample of shape {shape}"
        lines.append(f"  {name}: {where}" + (f", shape {shape}" if axis is None else ""))
    lines += ["", "evaluate(*args, out=None) returns (one sample):" if one_sample else
              "evaluate(*args) returns:" if dlfeval is not None else
              "evaluate(*args, out=None, start=0, stop=None) returns:"]
    if dlfeval is not None:
        lines.append("  what dlfeval returned (the same nesting), batch axes where dlfeval put them;")
        lines.append(f"  for batches of {int(dlfeval[3])} samples only, the batch size it was traced for")
    for k, (shape, reduced) in enumerate(outs):
        if dlfeval is None:
            lines.append(f"  output {k}: " + (f"a sum over the batch, shape {shape}" if reduced
                                               else f"shape {shape}" if one_sample else f"shape (B,) + {shape}"))
    if sparsity is not None:
        rows, cols, out_shape, in_shape = sparsity
        lines += ["", f"Sparse: the values (B, nnz) of the {len(rows)} structural nonzeros of each "
                      f"{int(np.prod(out_shape))} x {int(np.prod(in_shape))} Jacobian, in CSR order: row ROWS[j], "
                      "column COLS[j] (flattened output and input); to_scipy(values, sample) gives one as a "
                      "SciPy CSR array."]
    stats = kernel.stats
    lines += ["", f"{stats['statements']} statements; {stats['dag_ops']} operations after sharing; "
                  f"{stats['flops_per_sample']} flops per sample (estimated)."]
    return "\n".join(lines) + "\n"


def _dlfeval_part(kernel, plan_info, dtype):
    """``evaluate`` with dlfeval's semantics, and the shared (weights-only) values
    printed as a NumPy kernel of their own (run in a namespace of its own)."""
    plan, treedef, batch_axes, _ = plan_info
    shared_nodes = [shared for kind, _, _, shared in plan if shared is not None]
    graph = Graph(kernel.graph.inputs, shared_nodes, treedef=tuple("*" for _ in shared_nodes))
    shared_text = ""
    if shared_nodes:
        program = lower(graph, [False] * len(kernel.graph.inputs), "shared", ())
        shared_text = print_program(program, "numpy", dtype)
    plan_spec = [(kind, index, bpos, None if shared is None else tuple(shared.shape))
                 for kind, index, bpos, shared in plan]
    shared_hidden = ""
    if shared_nodes:
        shared_hidden = "_SHARED_HIDDEN = [" + ", ".join(
            _const(np.ascontiguousarray(h, dtype=dtype if np.asarray(h).dtype.kind == "f" else np.asarray(h).dtype)
                   .reshape(-1)) for h in program.hidden_inputs) + "]"
    return f'''
PLAN = {plan_spec!r}
TREEDEF = {treedef!r}
BATCH_AXES = {tuple(batch_axes)!r}
_SHARED_SOURCE = {shared_text!r}
{shared_hidden}


_SHARED = {{}}  # the shared values' kernel, compiled on first use (a namespace of its own)


def _shared_values(arrays, inv_batch):
    """Outputs (and parts of batch sums) that depend on shared arguments only."""
    if not _SHARED_SOURCE:
        return []
    namespace = _SHARED
    if not namespace:
        exec(compile(_SHARED_SOURCE, "<symjac shared values>", "exec"), namespace)
    dtype = np.dtype(SPEC["dtype"])
    ins = [np.ascontiguousarray(a, dtype).reshape(-1) if ax is None else np.zeros(int(np.prod(shape)), dtype)
           for a, (_, shape, ax) in zip(arrays, SPEC["args"])]  # batched ones are not read here
    ins.append(np.asarray([inv_batch], dtype))
    shapes = [s for _, _, _, s in PLAN if s is not None]
    outs = [np.zeros((1, int(np.prod(s))), dtype) for s in shapes]
    namespace["kernel"](0, 1, *ins, *_SHARED_HIDDEN, *outs)
    return [o.reshape(s) for o, s in zip(outs, shapes)]


def evaluate(*args):
    """What ``symjac.dlfeval(fn, *args)`` returned when this module was made, for
    new arguments of the same shapes (batch axes as given then: BATCH_AXES)."""
    if SPEC["arg_trees"] is not None:  # arguments that are trees: their leaves, in order
        if len(args) != len(SPEC["arg_trees"]):
            raise TypeError(f"evaluate takes {{len(SPEC['arg_trees'])}} arguments, got {{len(args)}}")
        leaves = []
        for i, (a, (d, n)) in enumerate(zip(args, SPEC["arg_trees"])):
            ls, got = flatten(a)
            if got != d:
                raise ValueError(f"argument {{i}} does not have the structure this module was made for")
            leaves += ls
        args = leaves
    if len(args) != len(BATCH_AXES):
        raise TypeError(f"evaluate takes {{len(BATCH_AXES)}} arguments, got {{len(args)}}")
    k = next(i for i, ax in enumerate(BATCH_AXES) if ax is not None)
    if np.ndim(args[k]) <= BATCH_AXES[k]:
        raise ValueError(f"argument {{SPEC['args'][k][0]!r}} has no axis {{BATCH_AXES[k]}} (its batch axis); "
                         f"shape {{np.shape(args[k])}}")
    B = np.shape(args[k])[BATCH_AXES[k]]
    if B != SPEC["batch"]:
        raise ValueError(f"this module was made by dlfeval for batches of {{SPEC['batch']}} samples, got {{B}}; "
                         "the model may read its batch size (a mean, X.shape): export it again for this size")
    dtype = np.dtype(SPEC["dtype"])
    inv = 1.0 / B if B else np.inf
    results = run(_KERNEL, SPEC, HIDDEN, args, extra=[inv], workspace=_WORKSPACE,
                  min_chunk=globals().get("MIN_CHUNK", 2048)) if SPEC["outs"] else []
    shared = iter(_shared_values(args, inv))
    outs = []
    for kind, index, bpos, shape in PLAN:
        if kind == "batched":
            outs.append(np.moveaxis(results[index], 0, bpos))
            continue
        value = np.zeros(shape if shape is not None else results[index].shape, dtype)
        if index is not None:
            value = value + results[index]
        if shape is not None:
            value = value + next(shared)
        outs.append(np.asarray(value, dtype))
    return _rebuild(TREEDEF, outs)


def _rebuild(treedef, leaves):
    it = iter(leaves)

    def build(d):
        if d == "*":
            return next(it)
        if d[0] == "dict":
            return dict(zip(d[1], (build(e) for e in d[2])))
        kind, items = d
        return (list if kind == "list" else tuple)(build(e) for e in items)

    return build(treedef)
'''
