"""Every model file a user can hand ``isnet``, damaged every way: one line naming the file, its
kind and the problem, never a traceback, never a silent success.

Each kind (our safetensors model files, ONNX graphs, OpenVINO IRs and their ``.bin``,
``torch.export`` programs, released ``.pth`` files, training checkpoints and their checksum
files, model directories) is emptied, cut at several offsets, has bits flipped where
hypothesis draws them (a fixed seed: the same examples on every run), and is replaced by a
file of another kind under its name. The command-line cases run ``isnet predict`` in process
through the one error boundary (``isnet.cli.commands.main``); ``test_fuzz_damaged_files_in_a_subprocess``
runs a few of them as a user would. Files without a way in from the command line
(``.pt2``, model directories, the checkpoints a resumed run reads) are read by the function
every caller uses.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from isnet.deploy.export import export_onnx, export_program, load_program
from isnet.deploy.runtimes.openvino import core, save_ir
from isnet.model.segmentor import build_model
from isnet.utils.errors import CheckpointError
from isnet.weights.checkpoint import model_metadata, save_model, save_training_checkpoint
from isnet.weights.hub import from_pretrained, save_pretrained
from isnet.weights.loading import load_weights

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet  # noqa: E402
from fuzz_files import Damage, damaged_copy, damages, fixed_damages, fuzz_settings, refusal, run_isnet  # noqa: E402
from hostile_files import random_image, write_png  # noqa: E402
from serve_helpers import RECORD, TINY  # noqa: E402

# How describe_file names each kind, when a file of that kind stands under another kind's name.
KIND_WORDS = {
    "safetensors": "it is a safetensors file", "onnx": "it is an ONNX model", "xml": "it is an OpenVINO IR",
    "pt2": "it is a torch.export program", "pth": "it is a PyTorch file", "checkpoint": "it is a training checkpoint",
    "text": "it is not a model file of any known kind", "png": "it is not a model file of any known kind",
}
# What the message of a damaged file of each kind calls it.
DAMAGED_KIND = {"safetensors": "safetensors", "onnx": "ONNX model", "xml": "OpenVINO IR", "bin": "OpenVINO IR"}
PROBLEM_WORDS = ("damaged", "corrupt", "truncated", "not ", "empty", "too short", "missing")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    """One intact file of every kind, for the tiny model with its dataset record."""
    folder = tmp_path_factory.mktemp("zoo")
    model = build_model(TINY).eval()
    model.dataset = RECORD
    files = {"safetensors": save_model(model, folder / "model.safetensors"),
             "onnx": export_onnx(model, folder / "model.onnx", sample_size=(32, 32))}
    files["xml"] = save_ir(core().read_model(str(files["onnx"])), folder / "model.xml", model_metadata(model))
    files["bin"] = folder / "model.bin"
    files["pt2"] = export_program(model, folder / "model.pt2", sample_size=(32, 32))
    files["pth"] = folder / "released.pth"
    torch.save({"state_dict": model.state_dict()}, files["pth"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for iteration in (2, 4):
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                 "rng": [torch.get_rng_state()], "config": TINY.to_json()}
        files[f"checkpoint{iteration}"] = save_training_checkpoint(folder / f"iter_{iteration:08d}.pt", state)
    files["checkpoint"] = files["checkpoint4"]
    files["text"] = folder / "notes.txt"
    files["text"].write_text("these are notes, not a model\n")
    files["png"] = write_png(folder / "street.png", random_image(32, 40))
    return files


def predict_arguments(kind: str, folder: Path, image: Path) -> tuple[list[object], Path]:
    """``isnet predict`` on the model file of ``kind`` in ``folder``, and the file its error must name."""
    output = folder / "out"
    if kind == "safetensors":
        path = folder / "model.safetensors"
        return ["predict", image, "--checkpoint", path, "--output", output], path
    if kind == "onnx":
        path = folder / "model.onnx"
        return ["predict", image, "--runtime", "onnx", "--weights", path, "--output", output], path
    path = folder / "model.xml"  # the IR: its .xml, or its .bin
    return ["predict", image, "--runtime", "openvino", "--weights", path, "--output", output], path


def model_folder(zoo: dict[str, Path], kind: str, folder: Path) -> Path:
    """A fresh folder with the intact files of ``kind`` (an IR: its .xml and .bin)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("xml", "bin") if kind in ("xml", "bin") else (kind,):
        shutil.copy(zoo[name], folder / zoo[name].name)
    return folder


def damaged_model_folder(zoo: dict[str, Path], kind: str, folder: Path, damage: Damage) -> Path:
    """:func:`model_folder` with the file of ``kind`` (for ``bin``: the IR's .bin) damaged."""
    damaged_copy(zoo[kind], model_folder(zoo, kind, folder) / zoo[kind].name, damage)
    return folder


