"""Adding a runtime is one module and one registry line: a dummy runtime, registered in the
test, becomes a choice of ``--runtime``, a reader of its own files and the pick of ``auto``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.deploy.runtimes import RUNTIMES, RuntimeSegmentor, register_runtime
from isnet.model.segmentor import build_model
from isnet.weights.checkpoint import load_model, model_metadata, save_model

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import tiny_config  # noqa: E402


class CheckpointFileRuntime(RuntimeSegmentor):
    """A stand-in runtime: a ``.ckptref`` file names one of our checkpoints, which it runs
    in PyTorch and hands back as arrays, as a compiled graph would."""

    name = "ckptref"
    profile_name = "ckptref"
    reads = (".ckptref",)
    requires = ()

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.model = load_model(self.path.read_text().strip()).eval()
        self._read_metadata(model_metadata(self.model))

    def run(self, images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model.logits(torch.from_numpy(images)).numpy()


@pytest.fixture
def registry():
    """The registry (one dict, shared by every module that reads it), restored after the test."""
    saved = dict(RUNTIMES)
    yield RUNTIMES
    RUNTIMES.clear()
    RUNTIMES.update(saved)


@pytest.fixture
def files(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_config(tmp_path, tmp_path).model).eval()
    checkpoint = save_model(model, tmp_path / "tiny.safetensors")
    reference = tmp_path / "tiny.ckptref"
    reference.write_text(str(checkpoint))
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    return checkpoint, reference, image


def test_a_registered_runtime_runs_its_files_from_the_command_line(registry, files, tmp_path):
    from isnet.cli import main

    checkpoint, reference, image = files
    register_runtime(CheckpointFileRuntime)
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--precision", "fp32",
                 "--output", str(tmp_path / "torch")]) == 0
    for runtime in ("ckptref", "auto"):  # named, and picked by auto for a .ckptref file
        assert main(["predict", str(image), "--weights", str(reference), "--runtime", runtime,
                     "--output", str(tmp_path / runtime)]) == 0
        ours = np.asarray(Image.open(tmp_path / runtime / "street_labels.png"))
        torch_labels = np.asarray(Image.open(tmp_path / "torch" / "street_labels.png"))
        assert ours.shape == (40, 56) and (ours == torch_labels).all()


def test_an_unregistered_suffix_and_a_wrong_runtime_are_named(registry, files, tmp_path, capsys):
    from isnet.cli import main

    _, reference, image = files
    assert main(["predict", str(image), "--weights", str(reference), "--runtime", "onnx", "--output", str(tmp_path)]) == 2
    assert "tiny.ckptref" in capsys.readouterr().err  # unknown to every runtime until registered
    register_runtime(CheckpointFileRuntime)
    assert main(["predict", str(image), "--weights", str(reference), "--runtime", "openvino", "--output", str(tmp_path)]) == 2
    assert "is a .ckptref file, which runs in ckptref" in capsys.readouterr().err


def test_registering_checks_the_runtime_says_what_it_is(registry):
    class Nameless(RuntimeSegmentor):
        reads = (".x",)

        def run(self, images):
            return images

    with pytest.raises(TypeError, match="must say its name"):
        register_runtime(Nameless)
    register_runtime(CheckpointFileRuntime)
    with pytest.raises(ValueError, match="exists already"):
        register_runtime(CheckpointFileRuntime)
    assert list(registry) == ["onnx", "openvino", "ckptref"]


def test_a_runtime_is_available_when_what_it_requires_is_installed():
    class Elsewhere(CheckpointFileRuntime):
        requires = ("a_module_nobody_installed",)

    assert CheckpointFileRuntime.available() and RUNTIMES["onnx"].available()  # onnxruntime: in the test extra
    assert not Elsewhere.available()
