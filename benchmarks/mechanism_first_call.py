"""First calls of a mechanism's Jacobian with symjac's default settings: Numba
compiles in a background process while the first calls run the same program
printed for NumPy (benchmarks/mechanism.py measures with Numba compiled
in-process instead).

Run:  python -m benchmarks.mechanism_first_call NS NR SEED [--sparse] [--batch B]
(a fresh process, an empty kernel cache; prints the first and second call times at B samples, 10^4 by default)
"""

import os
import sys
import tempfile
import time


def main(argv):
    os.environ["SYMJAC_CACHE_DIR"] = tempfile.mkdtemp()
    import symjac
    from benchmarks.mechanism import make_mechanism, make_rhs, make_states

    ns, nr, seed = (int(a) for a in argv[:3])
    batch = int(argv[argv.index("--batch") + 1]) if "--batch" in argv else 10_000
    m = make_mechanism(ns, nr, seed)
    X = make_states(m, batch)
    t0 = time.perf_counter()
    J = symjac.jacobian(make_rhs(m), 0, in_axes=(0, None), sparse="--sparse" in argv)
    J(X, m.logA)
    t1 = time.perf_counter()
    J(X, m.logA)
    t2 = time.perf_counter()
    print(f"{ns} species / {nr} reactions, B = {batch}: first Jacobian {t1 - t0:.2f} s, second {t2 - t1:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
