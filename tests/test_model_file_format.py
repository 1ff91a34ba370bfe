"""What our model files are and carry: their kind as an enum, a seal checked in pieces (memory
bounded whatever the file's size), the file read once when a model is created from it, and a
format version in every file we write, with files written before versions still read."""

from __future__ import annotations

import hashlib
import json
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch

from isnet.data.info import RECORD_FORMAT_KEY, DatasetInfo
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.utils import seal as seals
from isnet.utils.errors import CheckpointError
from isnet.utils.seal import PLACEHOLDER, SEAL_KEY, SealBroken, check_seal, seal
from isnet.weights import inspection
from isnet.weights.checkpoint import model_metadata, read_safetensors, save_model, write_safetensors
from isnet.weights.inspection import FILE_FORMAT, FORMAT_METADATA_KEY, FileKind, file_kind, require_kind

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet  # noqa: E402
from hostile_files import random_image, write_png  # noqa: E402

TINY = ModelConfig(num_classes=4, backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                   head=ISNetHeadConfig(channels=16, transform_channels=8))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return save_model(build_model(TINY), tmp_path_factory.mktemp("model") / "tiny.safetensors")


# --- kinds ---------------------------------------------------------------------------------


def test_file_kinds_are_an_enum_with_the_words_of_the_messages(model_file, tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "model.xml").write_text('<?xml version="1.0"?>\n<net name="x" version="11">\n</net>\n')
    torch.save({"weights": torch.zeros(2)}, tmp_path / "released.pth")
    assert file_kind(model_file) is FileKind.SAFETENSORS
    assert file_kind(tmp_path / "empty.onnx") is FileKind.EMPTY
    assert file_kind(tmp_path / "model.xml") is FileKind.OPENVINO_IR
    assert file_kind(tmp_path / "released.pth") is FileKind.PYTORCH
    assert file_kind(tmp_path) is FileKind.DIRECTORY
    with pytest.raises(CheckpointError) as refused:
        require_kind(model_file, FileKind.ONNX)
    assert str(refused.value) == (f"{model_file}: not an ONNX model: it is a safetensors file (an isnet model file); "
                                  "load it with load_model (isnet --checkpoint FILE)")


# --- seals, checked in pieces --------------------------------------------------------------


def sealed_blob(folder: Path, before: int, after: int) -> Path:
    """A file of ``before`` random bytes, a safetensors-style seal entry, ``after`` random bytes, sealed."""
    generator = torch.Generator().manual_seed(before + after)
    noise = torch.randint(0, 256, (before + after,), dtype=torch.uint8, generator=generator).numpy().tobytes()
    path = folder / f"blob_{before}_{after}.bin"
    path.write_bytes(noise[:before] + f'"{SEAL_KEY}":"{PLACEHOLDER}"'.encode() + noise[before:])
    seal(path)
    return path