def assert_damage_refused(kind: str, zoo: dict[str, Path], folder: Path, damage: Damage, capfd) -> None:
    arguments, named = predict_arguments(kind, damaged_model_folder(zoo, kind, folder, damage), zoo["png"])
    status, output = run_isnet(arguments, capfd)
    message = refusal(status, output, "predict", named)
    assert DAMAGED_KIND[kind] in message or KIND_WORDS["text"] in message, (str(damage), message)
    assert any(word in message for word in PROBLEM_WORDS), (str(damage), message)
    assert not (folder / "out").exists(), str(damage)


MODEL_KINDS = ("safetensors", "onnx", "xml", "bin")


@pytest.mark.parametrize("kind", MODEL_KINDS[:3])
def test_fuzz_intact_model_files_predict(kind, zoo, tmp_path, capfd):
    """The control: the intact files, sealed, go through the same command and the seal check."""
    arguments, _ = predict_arguments(kind, model_folder(zoo, kind, tmp_path / "m"), zoo["png"])
    status, output = run_isnet(arguments, capfd)
    assert status == 0 and (tmp_path / "m" / "out" / "street_labels.png").is_file(), output[-2000:]


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_fuzz_model_file_emptied_or_cut_is_refused_by_name(kind, zoo, tmp_path, capfd):
    for damage in fixed_damages(zoo[kind].stat().st_size):
        assert_damage_refused(kind, zoo, tmp_path / "m", damage, capfd)


EXAMPLES = {"safetensors": 20, "onnx": 15, "xml": 12, "bin": 10}


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_fuzz_model_file_with_bits_flipped_is_refused_by_name(kind, zoo, tmp_path, capfd):
    @fuzz_settings(EXAMPLES[kind])
    @given(data=st.data())
    def check(data):
        damage = data.draw(damages(zoo[kind].stat().st_size), label="damage")
        assert_damage_refused(kind, zoo, tmp_path / "m", damage, capfd)

    check()


@pytest.mark.parametrize("kind", MODEL_KINDS[:3])
def test_fuzz_model_file_of_another_kind_is_named_as_what_it_is(kind, zoo, tmp_path, capfd):
    for other in ("safetensors", "onnx", "xml", "pt2", "pth", "checkpoint", "text", "png"):
        if other == kind:
            continue
        folder = model_folder(zoo, kind, tmp_path / other)
        shutil.copy(zoo[other], folder / zoo[kind].name)
        arguments, named = predict_arguments(kind, folder, zoo["png"])
        message = refusal(*run_isnet(arguments, capfd), "predict", named)
        assert KIND_WORDS[other] in message, (other, message)


def test_fuzz_ir_without_its_bin_is_refused_by_name(zoo, tmp_path, capfd):
    folder = model_folder(zoo, "xml", tmp_path / "m")
    (folder / "model.bin").unlink()
    arguments, named = predict_arguments("xml", folder, zoo["png"])
    assert refusal(*run_isnet(arguments, capfd), "predict", named).endswith("model.bin is missing beside it")


# --- files read by a library function: .pt2, released .pth, training checkpoints, model directories


def test_fuzz_torch_export_program_damaged_is_refused_or_read_unchanged(zoo, tmp_path):
    """A flip the CRC-32s do not cover (zip padding) changes nothing that is read: then the
    program must compute exactly what the intact one does."""
    intact, metadata = load_program(zoo["pt2"])
    images = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        expected = intact.module()(images)

    @fuzz_settings(15)
    @given(data=st.data())
    def check(data):
        damage = data.draw(damages(zoo["pt2"].stat().st_size), label="damage")
        path = damaged_copy(zoo["pt2"], tmp_path / "model.pt2", damage)
        try:
            program, read = load_program(path)
        except CheckpointError as error:
            assert str(error).startswith(f"{path}: ") and "torch.export program" in str(error), str(error)
            return
        with torch.no_grad():
            assert read == metadata and torch.equal(program.module()(images), expected), str(damage)

    check()
    for damage in fixed_damages(zoo["pt2"].stat().st_size):
        path = damaged_copy(zoo["pt2"], tmp_path / "model.pt2", damage)
        with pytest.raises(CheckpointError, match="torch.export program") as error:
            load_program(path)
        assert str(error.value).startswith(f"{path}: ")


def test_fuzz_released_pth_damaged_is_refused_or_read_unchanged(zoo, tmp_path):
    """``--weights FILE.pth`` and ``--init-from`` read it with ``load_weights``; a flip the
    zip's CRC-32s do not cover must leave every tensor as it was."""
    intact = build_model(TINY)
    load_weights(intact, zoo["pth"])
    expected = intact.state_dict()

    @fuzz_settings(20)
    @given(data=st.data())
    def check(data):
        damage = data.draw(damages(zoo["pth"].stat().st_size), label="damage")
        path = damaged_copy(zoo["pth"], tmp_path / "released.pth", damage)
        model = build_model(TINY)
        try:
            load_weights(model, path)
        except CheckpointError as error:
            assert str(error).startswith(f"{path}: ") and "PyTorch" in str(error), str(error)
            return
        assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items()), str(damage)

    check()


