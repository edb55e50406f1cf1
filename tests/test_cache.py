"""The kernel cache stays small: a size limit with least-recently-used eviction
of whole entries (source and Numba's files), safe with two processes at once;
kernel modules leave sys.modules once Numba's cache is done with them."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import symjac
from codegen import cache as kernel_cache


def fake_entry(root, stem, size, used):
    (root / "__pycache__").mkdir(exist_ok=True)
    src = root / f"{stem}.py"
    src.write_bytes(b"#" * size)
    nbi = root / "__pycache__" / f"{stem}.kernel-1.py311.nbi"
    nbi.write_bytes(b"x" * size)
    for f in (src, nbi):
        os.utime(f, (used, used))
    return src


def test_parse_size_and_bad_settings(monkeypatch):
    assert kernel_cache.parse_size("300M") == 300 << 20
    assert kernel_cache.parse_size("2G") == 2 << 30
    assert kernel_cache.parse_size("1024") == 1024
    assert kernel_cache.parse_size("0") == 0
    for bad in ("lots", "inf", "nan", "0.5", "-1M"):
        with pytest.raises(ValueError, match="SYMJAC_CACHE_MAX must be a size"):
            kernel_cache.parse_size(bad)
    monkeypatch.setenv("SYMJAC_CACHE_MAX", "lots")  # a bad setting warns and keeps the default
    with pytest.warns(RuntimeWarning, match="SYMJAC_CACHE_MAX"):
        assert kernel_cache.limit_bytes() == kernel_cache.DEFAULT_MAX


def test_use_sets_the_access_time_only(tmp_path):
    src = fake_entry(tmp_path, "k_a", 10, time.time() - 1000)
    mtime = os.stat(src).st_mtime_ns
    kernel_cache.touch(src)
    assert os.stat(src).st_mtime_ns == mtime  # Numba before 0.68 stamps its cache with the mtime
    assert time.time() - kernel_cache.entries(tmp_path)["k_a"][0] < 60


def test_numba_files_of_an_evicted_source_are_an_entry(tmp_path):
    fake_entry(tmp_path, "k_b", 100, time.time() - 1000)
    (tmp_path / "k_b.py").unlink()
    assert kernel_cache.info(tmp_path) == (1, 1, 100)
    assert kernel_cache.evict(tmp_path, limit=10, grace=0) == 1
    assert kernel_cache.info(tmp_path) == (0, 0, 0)


def test_evicts_least_recently_used_whole_entries_and_spares_recent_ones(tmp_path):
    now = time.time()
    for i in range(6):
        fake_entry(tmp_path, f"k_{i}", 1000, now - 1000 + 100 * i)  # k_0 oldest
    kernel_cache.touch(tmp_path / "k_1.py")  # used now: the newest
    assert kernel_cache.info(tmp_path) == (6, 12, 12000)
    assert kernel_cache.evict(tmp_path, limit=7000, grace=0) == 3
    left = sorted(kernel_cache.entries(tmp_path))
    assert left == ["k_1", "k_4", "k_5"]
    assert not list((tmp_path / "__pycache__").glob("k_0.*"))  # Numba's files go with their source
    fake_entry(tmp_path, "k_9", 1000, now)
    assert kernel_cache.evict(tmp_path, limit=1000, grace=450) == 2  # k_1 and k_9 were used within the grace
    assert sorted(kernel_cache.entries(tmp_path)) == ["k_1", "k_9"]


WORKER = textwrap.dedent("""
    import sys
    import numpy as np, symjac
    tag = int(sys.argv[1])
    X = np.linspace(0.1, 1.0, 12).reshape(4, 3)
    for i in range(14):
        c = tag * 100 + i
        k = symjac.jacobian(lambda x, c=c: np.sin(x * c) * x[0] + c, backend="numpy")
        J = k(X)
        want = np.cos(X * c)[:, :, None] * c * np.eye(3) * X[:, 0, None, None]
        want[:, :, 0] += np.sin(X * c)
        assert np.allclose(J, want), (tag, i)
    print("ok", tag)
""")


def test_two_processes_share_a_cache_under_its_limit(tmp_path):
    env = dict(os.environ, SYMJAC_CACHE_DIR=str(tmp_path / "cache"), SYMJAC_CACHE_MAX="12K",
               SYMJAC_CACHE_GRACE="0", SYMJAC_PROGRESS="0")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(t)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for t in (1, 2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("ok")
    entries, files, size = kernel_cache.info(tmp_path / "cache")
    largest = max(b for _, b, _ in kernel_cache.entries(tmp_path / "cache").values())
    assert 0 < entries < 28 and size <= 12 * 1024 + largest  # one entry over: the one written last


def test_kernel_modules_leave_sys_modules():
    before = {m for m in sys.modules if m.startswith("symjac_kernel_")}
    k = symjac.compile(lambda x: np.cos(x) * 3.25, backend="numba")
    k(np.ones((3, 2)))
    kn = symjac.compile(lambda x: np.cos(x) * 4.25, backend="numpy")
    kn(np.ones((3, 2)))
    after = {m for m in sys.modules if m.startswith("symjac_kernel_")}
    assert after <= before


_SPARSE_AFTER = textwrap.dedent("""
    import glob, os, sys
    import symjac
    from benchmarks.mechanism import make_mechanism, make_rhs, make_states
    m = make_mechanism(12, 40, 16)
    X = make_states(m, 3)
    if sys.argv[1] == "dense first":
        symjac.jacobian(make_rhs(m), 0, in_axes=(0, None), backend="numpy")(X, m.logA)
    before = set(glob.glob(os.path.join(os.environ["SYMJAC_CACHE_DIR"], "k_*.py")))
    symjac.jacobian(make_rhs(m), 0, in_axes=(0, None), backend="numpy", sparse=True)(X, m.logA)
    print(sorted(set(glob.glob(os.path.join(os.environ["SYMJAC_CACHE_DIR"], "k_*.py"))) - before))
""")


def test_a_kernels_source_does_not_depend_on_what_the_process_traced_before(tmp_path):
    # a small mechanism's sparse Jacobian, traced alone and after its dense Jacobian, each in a fresh
    # process: one kernel file, so the second process hits the first one's cache.  (With commutative
    # arguments ordered by creation, the constants the dense trace had built sorted before the
    # sparse trace's values, and the two sources differed.)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    names = []
    for case in ("alone", "dense first"):
        env = dict(os.environ, SYMJAC_CACHE_DIR=str(tmp_path / case.replace(" ", "_")), PYTHONPATH=root)
        out = subprocess.run([sys.executable, "-c", _SPARSE_AFTER, case], cwd=root, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        names.append([os.path.basename(p) for p in eval(out.stdout)])  # noqa: S307  (our own output)
    assert len(names[0]) == 1 and names[0] == names[1]
