"""The command line end to end (subprocess): compile a model from a file, import
the module it writes and compare with the in-process kernel; one-line errors
with documented exit codes; --version; cache info and clear."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symjac

MODEL = textwrap.dedent("""
    import numpy as np

    def robertson(y, k):
        return np.array([-k[0] * y[0] + k[1] * y[1] * y[2],
                         k[0] * y[0] - k[1] * y[1] * y[2] - k[2] * y[1] ** 2,
                         k[2] * y[1] ** 2])

    def branchy(y):
        if y[0] > 0:
            return y
        return -y
""")


def cli(*args, env=None, cwd=None):
    env = dict(os.environ if env is None else env)
    return subprocess.run([sys.executable, "-m", "symjac", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "chem.py").write_text(MODEL)
    return d


def test_compile_writes_a_module_that_matches_the_kernel(model):
    out = model / "rob_jac.py"
    proc = cli("compile", str(model / "chem.py") + ":robertson", "--arg", "y=3", "--arg", "k=3:shared",
               "--jacobian", "y", "--sparse", "--backend", "numpy", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stderr
    spec = importlib.util.spec_from_file_location("rob_jac", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    Y, k = rng.uniform(0.1, 1, (7, 3)), np.array([0.04, 1e4, 3e7])
    sys.path.insert(0, str(model))
    try:
        import chem
    finally:
        sys.path.remove(str(model))
    want = symjac.jacobian(chem.robertson, in_axes=(0, None), sparse=True, backend="numpy")(Y, k)
    np.testing.assert_allclose(mod.evaluate(Y, k), want.values, rtol=1e-14)
    assert np.array_equal(mod.ROWS, want.rows)


@pytest.mark.parametrize("argv, code, message", [
    (["--arg", "y=3x", "--arg", "k=3:shared"], 2, "--arg y: shape '3x' is not a shape"),
    (["--arg", "y=3"], 2, "missing --arg for k (the function takes y, k)"),
    (["--arg", "y=3", "--arg", "k=3:shard"], 2, "the only flag after the shape is ':shared'"),
    (["--arg", "y=3:shared", "--arg", "k=3:shared"], 2, "at least one argument must be batched"),
    (["--arg", "y=3", "--arg", "k=3:shared", "--laplacian", "z"], 2, "no argument named 'z'"),
])
def test_bad_command_lines_are_one_line_errors(model, argv, code, message):
    proc = cli("compile", str(model / "chem.py") + ":robertson", *argv, "-o", str(model / "x.py"))
    assert proc.returncode == code
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (model / "x.py").exists()


def test_load_and_model_errors_have_their_exit_codes(model):
    proc = cli("compile", str(model / "chem.py") + ":nope", "--arg", "y=3", "-o", str(model / "x.py"))
    assert proc.returncode == 3 and "has no function 'nope'" in proc.stderr
    proc = cli("compile", str(model / "missing.py") + ":f", "--arg", "y=3", "-o", str(model / "x.py"))
    assert proc.returncode == 3 and "no file" in proc.stderr
    proc = cli("compile", str(model / "chem.py") + ":branchy", "--arg", "y=3", "--backend", "numpy",
               "-o", str(model / "x.py"))
    assert proc.returncode == 1 and "TracerBoolError" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_version_help_and_cache(tmp_path):
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"symjac {symjac.__version__}"
    proc = cli("compile", "--help")
    assert proc.returncode == 0 and "NAME=SHAPE:shared" in proc.stdout and "``" not in proc.stdout
    assert "exit codes:" in proc.stdout
    env = dict(os.environ, SYMJAC_CACHE_DIR=str(tmp_path / "cache"))
    code = "import numpy as np, symjac; symjac.compile(np.sin, backend='numpy')(np.ones((2, 3)))"
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0
    proc = cli("cache", "info", env=env)
    assert proc.returncode == 0 and "entries   1 kernel(s)" in proc.stdout and str(tmp_path / "cache") in proc.stdout
    proc = cli("cache", "clear", env=env)
    assert proc.returncode == 0 and "removed 1 kernel(s)" in proc.stdout
    assert "entries   0 kernel(s)" in cli("cache", "info", env=env).stdout
