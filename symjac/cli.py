"""The command line: ``symjac compile``, ``symjac cache``, ``symjac demo``
(also ``python -m symjac ...``); ``symjac --help`` and ``symjac COMMAND
--help`` say how.

``compile`` traces a function from a file or module, differentiates it as
asked and exports a standalone kernel module (`symjac.Kernel.export`);
``cache`` shows or clears the kernel cache; ``demo`` compiles the Jacobian
of a built-in mass-action kinetics model, checks it against the complex
step, times it against NumPy finite differences, and prints the first lines
of the generated kernel.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import symjac

__all__ = ["main", "demo_model"]

N_SPECIES, N_REACTIONS = 12, 20


def _network(seed=7):
    rng = np.random.default_rng(seed)
    reactants = [rng.choice(N_SPECIES, size=rng.integers(1, 3), replace=False) for _ in range(N_REACTIONS)]
    S = np.zeros((N_SPECIES, N_REACTIONS))
    for r, react in enumerate(reactants):
        S[react, r] -= 1.0
        S[rng.choice(N_SPECIES, size=rng.integers(1, 3), replace=False), r] += 1.0
    A = np.zeros((N_REACTIONS, 2), dtype=int)
    for r, react in enumerate(reactants):
        A[r, : len(react)] = react
        A[r, len(react):] = -1  # -1: no second reactant
    return S, A


S_MATRIX, REACTANTS = _network()


def demo_model(x, k):
    """Mass-action rates with temperature-dependent constants; works per
    sample (x: (12,), k: (20,)) and vectorized over leading batch axes."""
    temperature = x[..., -1:]
    first = x[..., REACTANTS[:, 0]]
    second = np.where(REACTANTS[:, 1] >= 0, x[..., np.maximum(REACTANTS[:, 1], 0)], 1.0)
    rates = k * np.exp(-1.5 / (0.5 + temperature * temperature)) * first * second
    return rates @ S_MATRIX.T


def _median_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def demo(batch=200_000, backend="auto"):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, size=(batch, N_SPECIES))
    k = rng.uniform(0.5, 2.0, size=N_REACTIONS)
    print(f"symjac {symjac.__version__} demo: Jacobian of a mass-action kinetics model "
          f"({N_SPECIES} species, {N_REACTIONS} reactions), batch of {batch:,} samples\n")

    t0 = time.perf_counter()
    jac = symjac.jacobian(demo_model, in_axes=(0, None), backend=backend)
    J = jac(x, k)
    first = time.perf_counter() - t0
    kernel = jac.kernel_for(x, k)
    s = kernel.stats
    print(f"backend                        {kernel.backend}")
    print(f"first call (trace+diff+codegen+first run)  {first:.2f} s")
    print(f"operations as expression trees {s['tree_ops']:>8,}   (no sharing)")
    print(f"operations after CSE/simplify  {s['dag_ops']:>8,}")
    print(f"estimated flops per sample     {s['flops_per_sample']:>8,}")
    print(f"Jacobian entries               {s['output_entries']:>8,}   ({s['structural_zeros']} structural zeros)")

    symjac.wait_compiled()  # a first call runs NumPy while Numba compiles in a child process
    jac(x, k, out=np.empty_like(J))  # the first call on Numba's machine code (loaded from the cache)
    print(f"Numba kernel running after       {time.perf_counter() - t0:.2f} s")

    err = 0.0
    for b in range(8):
        for j in range(N_SPECIES):
            xc = x[b].astype(complex)
            xc[j] += 1e-30j
            ref = demo_model(xc, k).imag / 1e-30
            err = max(err, float(np.max(np.abs(J[b, :, j] - ref) / np.maximum(1.0, np.abs(ref)))))
    print(f"max error vs complex step      {err:.1e}   (8 samples, all columns)")

    out = np.empty_like(J)
    t_sym = _median_time(lambda: jac(x, k, out=out))

    def finite_differences():
        h = 1e-6
        cols = []
        for j in range(N_SPECIES):
            e = np.zeros(N_SPECIES)
            e[j] = h
            cols.append((demo_model(x + e, k) - demo_model(x - e, k)) / (2 * h))
        return np.stack(cols, axis=-1)

    t_fd = _median_time(finite_differences, repeats=3)
    fd = finite_differences()
    print(f"symjac Jacobian                {1e3 * t_sym:8.1f} ms  ({batch / t_sym / 1e6:.1f} M samples/s)")
    print(f"NumPy central differences      {1e3 * t_fd:8.1f} ms  (max deviation {np.max(np.abs(fd - J)):.1e})")
    print(f"speed-up                       {t_fd / t_sym:8.1f}x\n")
    print("generated kernel (first lines):")
    lines = kernel.source.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("def ") or ln.startswith("@"))
    for ln in lines[start: start + 14]:
        print("   ", ln)
    print(f"    ... ({len(lines)} lines, {kernel.path})")
    return 0


EXIT_OK, EXIT_MODEL, EXIT_USAGE, EXIT_LOAD = 0, 1, 2, 3

DESCRIPTION = """symjac: compile Jacobians of NumPy models into kernels you can keep.

