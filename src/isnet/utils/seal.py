"""A file's seal: the sha256 of its own bytes, written inside the file.

A safetensors model file, an ONNX graph or an OpenVINO IR carries, in its metadata, the entry
``isnet_sha256``: the sha256 of the file's bytes (with the seal's 64 hex digits read as
zeros) followed by those of its companions (an IR's ``.bin``). A flipped bit or a cut
anywhere in the file or its companions then no longer matches, where the formats themselves
would load the changed weights without a word. The seal is written last, over a placeholder
of the same length, so no offset or length field of the format changes.

Why not a sidecar (as training checkpoints have): these are the files people copy, upload and
download one at a time; a seal inside the file travels with it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

SEAL_KEY = "isnet_sha256"
PLACEHOLDER = "0" * 64  # what the metadata holds while the digest is computed
# How each format stores a metadata value after its key: safetensors JSON ("key":"value", or
# re-encoded with a space),
# an ONNX metadata property (protobuf field 2, 64 bytes), an OpenVINO rt_info attribute.
_SEPARATORS = (b'":"', b'": "', b"\x12\x40", b' value="')
_SEALED = re.compile(re.escape(SEAL_KEY.encode()) + b"(?:" + b"|".join(map(re.escape, _SEPARATORS)) + b")(.{64})", re.DOTALL)
# The key with any one byte changed: a damaged seal, not a file without one.
_KEY_ONE_OFF = re.compile(b"|".join(
    re.escape(SEAL_KEY[:i].encode()) + b"." + re.escape(SEAL_KEY[i + 1:].encode()) for i in range(len(SEAL_KEY))
), re.DOTALL)


class SealBroken(ValueError):
    """The file does not match its seal: changed after it was written (the message says how)."""


def _digest(data: bytes, start: int, companions: Sequence[Path]) -> str:
    digest = hashlib.sha256(data[:start] + PLACEHOLDER.encode() + data[start + 64:])
    for companion in companions:
        digest.update(companion.read_bytes())
    return digest.hexdigest()


def seal(path: Path, companions: Sequence[Path] = ()) -> str:
    """Write the seal over the placeholder that ``path``'s metadata holds under :data:`SEAL_KEY`; returns it."""
    data = path.read_bytes()
    found = [match for match in _SEALED.finditer(data) if match.group(1) == PLACEHOLDER.encode()]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one {SEAL_KEY} placeholder in the file, found {len(found)}")
    start = found[0].start(1)
    digest = _digest(data, start, companions)
    with open(path, "r+b") as handle:
        handle.seek(start)
        handle.write(digest.encode())
    return digest


def check_seal(path: Path, companions: Sequence[Path] = (), section: tuple[bytes, bytes] | None = None) -> bool:
    """Whether ``path`` is sealed (False: a file written before seals, or by another program).

    Raises :class:`SealBroken` when the file (or a companion) differs from what was sealed,
    or when the seal itself is damaged. ``section`` (start and end markers) limits where the
    seal is looked for: an OpenVINO IR also holds, elsewhere, a copy of the metadata of the
    ONNX graph it was converted from, whose seal is that graph's.
    """
    data = path.read_bytes()
    low, high = 0, len(data)
    if section is not None:
        low = data.find(section[0])
        if low < 0:
            return False
        high = data.find(section[1], low)
        high = len(data) if high < 0 else high
    found = list(_SEALED.finditer(data, low, high))
    if not found:
        if _KEY_ONE_OFF.search(data, low, high):
            raise SealBroken(f"its {SEAL_KEY} seal is damaged")
        return False
    if len(found) > 1:
        raise SealBroken(f"it holds {len(found)} {SEAL_KEY} seals")
    recorded = found[0].group(1)
    if not re.fullmatch(rb"[0-9a-f]{64}", recorded):
        raise SealBroken(f"its {SEAL_KEY} seal is damaged (not 64 hex digits)")
    missing = [companion.name for companion in companions if not companion.is_file()]
    if missing:
        raise SealBroken(f"{', '.join(missing)} is missing beside it")
    actual = _digest(data, found[0].start(1), companions)
    if actual != recorded.decode():
        files = " or ".join([path.name, *(companion.name for companion in companions)])
        raise SealBroken(
            f"its bytes do not match its {SEAL_KEY} seal (sha256 {actual[:12]}…, sealed {recorded.decode()[:12]}…): "
            f"{files} was truncated or changed after it was written"
        )
    return True