def test_fuzz_damaged_files_in_a_subprocess(zoo, tmp_path):
    """A few of the cases above as a user meets them: ``python -m isnet.cli`` in a subprocess."""
    image = zoo["png"]
    cut = damaged_copy(zoo["safetensors"], tmp_path / "cut.safetensors", Damage("cut", 5000))
    message = first_line(isnet("predict", image, "--checkpoint", cut, "--output", tmp_path / "o1"), "predict", 1)
    assert message.startswith(f"{cut}: truncated safetensors file: its header declares")
    onnx = damaged_copy(zoo["onnx"], tmp_path / "flipped.onnx", Damage("flipped", zoo["onnx"].stat().st_size // 2, 3))
    message = first_line(isnet("predict", image, "--runtime", "onnx", "--weights", onnx, "--output", tmp_path / "o2"),
                         "predict", 1)
    assert message.startswith(f"{onnx}: damaged ONNX model: its bytes do not match its isnet_sha256 seal")
    pth = damaged_copy(zoo["pth"], tmp_path / "flipped.pth", Damage("flipped", zoo["pth"].stat().st_size // 2, 0))
    message = first_line(isnet("predict", image, "--model", "isnet_resnet50os8_lip", "--weights", pth,
                               "--output", tmp_path / "o3"), "predict", 1)
    assert message.startswith(f"{pth}: damaged PyTorch file: its member ") and "fails its CRC-32 check" in message
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))
    flipped = damaged_copy(zoo["safetensors"], tmp_path / "flipped.safetensors", Damage("flipped", 100_000, 5))
    message = first_line(isnet("serve", "--checkpoint", flipped, "--port", "9"), "serve", 1)  # never listens
    assert message.startswith(f"{flipped}: damaged safetensors model file: its bytes do not match its isnet_sha256 seal")


def test_fuzz_training_checkpoint_or_its_checksum_damaged_names_the_real_cause(zoo, tmp_path):
    """What a resumed run reports (``newest_usable_checkpoint``) when its newest checkpoint or
    that checkpoint's sha256 file is damaged: the previous checkpoint is used, and the report
    names the file that is damaged, never a damaged checksum file as a damaged checkpoint."""
    from isnet.training.run_folder import newest_usable_checkpoint

    sizes = {"checkpoint": zoo["checkpoint4"].stat().st_size, "sidecar": len(sidecar_of(zoo["checkpoint4"]).read_bytes())}

    @fuzz_settings(25)
    @given(which=st.sampled_from(["checkpoint", "sidecar", "sidecar"]), data=st.data())
    def check(which, data):
        damage = data.draw(damages(sizes[which]), label="damage")
        run = tmp_path / "run"
        shutil.rmtree(run, ignore_errors=True)
        (run / "checkpoints").mkdir(parents=True)
        for iteration in (2, 4):
            for source in (zoo[f"checkpoint{iteration}"], sidecar_of(zoo[f"checkpoint{iteration}"])):
                shutil.copy(source, run / "checkpoints" / source.name)
        newest = run / "checkpoints" / "iter_00000004.pt"
        target = newest if which == "checkpoint" else sidecar_of(newest)
        damaged_copy(target, target, damage)
        reports: list[str] = []
        path, _ = newest_usable_checkpoint(run, TINY, reports.append)
        assert path.name == "iter_00000002.pt" and len(reports) == 1, (str(damage), reports)
        assert reports[0].startswith(f"cannot resume from {newest}: "), reports[0]
        if which == "sidecar":
            assert sidecar_of(newest).name in reports[0] and "the checkpoint is damaged" not in reports[0], reports[0]
        else:
            assert any(words in reports[0] for words in ("the checkpoint is damaged", "the checkpoint or its checksum")), reports[0]

    check()


def sidecar_of(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".sha256")


def test_fuzz_model_directory_with_a_damaged_config_is_refused_by_name(zoo, tmp_path):
    """``from_pretrained`` checks ``config.json`` against the weights, which carry the same record."""
    model = build_model(TINY).eval()
    model.dataset = RECORD
    directory = save_pretrained(model, tmp_path / "intact")
    config = directory / "config.json"
    size = config.stat().st_size

    @fuzz_settings(20)
    @given(data=st.data())
    def check(data):
        damage = data.draw(damages(size), label="damage")
        damaged = tmp_path / "damaged"
        shutil.rmtree(damaged, ignore_errors=True)
        shutil.copytree(directory, damaged)
        damaged_copy(config, damaged / "config.json", damage)
        try:
            loaded = from_pretrained(damaged)
        except CheckpointError as error:
            assert str(error).startswith(f"{damaged / 'config.json'}: "), str(error)
            return
        # Accepted only where the damage is inside the version string, which is for people to read.
        version = config.read_bytes().split(b'"isnet_version": "')[1].split(b'"')[0]
        start = config.read_bytes().index(version)
        assert damage.kind == "flipped" and start <= damage.offset < start + len(version), str(damage)
        assert loaded.config == TINY and loaded.dataset == RECORD

    check()
    (tmp_path / "no_config").mkdir()
    shutil.copy(directory / "model.safetensors", tmp_path / "no_config")
    with pytest.raises(CheckpointError, match="not a model directory"):
        from_pretrained(tmp_path / "no_config")
