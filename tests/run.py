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
    """What the suite runs, as pytest path arguments, costliest first."""
    files = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").glob("test_*.py"))]
    files += ["tests/cuda", "README.md", "symjac", "codegen"]
    size = {f: sum(p.stat().st_size for p in ([ROOT / f] if (ROOT / f).is_file() else (ROOT / f).rglob("*.py")))
            for f in files}
    return sorted(files, key=lambda f: (-COST.get(f, 0), -size[f]))


def jobs():
    value = os.environ.get("SYMJAC_TEST_JOBS")
    if value is None:
        return max(1, min(os.cpu_count() or 1, 4))
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"tests/run.py: SYMJAC_TEST_JOBS must be a positive integer, got {value!r}")
    return int(value)


def main(argv):
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
            proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv, unit],
                                  cwd=ROOT, capture_output=True, text=True)
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            summary = lines[-1].strip("= ") if lines else "(no output)"
            with lock:
                results[unit] = proc
                print(f"{unit:34s} {summary}  [{time.perf_counter() - t0:.0f} s]", flush=True)

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
        lines = (p.stdout + p.stderr).strip().splitlines()
        for part in (lines[-1].strip("= ").split(" in ")[0].split(", ") if lines else ()):
            n, _, what = part.partition(" ")
            if n.isdigit():
                counts[what] = counts.get(what, 0) + int(n)
    total = ", ".join(f"{n} {what}" for what, n in counts.items())
    print(f"\n{len(results)} pytest runs, {jobs()} at a time: {total} in {time.perf_counter() - start:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return max((0 if p.returncode == NO_TESTS else p.returncode for p in results.values()), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
