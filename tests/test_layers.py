"""The package's layers point one way.

Every module of ``symjac`` and ``codegen`` is parsed (imports inside
functions included) and its imports of the two packages are checked:
no cycle between modules, no import from a lower layer to a higher one,
and ``codegen`` never imports ``symjac``.  The checker runs on small
synthetic trees too, so it is known to fail when it should.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# bottom to top; a module may import its own layer and the ones below
LAYERS = [
    ("symjac.errors",),
    ("symjac.ir",),
    ("symjac.ops",),
    ("symjac.ad",),
    ("symjac.frontend",),
    ("symjac",),  # the API modules: lower, kernel, transforms, dl, extend, testing, cli...
]


def module_name(path, root):
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(source, name, is_package):
    """Modules of symjac/codegen that ``source`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _dynamic_import(node):  # importlib.import_module("x"), __import__("x")
            found.add(node.args[0].value)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            # "from symjac.ops import tensor": the submodule, when it is one
            for alias in node.names:
                found.add(f"{module}.{alias.name}")
    return {m for m in found if m and m.split(".")[0] in ("symjac", "codegen")}


def _dynamic_import(call):
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return name in ("import_module", "__import__") and call.args and isinstance(call.args[0], ast.Constant) \
        and isinstance(call.args[0].value, str)


def module_graph(root):
    """{module: set of imported modules of the tree}."""
    files = {}
    for pkg in ("symjac", "codegen"):
        for path in sorted((root / pkg).rglob("*.py")):
            files[module_name(path, root)] = path
    graph = {}
    for name, path in files.items():
        deps = imports_of(path.read_text(), name, path.name == "__init__.py")
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def layer_of(module):
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if module == p or (module.startswith(p + ".") and p != "symjac"):
                return i
    return len(LAYERS) - 1 if module.startswith("symjac") else None


def problems(graph):
    """Upward imports, codegen importing symjac, and cycles, as messages."""
    out = []
    for mod, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if mod.startswith("codegen") and dep.startswith("symjac"):
                out.append(f"{mod} imports {dep}: codegen must not import symjac")
            elif mod.startswith("symjac") and dep.startswith("symjac"):
                if layer_of(dep) > layer_of(mod):
                    out.append(f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)}): an upward import")
            elif mod.startswith("symjac") and dep.startswith("codegen") and layer_of(mod) != len(LAYERS) - 1:
                out.append(f"{mod} imports {dep}: only the API modules may use codegen")
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def cycles(graph):
    """One cycle per strongly connected component of more than one module
    (Tarjan's algorithm, iterative)."""
    index, low, on, stack, found = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp) + [sorted(comp)[0]])
    return found


def test_the_tree_is_layered():
    assert problems(module_graph(ROOT)) == []


def test_every_layer_exists():
    graph = module_graph(ROOT)
    for prefixes in LAYERS:
        assert any(m == p or m.startswith(p + ".") for m in graph for p in prefixes), prefixes


def _tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pkg in ("symjac", "codegen"):
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return module_graph(tmp_path)


@pytest.mark.parametrize("files, expected", [
    ({"symjac/ir/node.py": "def f():\n    from symjac.frontend import traced\n",
      "symjac/frontend/traced.py": ""}, "upward import"),
    ({"codegen/printers.py": "import symjac.ir\n", "symjac/ir/__init__.py": ""}, "codegen must not import symjac"),
    ({"symjac/ops/a.py": "from symjac.ops import b\n", "symjac/ops/b.py": "def g():\n    import symjac.ops.a\n"},
     "import cycle"),
    ({"symjac/ad/rules.py": "from symjac.ad.sweeps import x\n",
      "symjac/ad/sweeps.py": "from symjac.ad.rules import y\n"}, "import cycle"),
    ({"symjac/ops/x.py": "from codegen import Program\n", "codegen/__init__.py": ""}, "only the API modules"),
    ({"symjac/ir/node.py": "import importlib\ndef f():\n    importlib.import_module('symjac.frontend.traced')\n",
      "symjac/frontend/traced.py": ""}, "upward import"),
    ({"symjac/ir/node.py": "def f():\n    return __import__('symjac.ad.rules')\n", "symjac/ad/rules.py": ""},
     "upward import"),
])
def test_the_checker_fails_on_bad_trees(tmp_path, files, expected):
    found = problems(_tree(tmp_path, files))
    assert any(expected in p for p in found), found


def test_the_checker_passes_a_good_tree(tmp_path):
    files = {"symjac/ir/node.py": "from symjac.errors import E\n", "symjac/errors.py": "",
             "symjac/ops/a.py": "from symjac.ir import node\n", "symjac/kernel.py": "from codegen import x\n",
             "codegen/printers.py": "from codegen.program import Program\n", "codegen/program.py": ""}
    assert problems(_tree(tmp_path, files)) == []


def test_the_suite_runner_runs_what_pytest_collects():
    # `make test` runs tests/run.py, one pytest process per unit: its units must be pytest's testpaths
    # (pyproject.toml), with tests/ split into its files and subfolders (every module: pytest runs their
    # doctests), so that no test is left out
    import runpy
    import tomllib

    run = runpy.run_path(str(ROOT / "tests" / "run.py"))
    paths = [p for unit in run["units"]() for p in unit]
    assert len(paths) == len(set(paths))
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    tests = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").iterdir()
             if p.suffix == ".py" or p.is_dir() and p.name != "__pycache__"}
    assert set(paths) == (set(testpaths) - {"tests"}) | tests
    # its exit status: a crash (a negative status) or a failure is not hidden by runs that passed, and
    # no test at all is pytest's 5
    assert [run["status"](c) for c in ([0, 0], [0, 5], [5, 5], [0, -11, 0], [1, 0], [0, 2, 1], [])] == [0, 0, 5, 1, 1, 2, 0]
    with pytest.raises(SystemExit, match="junitxml"):
        run["check_args"](["--junitxml=out.xml"])
    with pytest.raises(SystemExit, match="is a path"):
        run["check_args"](["tests/test_api.py::test_kernel_properties"])
    run["check_args"](["-x", "-k", "cache and not cuda", "-q", "-k", "tests", "-m", "symjac"])
