"""Every name any module imports exists: at the top of a module or inside a function.

A lazy import (``from isnet.x import name`` inside a function) only fails when that
function runs, so a moved or renamed name can hide on a path no other test takes (as
``python -m benchmarks``'s ONNX case once did). This walks every module's syntax tree, imports each
target and looks the names up, without running any function.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "isnet"
BENCHMARKS = ROOT / "benchmarks"  # outside the package, run from a checkout


def imports_of(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for every absolute import in ``path``; name None for ``import module``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import (the package imports absolutely)"
            found += [(node.lineno, node.module, alias.name) for alias in node.names if alias.name != "*"]
    return found


def missing(module: str, name: str | None) -> str | None:
    """Why ``from module import name`` (or ``import module``) fails, or None. A third-party
    module that is not installed (an optional extra) is not this test's business."""
    top = module.split(".")[0]
    if top not in ("isnet", "benchmarks") and importlib.util.find_spec(top) is None:
        return None
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if top not in ("isnet", "benchmarks") and error.name and not error.name.startswith(top):
            return None  # an optional dependency of a third-party module
        return f"no module {module}"
    if name is None or hasattr(imported, name):
        return None
    if hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None:
        return None  # a submodule of a package
    return f"{module} has no {name}"


def modules() -> list[Path]:
    paths = [*PACKAGE.rglob("*.py"), *BENCHMARKS.rglob("*.py")]
    return sorted(path for path in paths if path.name != "__main__.py")


def test_the_walk_finds_a_missing_name(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def later():\n    from isnet.weights.checkpoint import load_released_checkpoint\n")
    problems = [missing(module, name) for _, module, name in imports_of(broken)]
    assert problems == ["isnet.weights.checkpoint has no load_released_checkpoint"]


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_imported_name_exists(path):
    problems = [f"line {line}: {why}" for line, module, name in imports_of(path) if (why := missing(module, name))]
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_import_isnet_loads_neither_opencv_nor_albumentations():
    """``import isnet`` stays light: OpenCV loads when an augmentation or a video needs it, albumentations never."""
    check = "import isnet, sys; assert 'cv2' not in sys.modules and 'albumentations' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_package_imports_nothing_from_the_benchmarks():
    """benchmarks/ is not installed: a module of the package that imports it works only in a checkout."""
    found = [f"{path.relative_to(ROOT)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             for line, module, _ in imports_of(path) if module.split(".")[0] == "benchmarks"]
    assert not found, found
