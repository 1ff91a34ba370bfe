"""The sha256 sidecar of a training checkpoint (``iter_N.pt.sha256``, ``sha256sum`` format), checked.

A damaged checkpoint and a damaged sidecar are told apart where the bytes allow it, so that a
resumed run names the real cause of setting a checkpoint aside.
"""

from __future__ import annotations

import re
from pathlib import Path

from isnet.utils.atomic_files import checksum_path, file_sha256
from isnet.utils.errors import CheckpointError
from isnet.weights.inspection import zip_damage


def verify_checksum(path: Path) -> None:
    """Raise a :class:`CheckpointError` unless ``path`` matches the sha256 in its sidecar.

    The message says which of the two is damaged as far as the bytes tell: a sidecar that is
    not a ``sha256sum`` line for this file is damaged; a checkpoint whose zip members fail
    their CRC-32 is; otherwise either may be, and the message says so.
    """
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        raise CheckpointError(
            f"{path}: no checksum file {sidecar.name} beside it, so its integrity cannot be verified "
            f"(for a checkpoint known to be good: sha256sum {path.name} > {sidecar.name})"
        )
    try:
        line = sidecar.read_bytes().decode("ascii").removesuffix("\n")  # exactly what sha256sum writes
    except (OSError, UnicodeDecodeError) as error:
        reason = "not text" if isinstance(error, UnicodeDecodeError) else error.strerror or str(error)
        raise CheckpointError(f"{path}: its checksum file {sidecar.name} is damaged ({reason})") from None
    if not line.strip():
        raise CheckpointError(f"{path}: its checksum file {sidecar.name} is empty")
    match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
    if match is None:
        raise CheckpointError(f"{path}: its checksum file {sidecar.name} is damaged (not a sha256sum line: {line[:40]!r})")
    recorded, named = match.groups()
    if named != path.name:
        raise CheckpointError(f"{path}: its checksum file {sidecar.name} is damaged: it records the checksum of {named!r}")
    try:
        actual = file_sha256(path)
    except OSError as error:
        raise CheckpointError(f"{path}: unreadable: {error}") from None
    if actual != recorded:
        mismatch = f"checksum mismatch: the file's sha256 is {actual[:16]}…, {sidecar.name} records {recorded[:16]}…"
        damage = zip_damage(path)
        if damage is not None:
            raise CheckpointError(f"{path}: {mismatch}; the checkpoint is damaged: {damage}")
        raise CheckpointError(  # a change outside the zip members' data, or a changed hex digit of the sidecar
            f"{path}: {mismatch}; the checkpoint or its checksum file is damaged (every member of the checkpoint "
            f"passes its CRC-32, so more likely {sidecar.name})"
        )
