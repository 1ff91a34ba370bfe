"""The package's shape: no import cycles (lazy imports inside functions count), small modules."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "isnet"
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every isnet module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from package import module`` imports the module; ``from module import name`` the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module are import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles():
    graph = import_graph()
    cycles = [component for component in strongly_connected_components(graph) if len(component) > 1]
    assert not cycles, "import cycles (lazy imports count): " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in strongly_connected_components(graph) if len(c) > 1] == [["a", "b", "c"]]


def test_import_graph_sees_lazy_imports():
    graph = import_graph()
    assert "isnet.model.segmentor" in graph["isnet.weights.presets"]  # imported inside create_model
    assert "isnet.model.backbones" in graph["isnet.model.segmentor"]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines; split it by concern"


def test_no_dead_code():
    """``vulture src/isnet vulture_whitelist.py --min-confidence 80`` reports nothing."""
    root = PACKAGE.parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "vulture", "src/isnet", "vulture_whitelist.py", "--min-confidence", "80"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0 and not result.stdout, result.stdout


def test_train_loop_fits_on_two_screens():
    tree = ast.parse((PACKAGE / "training" / "loop.py").read_text())
    loop = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "train")
    assert loop.end_lineno - loop.lineno + 1 <= 100


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the contracts of ``root/pyproject.toml`` (docs/architecture.md), for the package in ``root/src``."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           "--no-cache", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_no_layer_imports_one_above_it():
    """The layers of docs/architecture.md; training imports nothing from deploy; the model nothing from export or the runtimes."""
    result = lint_imports(PACKAGE.parents[1])
    assert result.returncode == 0 and "0 broken" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_layer_contracts_see_a_lazy_upward_import(tmp_path):
    """The contracts can fail: a copy of the package whose model imports the exporter inside a function breaks all three."""
    shutil.copytree(PACKAGE, tmp_path / "src" / "isnet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE.parents[1] / "pyproject.toml", tmp_path)
    with open(tmp_path / "src" / "isnet" / "model" / "layers.py", "a") as module:
        module.write("\n\ndef _upward():\n    from isnet.deploy.export import export_onnx\n\n    return export_onnx\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "3 broken" in result.stdout, result.stdout[-3000:]
    assert "isnet.model.layers -> isnet.deploy.export" in result.stdout


def test_the_model_reads_no_export_state():
    """Kernels are chosen by methods (Segmentor.exportable), not by asking torch on every call whether an export runs."""
    readers = [f"{path.relative_to(PACKAGE)}:{number}" for path in sorted((PACKAGE / "model").rglob("*.py"))
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if "torch.onnx" in line or "is_exporting" in line]
    assert not readers, readers
