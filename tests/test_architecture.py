"""The house rules, checked: the import graph, private names, method discovery, the code hash, read-only
reports. Each test reads the source tree itself, so a change that breaks a rule fails here."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import methods
from harness.provenance import NUMERICS_PATHS, numerics_code

ROOT = Path(__file__).resolve().parents[1]
LOWER = ("harness.measure", "harness.models", "harness.data")  # the numerics layers
HIGHER = ("harness.run", "harness.report", "harness.cli", "harness.cluster")
# everything under harness/ that is not numerics code (NUMERICS_PATHS): orchestration and presentation
NOT_NUMERICS = ("harness/__init__.py", "harness/__main__.py", "harness/cli", "harness/files.py", "harness/provenance.py",
                "harness/registry.py", "harness/store.py", "harness/bench", "harness/cluster", "harness/report",
                "harness/run", "harness/suite", "harness/training", "harness/viz")


def _modules(package: str):
    """``{module name: [imported harness/methods module names]}`` from the source, with lazy imports."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        imports = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imports += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out[name] = [i for i in imports if i.split(".")[0] in ("harness", "methods")]
    return out


def _resolve(name: str, modules) -> str:
    """The module an imported name lives in (``harness.run.cell.CellJob`` -> ``harness.run.cell``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _graph():
    modules = {**_modules("harness"), **_modules("methods")}
    return modules, {m: sorted({_resolve(i, modules) for i in imps} - {m}) for m, imps in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def test_no_import_cycle_between_harness_packages():
    _, graph = _graph()
    edges = {}
    for module, deps in graph.items():
        if not module.startswith("harness"):
            continue
        for dep in deps:
            a, b = _package(module), _package(dep)
            if dep.startswith("harness") and a != b and a != "harness" and b not in ("harness",):
                edges.setdefault(a, set()).add(b)
    cycles = []

    def visit(node, stack):
        for nxt in sorted(edges.get(node, ())):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif len(stack) < 12:
                visit(nxt, stack + [nxt])

    for start in sorted(edges):
        visit(start, [start])
    print("package edges:", {k: sorted(v) for k, v in sorted(edges.items())})
    assert not cycles, f"import cycles between packages: {cycles[:5]}"


# Module-level import cycles still allowed, each with the change that removes it (delete the entry then).
ALLOWED_CYCLES = (
    # run_cell (which only tests call) closes it; the run-path restructuring of issue 29 removes it
    ("harness.run.cell", "harness.run.group"),
)


def _import_graph(root: Path = ROOT):
    """``{module: [modules it imports]}`` over harness/ and methods/, lazy (function-level) imports included, as
    Python resolves them: ``from a import b`` imports the module ``a.b`` when there is one, else ``a``."""
    files = {}
    for package in ("harness", "methods"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            files[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    graph = {}
    for name, path in files.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
        graph[name] = sorted({_resolve(t, files) for t in targets if t.split(".")[0] in ("harness", "methods")}
                             - {name})
    return graph


def _import_cycles(graph) -> list:
    """Each group of modules that import one another (a strongly connected component with more than one
    module), as ``(sorted members, one shortest cycle through the first member)``."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = []
    for group in sorted(groups):
        start, paths = group[0], {group[0]: [group[0]]}
        frontier, cycle = [group[0]], None
        while frontier and cycle is None:  # breadth first inside the group, back to the start
            nxt = []
            for v in frontier:
                for w in graph[v]:
                    if w == start and cycle is None:
                        cycle = paths[v] + [start]
                    elif w in group and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        out.append((group, cycle))
    return out


def test_no_module_level_import_cycle():
    cycles = _import_cycles(_import_graph())
    allowed = {tuple(sorted(c)) for c in ALLOWED_CYCLES}
    print(f"{len(cycles)} module-level import cycle(s) in harness/ and methods/ (lazy imports included)")
    for group, cycle in cycles:
        print(("  allowed: " if tuple(group) in allowed else "  ") + " -> ".join(cycle)
              + (f"  (group: {', '.join(group)})" if len(group) + 1 > len(cycle) else ""))
    bad = [" -> ".join(cycle) for group, cycle in cycles if tuple(group) not in allowed]
    assert not bad, "module-level import cycles (move the shared fact to a module both can import):\n" + \
        "\n".join(bad)
    stale = sorted(allowed - {tuple(group) for group, _ in cycles})
    assert not stale, f"ALLOWED_CYCLES lists cycles that are gone; remove them: {stale}"