@pytest.mark.parametrize("chunk", [7, 64, 100, 1000])
def test_a_seal_across_the_pieces_is_found_and_checked(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(seals, "CHUNK", chunk)
    for before in (0, 1, chunk - 20, chunk - 1, chunk, 2 * chunk + 5):
        path = sealed_blob(tmp_path, max(before, 0), 300)
        assert check_seal(path)
        data = bytearray(path.read_bytes())
        start = data.index(SEAL_KEY.encode()) + len(SEAL_KEY) + 3
        # the seal is the sha256 of the file with its 64 digits read as zeros: computed here in one piece
        expected = hashlib.sha256(bytes(data[:start]) + PLACEHOLDER.encode() + bytes(data[start + 64:])).hexdigest()
        assert data[start:start + 64].decode() == expected
        data[-1] ^= 1  # one flipped bit, far from the seal
        path.write_bytes(bytes(data))
        with pytest.raises(SealBroken, match="do not match"):
            check_seal(path)


def test_checking_a_seal_holds_a_piece_not_the_file(tmp_path):
    path = sealed_blob(tmp_path, 30_000_000, 10_000_000)  # 40 MB
    tracemalloc.start()
    try:
        assert check_seal(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * seals.CHUNK, f"{peak / 1e6:.1f} MB held to check a 40 MB file"  # was the whole file (40 MB)


def test_creating_a_model_from_a_file_reads_and_checks_it_once(model_file, monkeypatch):
    from isnet.weights.presets import create_model

    checked = []
    real_check = inspection.check_seal
    monkeypatch.setattr(inspection, "check_seal", lambda path, *a: checked.append(path) or real_check(path, *a))
    model = create_model(TINY, weights=model_file)
    assert checked == [model_file]  # was twice: once for the tensors, once more for the dataset record
    assert all(torch.equal(model.state_dict()[key], value) for key, value in read_safetensors(model_file)[0].items())


# --- a format version, and files without one ----------------------------------------------


def test_every_model_file_carries_its_format_version(model_file):
    _, metadata = read_safetensors(model_file)
    assert metadata[FORMAT_METADATA_KEY] == str(FILE_FORMAT) == "1"


def test_a_file_written_before_format_versions_is_still_read(tmp_path):
    from isnet.weights.checkpoint import load_model

    model = build_model(TINY).eval()
    model.dataset = DatasetInfo(name="old", classes=("a", "b", "c", "d"), palette=((0, 0, 0),) * 4)
    old_metadata = {key: value for key, value in model_metadata(model).items() if key != FORMAT_METADATA_KEY}
    record = json.loads(old_metadata["isnet_dataset"])
    del record[RECORD_FORMAT_KEY]  # the dataset record as older versions wrote it
    old_metadata["isnet_dataset"] = json.dumps(record)
    path = write_safetensors(tmp_path / "old.safetensors", model.state_dict(), old_metadata)
    assert FORMAT_METADATA_KEY not in read_safetensors(path)[1]
    loaded = load_model(path).eval()
    assert loaded.dataset == model.dataset
    images = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["out"], model(images)["out"], rtol=0, atol=0)


def test_a_dataset_json_written_before_format_versions_is_still_read(tmp_path):
    from isnet.data.folder import folder_record

    record = DatasetInfo(name="mine", classes=("sky", "road"), palette=((0, 0, 255), (128, 64, 128)))
    written = json.loads(record.to_json())
    assert written[RECORD_FORMAT_KEY] == 1
    del written[RECORD_FORMAT_KEY]
    (tmp_path / "dataset.json").write_text(json.dumps(written))
    assert folder_record(tmp_path) == record


def test_hostile_file_of_a_newer_format_is_refused_with_one_line(tmp_path):
    model = build_model(TINY)
    path = write_safetensors(tmp_path / "future.safetensors", model.state_dict(),
                             {**model_metadata(model), FORMAT_METADATA_KEY: str(FILE_FORMAT + 1)})
    image = tmp_path / "a.png"
    write_png(image, random_image(24, 32, seed=0))
    result = isnet("predict", image, "--checkpoint", path, "--output", tmp_path / "out")
    assert first_line(result, "predict", 1) == (
        f"{path}: written in file format {FILE_FORMAT + 1} by a newer isnet; this version reads formats up to "
        f"{FILE_FORMAT}: upgrade isnet to read it"
    )


def test_a_training_checkpoint_carries_its_format_version_and_a_newer_one_is_refused(tmp_path):
    from isnet.weights.checkpoint import load_training_checkpoint, save_training_checkpoint

    state = {"model": {"w": torch.zeros(2)}, "optimizer": {}, "iteration": 3, "rng": [torch.get_rng_state()],
             "config": "{}"}
    path = save_training_checkpoint(tmp_path / "iter_00000003.pt", state)
    assert load_training_checkpoint(path)[FORMAT_METADATA_KEY] == str(FILE_FORMAT)
    old = save_training_checkpoint(tmp_path / "iter_00000001.pt", state)  # as written before versions: no key
    torch.save(state, old)
    (old.parent / (old.name + ".sha256")).write_text(f"{hashlib.sha256(old.read_bytes()).hexdigest()}  {old.name}\n")
    assert load_training_checkpoint(old)["iteration"] == 3
    newer = save_training_checkpoint(tmp_path / "iter_00000002.pt", {**state, FORMAT_METADATA_KEY: str(FILE_FORMAT + 1)})
    with pytest.raises(CheckpointError, match="newer isnet"):
        load_training_checkpoint(newer)


# --- the JSON files a run, an evaluation and a model directory write ---------------------------


def test_a_runs_config_json_and_an_evaluations_summary_json_carry_their_format_version(tmp_path):
    from isnet.evaluation.metrics import ConfusionMatrix
    from isnet.evaluation.report import SUMMARY_FORMAT, write_report
    from isnet.training.config import RUN_CONFIG_FORMAT, DataConfig, TrainConfig

    config = json.loads(TrainConfig(model=TINY, data=DataConfig(dataset="camvid", root=str(tmp_path))).to_json())
    assert config[FORMAT_METADATA_KEY] == RUN_CONFIG_FORMAT == 1
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
    returned = write_report(matrix, ["a", "b"], tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written[FORMAT_METADATA_KEY] == SUMMARY_FORMAT == 1
    assert FORMAT_METADATA_KEY not in returned  # the numbers handed back are the numbers, not the file's layout
    assert {key: value for key, value in written.items() if key != FORMAT_METADATA_KEY} == json.loads(json.dumps(returned))


def test_a_resume_of_a_run_started_before_config_versions_names_no_change(tmp_path):
    from isnet.training.run_state import resume_changes

    current = {"config": json.dumps({FORMAT_METADATA_KEY: 1, "lr": 0.01, "data": {"dataset": "camvid", "root": "."}}),
               "data_root": str(Path(".").resolve()), "classes": ["a"]}
    older = {**current, "config": json.dumps({"lr": 0.01, "data": {"dataset": "camvid", "root": "."}})}
    assert resume_changes(older, current) == ([], [])
    newer = {**current, "config": json.dumps({FORMAT_METADATA_KEY: 2, "lr": 0.01, "data": {"dataset": "camvid", "root": "."}})}
    assert resume_changes(newer, current) == ([], [])  # the layout of the file, not a change of the run


def test_a_model_directory_carries_its_format_version_and_a_newer_one_is_refused(tmp_path):
    from isnet.weights.hub import from_pretrained, save_pretrained

    directory = save_pretrained(build_model(TINY), tmp_path / "hub")
    config = json.loads((directory / "config.json").read_text())
    assert config[FORMAT_METADATA_KEY] == FILE_FORMAT
    assert from_pretrained(directory).config == TINY
    del config[FORMAT_METADATA_KEY]  # as written before versions
    (directory / "config.json").write_text(json.dumps(config))
    assert from_pretrained(directory).config == TINY
    for version in (FILE_FORMAT + 1, 0, "1", True):
        (directory / "config.json").write_text(json.dumps({FORMAT_METADATA_KEY: version, **config}))
        with pytest.raises(CheckpointError, match=f"config.json: its isnet_format entry {version!r} is not a format"):
            from_pretrained(directory)
