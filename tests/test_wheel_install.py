"""The package as users install it: a wheel built from this checkout, installed (not editable) in
a fresh virtual environment with the ``serve`` extra, then ``isnet serve`` (its page and
``/predict``), ``isnet predict`` on the bundled sample image and the README's Python snippet,
all run from outside the checkout so that nothing but the installed files can be imported.

Every other test imports the checkout's ``src``; only this one sees a file the wheel forgot
(as ``apps/serve/page.html`` once was). Slow: the fresh venv installs torch from the local
wheel. Installing with this pip and ``--no-compile`` took 83 s against 209 s for the venv's own
pip with bytecode compiled, one after the other on a busy 2-core machine (load average 13); the
first import then takes ~5 s more, once.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from serve_helpers import tiny_checkpoint  # noqa: E402

from isnet.apps.serve.client import Server, free_port  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "isnet"
MANIFEST = Path(__file__).parent / "fixtures" / "official_isnet_state_dict_manifest.json.gz"


def run(command: list[object], cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run with no PYTHONPATH (nothing of the checkout importable) from ``cwd``; fail with its output."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "ISNET_DEBUG")}
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env={**environment, "OMP_NUM_THREADS": "1", **env})
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}"
    return result


def build_wheel(work: Path) -> Path:
    """``pip wheel`` of a copy of the files a build reads (no build folder left in the checkout)."""
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", source, "-w", work / "dist"],
        cwd=work)
    (wheel,) = (work / "dist").glob("isnet-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The wheel, and a fresh venv with it installed (``pip install torch==2.13.0 isnet-*.whl[serve]``)."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    started = time.monotonic()
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)  # this pip installs into it
    # --no-compile: no bytecode for torch's thousands of modules up front (a large part of the install's time)
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-compile",
         "torch==2.13.0", f"{wheel}[serve]"], cwd=work)
    print(f"fresh venv installed in {time.monotonic() - started:.0f} s")
    return {"wheel": wheel, "bin": venv / "bin", "work": work}


def test_the_wheel_holds_the_package_data_and_nothing_of_the_checkout(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    data_files = [path for path in PACKAGE.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")]
    assert data_files, "the package has data files (the serve page, the sample image, py.typed)"
    missing = [str(path.relative_to(PACKAGE.parent)) for path in data_files
               if "__pycache__" not in path.parts and str(path.relative_to(PACKAGE.parent)) not in names]
    assert not missing, f"package data left out of the wheel: {missing} (pyproject's [tool.setuptools.package-data])"
    assert {"isnet/apps/serve/page.html", "isnet/assets/sample.jpg", "isnet/py.typed"} <= names
    assert not [name for name in names if name.startswith(("benchmarks/", "tests/"))]


def installed_sample(installed) -> Path:
    where = run([installed["bin"] / "python", "-c", "import isnet, pathlib; print(pathlib.Path(isnet.__file__).parent)"],
                cwd=installed["work"]).stdout.strip()
    assert Path(where).is_relative_to(installed["work"] / "venv"), f"isnet imported from {where}, not the venv"
    return Path(where) / "assets" / "sample.jpg"


def test_isnet_predict_labels_the_bundled_sample(installed, tmp_path):
    sample = installed_sample(installed)
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    run([installed["bin"] / "isnet", "predict", sample, "--checkpoint", checkpoint, "--precision", "fp32",
         "--output", tmp_path / "out"], cwd=tmp_path)
    labels = np.asarray(Image.open(tmp_path / "out" / "sample_labels.png"))
    assert labels.shape == np.asarray(Image.open(sample)).shape[:2] and labels.max() < 4
    assert (tmp_path / "out" / "sample_overlay.png").is_file()


def test_isnet_serve_answers_its_page_and_predict(installed, tmp_path):
    import urllib.request

    sample = installed_sample(installed)
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    port, log = free_port(), tmp_path / "serve.log"
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    with open(log, "wb") as output:
        process = subprocess.Popen([installed["bin"] / "isnet", "serve", "--checkpoint", checkpoint, "--port", str(port),
                                    "--precision", "fp32"], cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                                   env={**environment, "OMP_NUM_THREADS": "1"})
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, f"isnet serve exited {process.returncode}:\n{log.read_text()[-4000:]}"
            try:
                server.health()
                break
            except OSError:
                assert time.monotonic() < deadline, f"no answer in 300 s:\n{log.read_text()[-4000:]}"
                time.sleep(0.5)
        with urllib.request.urlopen(server.url + "/", timeout=60) as response:
            page = response.read().decode()
        assert response.status == 200 and "<html" in page.lower() and "predict?format=json" in page
        status, headers, body = server.post(sample.read_bytes(), "sample.jpg")
        assert status == 200 and headers["content-type"] == "image/png", body[:500]
        labels = np.asarray(Image.open(io.BytesIO(body)))
        assert labels.shape == np.asarray(Image.open(sample)).shape[:2]
    finally:
        process.terminate()
        process.wait(60)


def readme_snippet() -> str:
    """The first Python block of the README's "Use" section."""
    text = (ROOT / "README.md").read_text()
    use = text[text.index("\n## Use\n"):]
    return re.search(r"```python\n(.*?)```", use, re.S).group(1)


def fake_released_weights(path: Path, name: str) -> None:
    """Random values in the released checkpoint's layout (the manifest's keys and shapes): offline,
    the snippet finds them where it would have downloaded the authors' file."""
    entries = json.loads(gzip.decompress(MANIFEST.read_bytes()))
    # small weights and unit variances: a deep random network whose logits stay finite
    state = {key: (torch.ones(shape) if key.endswith("running_var") else 0.02 * torch.randn(shape)) if shape
             else torch.tensor(0) for key, shape in entries[name]["keys"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)


def test_the_readme_python_snippet_runs_on_the_installed_package(installed, tmp_path):
    snippet = readme_snippet()
    assert "torch.randn(1, 3, 512, 512)" in snippet, "the snippet changed: update this test's smaller image"
    # The snippet as written, on a 64×64 image instead of 512×512 (six scales and flips of a
    # ResNet-50 at 512² take minutes on two CPU cores), then its result checked.
    snippet = snippet.replace("torch.randn(1, 3, 512, 512)", "torch.randn(1, 3, 64, 64)")
    script = tmp_path / "snippet.py"
    script.write_text(snippet + "\nprint(tuple(labels.shape), tuple(logits.shape), float(probabilities.sum(1).mean()), sep=';')\n")
    fake_released_weights(tmp_path / "torch" / "hub" / "checkpoints" / "isnet_resnet50os8_ade20k.pth",
                          "isnet_resnet50os8_ade20k")
    result = run([installed["bin"] / "python", script], cwd=tmp_path, TORCH_HOME=str(tmp_path / "torch"))
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "torch fp32 on cpu"  # predictor.describe()
    labels, logits, total = lines[-1].split(";")
    assert (labels, logits) == ("(1, 64, 64)", "(1, 150, 8, 8)")  # at the input size; at the head's (stride 8)
    assert abs(float(total) - 1) < 1e-5  # probabilities: they sum to 1 over the classes
