"""Every file isnet writes, as an attacker or an accident would meet it (:mod:`isnet.utils.atomic_files`).

A link planted at the real name or at the temporary name is never followed; a fault or a kill
in the middle of a write leaves the old file; a replaced file keeps its permission bits; only
temporary files we can prove are ours are deleted, never a user's ``*.tmp``; the run folder's
lock is never opened through a link. The command-line tests run ``isnet`` in a subprocess, as
a user would.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from isnet.training.run_folder import lock_run_folder, release_run_folder
from isnet.utils import atomic_files
from isnet.utils.atomic_files import (
    atomic_directory,
    atomic_path,
    atomic_paths,
    is_temporary,
    remove_unfinished_writes,
    write_atomically,
)

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet  # noqa: E402
from hostile_files import random_image, write_png  # noqa: E402
from test_reliability_predict import checkpoint  # noqa: E402, F401 (the tiny model, a fixture)

GONE = 4_194_305  # above any Linux pid_max: a process of this pid cannot be alive


def temporaries(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if is_temporary(path))


def planted_link(tmp_path: Path, folder: str, name: str) -> Path:
    """``tmp_path/folder/name``, a link to ``tmp_path/outside.txt`` (which holds "precious"); returns the latter."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / folder / name).symlink_to(outside)
    return outside


# --- the helper, as an attacker meets it -----------------------------------------------------


def test_hostile_link_at_the_real_name_is_refused_and_not_followed(tmp_path):
    outside, folder = planted_link(tmp_path, "out", "result.txt"), tmp_path / "out"
    with pytest.raises(OSError, match="is a symbolic link") as raised:
        write_atomically(folder / "result.txt", lambda temporary: temporary.write_text("attacker's choice"))
    assert raised.value.errno == errno.ELOOP and raised.value.filename == str(folder / "result.txt")
    assert outside.read_text() == "precious" and (folder / "result.txt").is_symlink()
    assert temporaries(folder) == []


def test_hostile_link_planted_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    drawn = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])  # the attacker guessed the first random part
    monkeypatch.setattr(atomic_files.secrets, "token_hex", lambda _: next(drawn))
    planted = folder / f".result.isnet-{os.getpid()}-aaaaaaaaaaaa.partial.txt"
    planted.symlink_to(outside)
    write_atomically(folder / "result.txt", lambda temporary: temporary.write_text("ours"))
    assert outside.read_text() == "precious"
    assert (folder / "result.txt").read_text() == "ours" and not (folder / "result.txt").is_symlink()
    assert planted.is_symlink()  # not ours: left alone


def test_fault_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the old model")

    def write_half(temporary: Path) -> None:
        temporary.write_bytes(b"half of the n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as raised:
        write_atomically(path, write_half)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)  # the real name, not the temporary
    assert path.read_bytes() == b"the old model" and temporaries(tmp_path) == []


def test_fault_killed_in_the_middle_of_a_write_leaves_the_old_file_and_a_provable_leftover(tmp_path):
    path = tmp_path / "labels.png"
    path.write_bytes(b"the old labels")
    program = (
        "import os, signal, sys\n"
        "from isnet.utils.atomic_files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as temporary:\n"
        "    temporary.write_bytes(b'half of the new')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", program, str(path)], env={**os.environ, "PYTHONPATH": "src"})
    assert killed.returncode == -9
    assert path.read_bytes() == b"the old labels"
    [leftover] = temporaries(tmp_path)
    assert remove_unfinished_writes(tmp_path) == [leftover] and temporaries(tmp_path) == []
    assert path.read_bytes() == b"the old labels"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600])
def test_replaced_file_keeps_its_permissions(tmp_path, mode):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old")
    path.chmod(mode)
    previous = os.umask(0o077)  # a umask that would give a new file 0600
    try:
        write_atomically(path, lambda temporary: temporary.write_bytes(b"new"))
    finally:
        os.umask(previous)
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == mode


def test_hostile_users_tmp_files_and_live_writes_are_never_removed(tmp_path):
    users = [tmp_path / name for name in ("notes.tmp", "model.safetensors.tmp", "data.sha256", ".a.partial.png",
                                          ".x.isnet-12-nothex.partial.png")]
    live = tmp_path / f".a.isnet-{os.getpid()}-0123456789ab.partial.png"  # this process is writing it
    ours = tmp_path / f".a.isnet-{GONE}-0123456789ab.partial.png"
    for path in users + [live, ours]:
        path.write_bytes(b"keep?")
    assert remove_unfinished_writes(tmp_path) == [ours]
    assert all(path.exists() for path in users + [live])