commands:
  compile   trace a function, differentiate it, export a standalone kernel module
  cache     show or clear the kernel cache
  demo      compile and time a built-in model's Jacobian
"""

EPILOG = """exit codes:
  0  done
  1  the model could not be traced or differentiated (the message says why)
  2  bad command line (a missing or malformed option)
  3  the file, module or function could not be loaded, or the cache directory used
"""

COMPILE_HELP = """Trace FUNCTION from a Python file or module, differentiate it as asked, and
write one standalone module (NumPy, and Numba for the Numba backends) whose
evaluate(*args) runs it over a batch.

  symjac compile model.py:rhs --arg y=3 --arg k=5:shared --jacobian y -o rhs_jac.py
  symjac compile mypkg.models:u --arg x=2 --laplacian x --backend numpy -o lap.py

--arg NAME=SHAPE gives each positional argument of FUNCTION, in order: SHAPE
is one sample's shape (3, 3x4, or scalar), batched along the first axis;
NAME=SHAPE:shared marks an argument every sample shares (weights,
parameters).  Without --jacobian/--gradient/--hessian/--laplacian the
function's own values are compiled.
"""


CACHE_HELP = """The kernel cache ($SYMJAC_CACHE_DIR, else ~/.cache/symjac).

  symjac cache info     where it is, how many kernels it holds, its size against SYMJAC_CACHE_MAX
  symjac cache clear    remove every kernel (running processes keep the kernels they loaded)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"symjac: error: {message} (see {self.prog} --help)\n")


def _shape(text, name):
    text = text.strip().lower()
    if text in ("", "scalar", "()"):
        return ()
    try:
        dims = tuple(int(d) for d in text.replace("*", "x").split("x"))
    except ValueError:
        raise _Usage(f"--arg {name}: shape {text!r} is not a shape (write 3, 3x4 or scalar)") from None
    if any(d < 0 for d in dims):
        raise _Usage(f"--arg {name}: shape {text!r} has a negative size")
    return dims


class _Usage(Exception):
    """A bad command line: one line, exit code 2."""


class _Load(Exception):
    """The model could not be loaded: one line, exit code 3."""


