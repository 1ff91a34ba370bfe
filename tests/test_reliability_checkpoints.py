"""Hostile and mistaken model files given to ``--checkpoint``: each is named as what it is, or
refused from its header before the model is allocated, in one message, exit status 1, no
traceback, and no output written.

Each CLI test runs ``python -m isnet.cli predict`` in a subprocess, as a user would.
Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from isnet.weights.checkpoint import (
    CheckpointError,
    read_safetensors_header,
    save_model,
    save_training_checkpoint,
    write_atomically,
)
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.utils.seal import SEAL_KEY

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet  # noqa: E402
from hostile_files import random_image, write_png  # noqa: E402

TINY = ModelConfig(
    num_classes=4,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)
TAMPERED = "head.bottleneck.0.weight"  # a float32 tensor of the tiny model


def rewrite_header(path: Path, change: Callable[[dict], None]) -> Path:
    """Edit a safetensors header (JSON) in place; the tensor data stays as it is.

    The file's seal is dropped, as someone crafting a hostile file would: the seal finds
    damage, the checks behind these messages stop what a seal cannot (a forged file).
    """
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"].pop(SEAL_KEY)
    change(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data[8 + size :])
    return path


def integers_declared_for_floats(folder: Path) -> tuple[Path, str]:
    path = save_model(build_model(TINY), folder / "model.safetensors")

    def change(header: dict) -> None:
        assert header[TAMPERED]["dtype"] == "F32"
        header[TAMPERED]["dtype"] = "I32"  # same byte count: only the kind check can see it

    rewrite_header(path, change)
    return path, f"{path}: checkpoint does not match the model its metadata describes"


def absurd_class_count(folder: Path) -> tuple[Path, str]:
    path = save_model(build_model(TINY), folder / "model.safetensors")

    def change(header: dict) -> None:
        config = json.loads(header["__metadata__"]["isnet_config"])
        config["num_classes"] = 10**12  # 32 TB of classifier weights, if built
        header["__metadata__"]["isnet_config"] = json.dumps(config)

    rewrite_header(path, change)
    return path, (f"{path}: impossible model configuration in the metadata: num_classes: 1000000000000 is "
                  "outside 1..65536")


def run_folder(folder: Path) -> tuple[Path, str]:
    save_model(build_model(TINY), folder / "run" / "model.safetensors")
    return folder / "run", f"{folder / 'run'}: is a directory, not a safetensors model file; did you mean " \
                           f"{folder / 'run' / 'model.safetensors'}?"


def training_checkpoint(folder: Path) -> tuple[Path, str]:
    model = build_model(TINY)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 2,
             "rng": [torch.get_rng_state()], "config": TINY.to_json()}
    path = save_training_checkpoint(folder / "iter_00000002.pt", state)
    return path, (f"{path}: not a safetensors model file: it is a training checkpoint of isnet train (iter_*.pt: "
                  "weights, optimizer and random state); a finished run writes its model as model.safetensors "
                  "in the run folder (isnet --checkpoint RUN/model.safetensors)")


def released_pth(folder: Path) -> tuple[Path, str]:
    path = folder / "released.pth"
    torch.save({"state_dict": build_model(TINY).state_dict()}, path)
    return path, (f"{path}: not a safetensors model file: it is a PyTorch file (.pth/.pt: pickled tensors, such "
                  "as the authors' released weights); released weights are loaded with their preset "
                  "(isnet --model PRESET --weights FILE)")


def onnx_model(folder: Path) -> tuple[Path, str]:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, producer_name="pytorch"), str(path))
    return path, (f"{path}: not a safetensors model file: it is an ONNX model (written by isnet export); run it "
                  "with isnet predict --runtime onnx --weights FILE")


def nan_weights(folder: Path) -> tuple[Path, str]:
    path = save_model(build_model(TINY), folder / "model.safetensors")
    data = bytearray(path.read_bytes())  # NaN written over one tensor's bytes
    header_size = int.from_bytes(data[:8], "little")
    start, end = json.loads(data[8 : 8 + header_size])[TAMPERED]["data_offsets"]
    nan = torch.full(((end - start) // 4,), math.nan).numpy().tobytes()
    data[8 + header_size + start : 8 + header_size + end] = nan
    path.write_bytes(bytes(data))
    rewrite_header(path, lambda header: None)  # unsealed: the NaN check, not the seal, must find it
    return path, (f"{path}: non-finite values (NaN or infinity) in 1 tensor(s): {TAMPERED}; the model would "
                  "predict nothing useful")


CASES = {
    "integers_declared_for_floats": integers_declared_for_floats,
    "absurd_class_count": absurd_class_count,
    "run_folder": run_folder,
    "training_checkpoint": training_checkpoint,
    "released_pth": released_pth,
    "onnx_model": onnx_model,
    "nan_weights": nan_weights,
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_checkpoint_is_named_and_refused_before_anything_is_written(case, tmp_path):
    checkpoint, expected = CASES[case](tmp_path)
    image = write_png(tmp_path / "x.png", random_image(30, 40))
    output = tmp_path / "out"
    result = isnet("predict", image, "--checkpoint", checkpoint, "--output", output)
    message = first_line(result, "predict", 1)
    assert message == expected
    if case == "integers_declared_for_floats":
        assert result.stderr.splitlines()[-2:] == [
            "  1 mistyped key(s):", f"    {TAMPERED}: file torch.int32 vs model torch.float32"
        ]
    assert not output.exists()


# In process: the header checks behind those messages.


@pytest.mark.parametrize("change, problem", [
    (lambda entry: entry.update(shape=[entry["shape"][0] + 1, *entry["shape"][1:]]), "declares F32"),
    (lambda entry: entry.update(dtype="F99"), "has an unknown dtype 'F99'"),
    (lambda entry: entry.update(shape=[-1]), "has an impossible shape [-1]"),
    (lambda entry: entry.update(data_offsets=[0, 10**15]), "outside the file's"),
])
def test_corrupt_safetensors_header_entries_are_refused_before_reading(change, problem, tmp_path):
    path = save_model(build_model(TINY), tmp_path / "model.safetensors")
    rewrite_header(path, lambda header: change(header[TAMPERED]))
    with pytest.raises(CheckpointError, match="corrupt safetensors file") as error:
        read_safetensors_header(path)
    assert str(error.value).startswith(f"{path}: corrupt safetensors file: tensor {TAMPERED!r}")
    assert problem in str(error.value)


def test_fault_failed_write_names_the_file_and_the_cause_and_leaves_nothing(tmp_path):
    import errno

    def write_half_then_fill_the_disk(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            handle.write(b"half")
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as full:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from full

    target = tmp_path / "iter_00000002.pt"
    with pytest.raises(OSError) as error:
        write_atomically(target, write_half_then_fill_the_disk, checksum=True)
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, str(target))
    assert list(tmp_path.iterdir()) == []


def test_hostile_foreign_onnx_graph_is_refused_by_name(tmp_path):
    """An ONNX file not written by ``isnet export`` has no classes or model to tell: refused, named."""
    pytest.importorskip("onnxruntime")
    path, _ = onnx_model(tmp_path)
    image = write_png(tmp_path / "x.png", random_image(30, 40))
    result = isnet("predict", image, "--weights", path, "--output", tmp_path / "out")
    message = first_line(result, "predict", 2)
    assert message == f"{path}: carries no isnet configuration (classes, model): export it with `isnet export`"
    assert not (tmp_path / "out").exists()