def test_fault_in_a_pair_of_files_leaves_both_old_ones(tmp_path):
    xml, weights = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_text("old xml")
    weights.write_text("old bin")
    with pytest.raises(RuntimeError, match="converter failed"):
        with atomic_paths(weights, xml) as (weights_temporary, xml_temporary):
            assert xml_temporary.with_suffix(".bin") == weights_temporary  # OpenVINO puts the .bin beside the .xml
            xml_temporary.write_text("new xml")
            raise RuntimeError("converter failed")
    assert (xml.read_text(), weights.read_text()) == ("old xml", "old bin") and temporaries(tmp_path) == []


def test_fault_in_a_folder_written_whole_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_directory(tmp_path / "converted") as partial:
            (partial / "dataset.json").write_text("{}")
            raise ValueError("a mask could not be read")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(tmp_path / "converted") as partial:
        (partial / "dataset.json").write_text("{}")
    assert [path.name for path in tmp_path.iterdir()] == ["converted"]


def test_hostile_link_at_the_run_lock_is_refused_and_the_target_untouched(tmp_path):
    outside, run = planted_link(tmp_path, "run", ".lock"), tmp_path / "run"
    with pytest.raises(OSError, match="is a symbolic link"):
        lock_run_folder(run)
    assert outside.read_text() == "precious"
    (run / ".lock").unlink()
    os.link(outside, run / ".lock")  # a hard link: the same file under two names
    with pytest.raises(OSError, match="hard link"):
        lock_run_folder(run)
    assert outside.read_text() == "precious"
    (run / ".lock").unlink()
    lock_run_folder(run)
    assert (run / ".lock").read_text() == f"{os.getpid()}\n"
    release_run_folder(run)


def test_atomic_path_yields_an_exclusive_new_file_of_the_real_suffix(tmp_path):
    with atomic_path(tmp_path / "video_labels.mkv") as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".mkv" and is_temporary(temporary)
        assert temporary.stat().st_size == 0 and not temporary.is_symlink()
        temporary.write_bytes(b"frames")
    assert (tmp_path / "video_labels.mkv").read_bytes() == b"frames" and temporaries(tmp_path) == []


# --- the commands, as a user or an attacker meets them ---------------------------------------


def test_fault_export_killed_mid_write_leaves_the_old_model(checkpoint, tmp_path):
    model = tmp_path / "model.onnx"
    first = isnet("export", "--checkpoint", checkpoint, "--output", model, "--size", 32, 32)
    assert first.returncode == 0, first.stderr[-2000:]
    before = model.read_bytes()
    killed = isnet("export", "--checkpoint", checkpoint, "--output", model, "--size", 64, 64,
                   fault=("kill", ".model.isnet-*.partial.onnx"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert model.read_bytes() == before  # the old graph, whole
    assert len(temporaries(tmp_path)) == 1  # the killed write's, with its pid: provably ours


def test_hostile_predict_output_link_is_refused_and_its_target_untouched(checkpoint, tmp_path):
    inputs, output = tmp_path / "in", tmp_path / "out"
    for number, name in enumerate(("a.png", "b.png")):
        write_png(inputs / name, random_image(30, 40, seed=number))
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    output.mkdir()
    (output / "a_labels.png").symlink_to(outside)
    result = isnet("predict", inputs, "--checkpoint", checkpoint, "--output", output)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{output / 'a_labels.png'}: is a symbolic link" in result.stderr
    assert outside.read_text() == "precious" and (output / "a_labels.png").is_symlink()
    assert (output / "b_labels.png").is_file() and (output / "b_overlay.png").is_file()
    assert temporaries(output) == []


def test_hostile_calibrate_refuses_a_linked_checkpoint_and_keeps_permissions(checkpoint, tmp_path):
    from PIL import Image
    from scene_helpers import scene

    data = tmp_path / "data"
    (data / "images" / "val").mkdir(parents=True)
    (data / "masks" / "val").mkdir(parents=True)
    (data / "classes.txt").write_text("\n".join(f"c{k}" for k in range(4)) + "\n")
    for index in range(2):
        Image.fromarray(scene(48, 64, seed=index)).save(data / "images" / "val" / f"{index}.png")
        Image.fromarray(scene(48, 64, seed=index)[..., 0] % 4).save(data / "masks" / "val" / f"{index}.png")
    model = tmp_path / "model.safetensors"
    model.write_bytes(Path(checkpoint).read_bytes())
    model.chmod(0o644)
    link = tmp_path / "link.safetensors"
    link.symlink_to(model)
    arguments = ("--dataset", "folder", "--data-root", data, "--split", "val")
    refused = isnet("calibrate", "--checkpoint", link, *arguments)
    assert first_line(refused, "calibrate", 1).startswith(f"{link}: is a symbolic link")
    assert link.is_symlink() and model.read_bytes() == Path(checkpoint).read_bytes()

    calibrated = isnet("calibrate", "--checkpoint", model, *arguments)
    assert calibrated.returncode == 0, calibrated.stderr[-2000:]
    assert stat.S_IMODE(model.stat().st_mode) == 0o644 and model.read_bytes() != Path(checkpoint).read_bytes()