def _parse_args(specs, fn):
    """[(name, shape, shared)] from --arg NAME=SHAPE[:shared], in FUNCTION's parameter order."""
    import inspect

    parsed = {}
    for spec in specs:
        name, eq, rest = spec.partition("=")
        if not eq or not name.isidentifier():
            raise _Usage(f"--arg {spec!r}: write NAME=SHAPE or NAME=SHAPE:shared (for example y=3 or k=5:shared)")
        shape, _, flag = rest.partition(":")
        if flag not in ("", "shared"):
            raise _Usage(f"--arg {spec!r}: the only flag after the shape is ':shared', got ':{flag}'")
        if name in parsed:
            raise _Usage(f"--arg {name} is given twice")
        parsed[name] = (_shape(shape, name), flag == "shared")
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        params = list(parsed)
    missing = [p for p in params if p not in parsed]
    unknown = [n for n in parsed if n not in params]
    if missing or unknown:
        what = (f"missing --arg for {', '.join(missing)}" if missing else "") + \
            ("; " if missing and unknown else "") + (f"no parameter named {', '.join(unknown)}" if unknown else "")
        raise _Usage(f"{what} (the function takes {', '.join(params) or 'no positional arguments'})")
    if all(parsed[p][1] for p in params):
        raise _Usage("every --arg is :shared; at least one argument must be batched")
    return [(p, *parsed[p]) for p in params]


