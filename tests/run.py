"""Run the whole test suite, one pytest process per test file, on every core.

``make test`` calls this.  ``python tests/run.py [pytest options]`` runs the
same files as ``python -m pytest`` (the test files, the doctests of `symjac`
and `codegen`, the README's examples), but each file in a pytest process of
its own, several at once (``SYMJAC_TEST_JOBS``, by default the core count, at
most 4), the costliest first.  Two reasons:

- a test file is mostly Numba compiling, one core each: two cores finish the
  suite in about half the time;
- Numba compiles slower the more a process has compiled already (its typing
  context and LLVM state grow): a file's compiles took up to 1.6x as long at
  the end of one long pytest process as in a process of its own.

The processes share the kernel cache, so a kernel one file compiled loads in
the others.  Each file's summary line is printed when it ends, the whole
output of a file that fails after all have ended; the exit status is the
worst of theirs.  Options after the script's name go to every pytest run
(``-x`` stops that file only; ``-k`` selects within each file).
"""

import os
import runpy
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Seconds each file took on a 2-core VM (stop 27): the order files start in, costliest first
# (a file not listed starts after these, largest first).  Only the order depends on it.
COST = {
    "tests/test_ops.py": 207, "tests/test_linalg.py": 130, "tests/test_cuda.py": 88,
    "tests/test_selection.py": 86, "tests/test_tensor.py": 78, "tests/test_special.py": 40,
    "tests/test_codegen.py": 28, "tests/test_examples.py": 20, "tests/test_library.py": 20,
    "README.md": 17, "tests/test_registry.py": 15, "tests/test_property.py": 15,
    "tests/test_background.py": 15, "tests/test_cli.py": 13, "tests/test_array_jacobian.py": 13,
}
NO_TESTS = 5  # pytest's exit status when a file holds no test (e.g. everything deselected by -k)


def units():
    """What the suite runs, costliest first: each a list of pytest path arguments (a test file, a
    package's doctests, the README; the other modules of tests/ together, for their doctests)."""
    tests = sorted(p for p in (ROOT / "tests").iterdir() if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py"))
    found = [[str(p.relative_to(ROOT))] for p in tests if p.is_dir() or p.name.startswith("test_")]
    found += [[str(p.relative_to(ROOT)) for p in tests if p.is_file() and not p.name.startswith("test_")]]
    found += [["README.md"], ["symjac"], ["codegen"]]

    def size(unit):
        return sum(p.stat().st_size for f in unit for p in ([ROOT / f] if (ROOT / f).is_file() else (ROOT / f).rglob("*.py")))

    return sorted(found, key=lambda u: (-COST.get(u[0], 0), -size(u)))


def jobs():
    value = os.environ.get("SYMJAC_TEST_JOBS")
    if value is None:
        return max(1, min(os.cpu_count() or 1, 4))
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"tests/run.py: SYMJAC_TEST_JOBS must be a positive integer, got {value!r}")
    return int(value)


# options that would make every process write one file (the last one wins), or that need pytest's cache
_ONE_FILE = ("--junitxml", "--junit-xml", "--cov", "--lf", "--last-failed", "--ff", "--failed-first",
             "--sw", "--stepwise", "--nf", "--new-first")


def check_args(argv):
    """Options go to every pytest run; paths and single-file outputs do not make sense there."""
    for a in argv:
        if a.split("=")[0] in _ONE_FILE:
            raise SystemExit(f"tests/run.py: {a.split('=')[0]} would be written by each of its pytest runs (or needs "
                             "pytest's cache, which they do not share); run python -m pytest for it")
        looks_like_path = "/" in a or "::" in a or a.endswith((".py", ".md"))  # not a -k or -m expression
        if not a.startswith("-") and looks_like_path and (ROOT / a.split("::")[0]).exists():
            raise SystemExit(f"tests/run.py: {a!r} is a path; the runner runs the whole suite (python -m pytest {a} "
                             "runs that alone)")


def _summary(proc):
    """pytest's last line (its stdout: stderr may end with a warning printed at exit)."""
    lines = proc.stdout.strip().splitlines()
    return lines[-1].strip("= ") if lines else "(no output)"


def status(codes):
    """The suite's exit status: 0 when every run passed, 5 when none had a test (pytest's own), else
    the first failing run's status, or 1 for a run killed by a signal (a negative status)."""
    bad = [c for c in codes if c not in (0, NO_TESTS)]
    if bad:
        return bad[0] if bad[0] > 0 else 1
    return NO_TESTS if codes and all(c == NO_TESTS for c in codes) else 0


def main(argv):
    check_args(argv)
    # the settings tests/conftest.py makes (a private kernel cache, ...) for the doctest runs too, which
    # do not load it
    runpy.run_path(str(ROOT / "tests" / "conftest.py"))
    todo = units()
    results = {}
    lock = threading.Lock()
    start = time.perf_counter()

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                unit = todo.pop(0)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv, *unit],
                                  cwd=ROOT, capture_output=True, text=True)
            name = " ".join(unit) if len(unit) == 1 else f"{len(unit)} modules of tests/"
            with lock:
                results[name] = proc
                print(f"{name:34s} {_summary(proc)}  [{time.perf_counter() - t0:.0f} s]", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(jobs())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [u for u, p in results.items() if p.returncode not in (0, NO_TESTS)]
    for unit in failed:
        print(f"\n{'=' * 30} {unit} (exit status {results[unit].returncode}) {'=' * 30}")
        print(results[unit].stdout + results[unit].stderr)
    counts = {}
    for p in results.values():
        for part in _summary(p).split(" in ")[0].split(", "):
            n, _, what = part.partition(" ")
            if n.isdigit():
                counts[what] = counts.get(what, 0) + int(n)
    total = ", ".join(f"{n} {what}" for what, n in counts.items())
    print(f"\n{len(results)} pytest runs, {jobs()} at a time: {total} in {time.perf_counter() - start:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return status([p.returncode for p in results.values()])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
