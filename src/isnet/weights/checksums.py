"""The sha256 sidecar of a training checkpoint (``iter_N.pt.sha256``, ``sha256sum`` format), checked.

A damaged checkpoint and a damaged sidecar are told apart where the bytes allow it, so that a
resumed run names the real cause of setting a checkpoint aside.
"""

from __future__ import annotations

import re
from pathlib import Path

from isnet.utils.atomic_files import checksum_path, file_sha256
from isnet.utils.errors import CheckpointError
from isnet.weights.inspection import require_intact_zip


def verify_checksum(path: Path) -> None:
    """Raise a :class:`CheckpointError` unless ``path`` matches the sha256 in its sidecar.

    The message says which of the two is damaged when that can be told: a sidecar that is not
    a ``sha256sum`` line, or one that disagrees with a checkpoint whose zip members all pass
    their CRC-32, is named as the damaged one.
    """
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        raise CheckpointError(
            f"{path}: no checksum file {sidecar.name} beside it, so its integrity cannot be verified "
            f"(for a checkpoint known to be good: sha256sum {path.name} > {sidecar.name})"
        )
    try:
        line = sidecar.read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = "not text" if isinstance(error, UnicodeDecodeError) else error.strerror or str(error)
        raise CheckpointError(f"{path}: its checksum file {sidecar.name} is damaged ({reason})") from None
    if not line:
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
        try:
            require_intact_zip(path, "training checkpoint")
        except CheckpointError:
            raise CheckpointError(
                f"{path}: checksum mismatch: the file's sha256 is {actual[:16]}…, {sidecar.name} records "
                f"{recorded[:16]}…; the file is truncated or corrupt"
            ) from None
        raise CheckpointError(
            f"{path}: checksum mismatch: the file's sha256 is {actual[:16]}…, {sidecar.name} records {recorded[:16]}…, "
            f"but every member of the checkpoint passes its CRC-32: the checksum file is likely the damaged one"
        )