def _load_function(target):
    import importlib
    import importlib.util
    import os

    where, colon, name = target.rpartition(":")
    if not colon or not where or not name:
        raise _Usage(f"{target!r}: write FILE.py:FUNCTION or MODULE:FUNCTION")
    try:
        if where.endswith(".py") or os.sep in where:
            if not os.path.isfile(where):
                raise _Load(f"no file {where!r}")
            # the file's directory first on the path (modules beside it import), under a name of its own
            sys.path.insert(0, os.path.dirname(os.path.abspath(where)))
            spec = importlib.util.spec_from_file_location("_symjac_model_" + os.path.basename(where)[:-3], where)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())  # as `python -m` does: packages in the current directory
            module = importlib.import_module(where)
    except (_Load, _Usage):
        raise
    except Exception as e:  # noqa: BLE001  (the user's module failed to import: say how, in one line)
        raise _Load(f"importing {where!r} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise _Load(f"{where!r} has no function {name!r}")
    return fn


def compile_command(args):
    """``symjac compile``: returns the exit code."""
    import os

    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not args.output.endswith(".py") or not os.path.basename(args.output)[:-3].isidentifier():
        raise _Usage(f"-o {args.output!r}: write the module to a .py file with a valid module name")
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        raise _Usage(f"-o {args.output!r}: directory {out_dir!r} does not exist or is not writable")
    fn = _load_function(args.target)
    spec = _parse_args(args.arg or [], fn)
    names = [n for n, _, _ in spec]
    in_axes = tuple(None if shared else 0 for _, _, shared in spec)
    dtype = np.dtype(args.dtype)
    examples = [np.zeros(shape, dtype) if shared else np.zeros((1,) + shape, dtype) for _, shape, shared in spec]

    def argnum(name, option):
        if name not in names:
            raise _Usage(f"{option} {name}: no argument named {name!r} (arguments: {', '.join(names)})")
        return names.index(name)

    if args.sparse and not (args.jacobian or args.hessian):
        raise _Usage("--sparse needs --jacobian or --hessian")
    kw = {"in_axes": in_axes, "backend": args.backend}
    if args.jacobian:
        t = symjac.jacobian(fn, argnum(args.jacobian, "--jacobian"), sparse=args.sparse, **kw)
    elif args.gradient:
        t = symjac.gradient(fn, 0, **kw)
    elif args.hessian:
        t = symjac.jacobian(symjac.jacobian(fn, 0), 0, sparse=args.sparse, **kw) if args.sparse \
            else symjac.hessian(fn, 0, **kw)
    elif args.laplacian:
        t = symjac.laplacian(fn, argnum(args.laplacian, "--laplacian"), **kw)
    else:
        t = symjac.compile(fn, **kw)
    with _progress(not args.quiet):
        try:
            if isinstance(t, symjac.Kernel):  # traced and lowered only: the module compiles where it runs
                t.specialize([e.shape[1:] if not shared else e.shape for e, (_, _, shared) in zip(examples, spec)],
                             in_axes)
                path = t.export(args.output, dtype=args.dtype)
            else:
                path = t.export(args.output, *examples, dtype=args.dtype)
        except Exception as e:  # noqa: BLE001  (the model failed to trace: one line, the first of its message)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            print(f"symjac: {type(e).__name__}: {first}", file=sys.stderr)
            return EXIT_MODEL
    if not args.quiet:
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


class _progress:
    """Stage reports on stderr while a command runs (``on``), or none; the
    caller's progress setting is as it was after (`symjac.progress` writes to
    stderr when logging is not configured)."""

    def __init__(self, on):
        self.on = on

    def __enter__(self):
        from symjac import progress

        self.saved = progress._SETTING  # None: the environment decides
        symjac.set_progress(self.on)
        return self

    def __exit__(self, *exc):
        symjac.set_progress(self.saved)
        return False


def cache_command(args):
    from codegen import cache as kernel_cache
    from codegen.backends import cache_dir

    try:
        root = cache_dir()
    except OSError as e:  # refused (CacheDirectoryError) or cannot be made
        raise _Load(str(e).splitlines()[0]) from e
    if args.action == "clear":
        n = kernel_cache.clear(root)
        print(f"removed {n} kernel(s) from {root}")
        return EXIT_OK
    entries, files, size = kernel_cache.info(root)
    limit = kernel_cache.limit_bytes()
    print(f"location  {root}")
    print(f"entries   {entries} kernel(s), {files} file(s)")
    print(f"size      {size / 2**20:.1f} MB of " + (f"{limit / 2**20:.0f} MB" if limit else "no limit")
          + " (SYMJAC_CACHE_MAX)")
    return EXIT_OK


def main(argv=None):
    parser = _Parser(prog="symjac", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"symjac {symjac.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    c = sub.add_parser("compile", help="trace, differentiate and export a kernel module", description=COMPILE_HELP,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("target", metavar="FILE_OR_MODULE:FUNCTION")
    c.add_argument("--arg", action="append", metavar="NAME=SHAPE[:shared]", help="one per argument, in order")
    what = c.add_mutually_exclusive_group()
    what.add_argument("--jacobian", metavar="NAME", help="Jacobian with respect to argument NAME")
    what.add_argument("--gradient", action="store_true", help="gradient with respect to the first argument")
    what.add_argument("--hessian", action="store_true", help="Hessian with respect to the first argument")
    what.add_argument("--laplacian", metavar="NAME", help="Laplacian with respect to argument NAME")
    c.add_argument("--sparse", action="store_true", help="only the structural nonzeros (with --jacobian/--hessian)")
    c.add_argument("--backend", default="numba", choices=["numba", "numba-parallel", "numpy"])
    c.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    c.add_argument("-o", "--output", required=True, metavar="FILE.py", help="where to write the module")
    c.add_argument("--quiet", action="store_true", help="no progress on stderr")
    k = sub.add_parser("cache", help="the kernel cache: info or clear", epilog=EPILOG,
                       description=CACHE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("action", choices=["info", "clear"], help="info: where, how many, how big; clear: remove all")
    d = sub.add_parser("demo", help="compile and time the built-in kinetics model's Jacobian")
    d.add_argument("--batch", type=int, default=200_000, help="samples in the timed batch (default 200000)")
    d.add_argument("--backend", default="auto", choices=["auto", "numba", "numba-parallel", "numpy"],
                   help="where the kernel runs (default auto)")
    args = parser.parse_args(argv)
    try:
        if args.command == "compile":
            return compile_command(args)
        if args.command == "cache":
            return cache_command(args)
        if args.batch < 8:
            parser.error("--batch must be at least 8")
        return demo(args.batch, args.backend)
    except _Usage as e:
        print(f"symjac: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except _Load as e:
        print(f"symjac: error: {e}", file=sys.stderr)
        return EXIT_LOAD
    except symjac.SymjacError as e:
        print(f"symjac: {type(e).__name__}: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_MODEL


if __name__ == "__main__":
    sys.exit(main())
