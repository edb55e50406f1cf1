"""The floor of a pure-Python graph and a source-printing backend at 10^6 operations.

Issue 11's target (a 10^6-operation chain through `jacobian(backend="numpy")`
in under 30 s and 2 GB) against what Python itself costs, with nothing of
symjac in it: 3.3 x 10^6 bare slotted nodes built through a dict intern table
(about the statements such a chain's Jacobian needs), and CPython's `compile`
of 3.3 x 10^6 one-operation source lines in functions of 10^4 lines.

    python -m benchmarks.graph_floor
"""

import gc
import resource
import sys
import time

M = 3_333_335


class Node:
    __slots__ = ("op", "args", "attr", "h")

    def __init__(self, op, args, attr):
        self.op, self.args, self.attr = op, args, attr


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    gc.disable()
    t = time.perf_counter()
    table, prev = {}, Node("x", (), None)
    for i in range(M):
        n = Node("mul", (prev,), None)
        table[("mul", None, id(prev), i)] = n
        prev = n
    t_nodes = time.perf_counter() - t
    print(f"{M:,} bare nodes + intern table: {t_nodes:.2f} s ({t_nodes / M * 1e6:.2f} us a node), "
          f"peak {peak_mb():.0f} MB")
    del table, prev
    total, lines = 0.0, 10_000
    for p in range(M // lines):
        body = [f"def f{p}(a, b):", "    v0 = a * b"] + [f"    v{i} = a * v{i - 1}" for i in range(1, lines)]
        source = "\n".join(body + [f"    return v{lines - 1}"])
        t = time.perf_counter()
        compile(source, "<floor>", "exec")
        total += time.perf_counter() - t
    print(f"CPython compile of {M // lines * lines:,} one-operation lines: {total:.2f} s "
          f"({total / (M // lines * lines) * 1e6:.2f} us a line), peak {peak_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
