"""Files written complete or not at all: a killed process, a full disk or a refused write
never leaves half a file under the real name.

``write_atomically`` writes ``<name>.tmp``, flushes it to the disk and renames it into place;
with a checksum, the sha256 sidecar ``<name>.sha256`` (``sha256sum`` format) is in place
before the file is. ``remove_unfinished_writes`` deletes what a killed write left behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from isnet.utils.errors import os_error_behind

CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path: Path) -> Path:
    """The sha256 sidecar of ``path``: ``<name>.sha256``, in ``sha256sum`` format."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: str | Path, write: Callable[[Path], Any], *, checksum: bool = False) -> Path:
    """Write ``path`` so that it is complete or absent, whenever the process is killed.

    ``write(temporary)`` fills ``<name>.tmp`` beside ``path``; it is flushed to disk and renamed
    over ``path`` (a rename within a folder is atomic). With ``checksum`` the file's sha256 is
    written to ``<name>.sha256`` and put in place *before* the rename, so every complete file
    has its checksum; a kill in between leaves a checksum without its file, which
    ``remove_unfinished_writes`` deletes along with ``.tmp`` files.

    A write that fails (a full disk, a refused permission) leaves nothing behind and raises
    an ``OSError`` naming ``path`` and the cause (``no space left on device (ENOSPC)``).
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    sidecar = checksum_path(path)
    sidecar_temporary = sidecar.with_name(sidecar.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(temporary)
        _fsync(temporary)
        if checksum:
            sidecar_temporary.write_text(f"{file_sha256(temporary)}  {path.name}\n")
            _fsync(sidecar_temporary)
            os.replace(sidecar_temporary, sidecar)
            _fsync(path.parent)
        os.replace(temporary, path)
        _fsync(path.parent)
    except Exception as error:
        for leftover in (temporary, sidecar_temporary) + ((sidecar,) if checksum and not path.exists() else ()):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        cause = os_error_behind(error)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from error
    return path


def remove_unfinished_writes(folder: Path) -> list[Path]:
    """Delete what a killed ``write_atomically`` left in ``folder``; return the deleted paths."""
    if not folder.is_dir():
        return []
    unfinished = sorted(folder.glob("*.tmp"))
    unfinished += [
        sidecar
        for sidecar in sorted(folder.glob("*" + CHECKSUM_SUFFIX))
        if not sidecar.with_name(sidecar.name.removesuffix(CHECKSUM_SUFFIX)).exists()
    ]
    for path in unfinished:
        path.unlink(missing_ok=True)
    return unfinished


@contextmanager
def building_folder(output: Path) -> Iterator[Path]:
    """A new hidden folder beside ``output`` to fill inside the ``with``: renamed to ``output`` when the
    block ends, removed with what it holds when the block raises, so ``output`` is complete or absent.

    ``output`` must be absent or an empty folder (the caller checks, and says so in its words).
    """
    import shutil
    import tempfile

    output.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        yield building
        if output.exists():
            output.rmdir()
        os.replace(building, output)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