def test_lower_layers_never_import_higher_ones():
    _, graph = _graph()
    bad = [(m, d) for m, deps in graph.items() if m.startswith(LOWER) for d in deps if d.startswith(HIGHER)]
    assert not bad, f"numerics layers importing the runners/reports/CLI/cluster: {bad}"


def test_no_private_name_is_imported_across_packages():
    modules, _ = _graph()
    bad = []
    for module, imports in modules.items():
        for name in imports:
            target = _resolve(name, modules)
            leaf = name[len(target) + 1:] if name != target else ""
            private = leaf.startswith("_") or any(p.startswith("_") and p != "__init__"
                                                  for p in target.split(".")[2:])
            if private and _package(target) != _package(module):
                bad.append(f"{module} imports {name}")
    assert not bad, "\n".join(bad)


def test_every_method_package_is_discovered_and_registers():
    folders = [ROOT / "methods", *map(Path, methods.__path__[1:])]  # + HARNESS_METHODS_PATH's folders
    on_disk = sorted(p.name if p.is_dir() else p.stem for folder in folders for p in folder.iterdir()
                     if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__"))
    on_disk.remove("registry")
    assert list(methods.DISCOVERED) == on_disk
    registered_by = {methods.get_method(n).params.__module__.split(".")[1] for n in methods.list_methods()}
    silent = sorted(set(on_disk) - registered_by)
    assert not silent, f"packages under methods/ that register no method: {silent}"


def test_every_method_declares_examples_for_the_registry_wide_tests():
    for name in methods.list_methods():
        spec = methods.get_method(name)
        fields = __import__("dataclasses").fields(spec.params)
        assert len(spec.examples) >= (2 if fields else 1), f"{name}: register at least two example settings"
        for example in spec.examples:
            spec.make_params(example)  # each is valid


def _copy_tree(tmp: Path) -> Path:
    for rel in ("harness", "methods"):
        shutil.copytree(ROOT / rel, tmp / rel, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp


def _first_py(root: Path, rel: str) -> Path:
    path = root / rel
    return path if path.is_file() else sorted(path.rglob("*.py"))[0]


def test_code_hash_covers_exactly_the_numerics_paths(tmp_path):
    root = _copy_tree(tmp_path)
    classified = set(NUMERICS_PATHS) | set(NOT_NUMERICS)
    unclassified = [str(p.relative_to(root)) for p in (root / "harness").iterdir()
                    if p.name != "__pycache__" and str(p.relative_to(root)) not in classified]
    assert not unclassified, f"classify these as numerics (provenance.NUMERICS_PATHS) or not: {unclassified}"

    def ident():
        return numerics_code("tome", {"r": 8}, root=str(root))["id"]

    before = ident()
    for rel in NUMERICS_PATHS:  # every numerics path changes the hash
        path = _first_py(root, rel)
        path.write_text(path.read_text() + "\n# changed\n")
        now = ident()
        assert now != before, f"editing {path.relative_to(root)} left the code hash unchanged"
        before = now
    for rel in ("harness/cli/run.py", "harness/report/tables.py", "harness/run/local.py", "harness/run/record.py",
                "harness/cluster/worker.py", "harness/store.py", "harness/suite/_load.py"):
        path = root / rel
        path.write_text(path.read_text() + "\n# changed\n")
        assert ident() == before, f"editing {rel} changed the code hash"
    path = root / "methods" / "tome" / "merge.py"
    path.write_text(path.read_text() + "\n# changed\n")
    assert ident() != before  # the method's own package


def test_report_imports_no_torch_and_writes_nothing(tmp_path):
    code = ("import sys, harness.report, harness.report.html_page, harness.cluster.status, harness.store; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    store = tmp_path / "results"
    (store / "cells").mkdir(parents=True)
    (store / "slurm" / "sub-1").mkdir(parents=True)  # a store with Slurm state: report must not sync it
    (store / "slurm" / "sub-1" / "submission.json").write_text('{"id": "sub-1", "tasks": [], "jobs": []}')
    (store / "cells" / ("a" * 64 + ".json")).write_text('{"key": "' + "a" * 64 + '", "status": "ok", '
                                                         '"config": {"method": {"name": "dense", "params": {}}}}')

    def snapshot():
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in store.rglob("*")}

    before = snapshot()
    for fmt in ("term", "json", "md"):
        out = subprocess.run([sys.executable, "-m", "harness", "report", "--results", str(store), "--format", fmt],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
    assert snapshot() == before


@pytest.mark.parametrize("path", ["harness", "methods", "tests"])
def test_ruff_passes(path):
    ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        pytest.skip("ruff is not installed (pip install -e .[test])")
    out = subprocess.run([ruff, "check", path], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
