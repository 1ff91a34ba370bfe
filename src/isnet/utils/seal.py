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
from typing import Any

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


CHUNK = 1 << 20  # files are read in pieces of this size: a check holds no more than this, whatever the file's size
_LONGEST_MATCH = 128  # longer than any match of the patterns above, kept from one piece to the next


def _matches(path: Path, pattern: re.Pattern[bytes]) -> list[tuple[int, bytes]]:
    """(offset, bytes) of every match of ``pattern`` in the file, read in pieces of :data:`CHUNK` bytes."""
    found: dict[int, bytes] = {}
    with open(path, "rb") as handle:
        offset, buffer = 0, b""  # offset: where buffer starts in the file
        while True:
            piece = handle.read(CHUNK)
            buffer += piece
            for match in pattern.finditer(buffer):
                found.setdefault(offset + match.start(), match.group(0))
            if not piece:
                return sorted(found.items())
            kept = min(len(buffer), _LONGEST_MATCH)
            offset, buffer = offset + len(buffer) - kept, buffer[len(buffer) - kept:]


def _seals(path: Path, low: int = 0, high: int | None = None) -> list[tuple[int, bytes]]:
    """(offset of the 64 digits, the digits) of every seal within ``[low, high)`` of the file."""
    return [(offset + len(text) - 64, text[-64:]) for offset, text in _matches(path, _SEALED)
            if offset >= low and (high is None or offset + len(text) <= high)]


def _update(digest: Any, path: Path, seal_at: int | None = None) -> None:
    """Feed ``path``'s bytes to ``digest`` piece by piece, the 64 digits at ``seal_at`` read as the placeholder."""
    position = 0
    with open(path, "rb") as handle:
        while piece := handle.read(CHUNK):
            end = position + len(piece)
            if seal_at is not None and seal_at < end and seal_at + 64 > position:
                changed = bytearray(piece)
                low, high = max(seal_at, position), min(seal_at + 64, end)
                changed[low - position:high - position] = PLACEHOLDER.encode()[low - seal_at:high - seal_at]
                piece = bytes(changed)
            digest.update(piece)
            position = end


def _digest(path: Path, start: int, companions: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    _update(digest, path, start)
    for companion in companions:
        _update(digest, companion)
    return digest.hexdigest()


def seal(path: Path, companions: Sequence[Path] = ()) -> str:
    """Write the seal over the placeholder that ``path``'s metadata holds under :data:`SEAL_KEY`; returns it."""
    found = [offset for offset, digits in _seals(path) if digits == PLACEHOLDER.encode()]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one {SEAL_KEY} placeholder in the file, found {len(found)}")
    digest = _digest(path, found[0], companions)
    with open(path, "r+b") as handle:
        handle.seek(found[0])
        handle.write(digest.encode())
    return digest


def _section(path: Path, section: tuple[bytes, bytes]) -> tuple[int, int | None] | None:
    """Where ``section`` (start and end markers) lies in the file: (start, end or None for the file's end), or None."""
    starts = _matches(path, re.compile(re.escape(section[0])))
    if not starts:
        return None
    low = starts[0][0]
    ends = [offset for offset, _ in _matches(path, re.compile(re.escape(section[1]))) if offset >= low]
    return low, (ends[0] if ends else None)


def check_seal(path: Path, companions: Sequence[Path] = (), section: tuple[bytes, bytes] | None = None) -> bool:
    """Whether ``path`` is sealed (False: a file written before seals, or by another program).

    Raises :class:`SealBroken` when the file (or a companion) differs from what was sealed,
    or when the seal itself is damaged. ``section`` (start and end markers) limits where the
    seal is looked for: an OpenVINO IR also holds, elsewhere, a copy of the metadata of the
    ONNX graph it was converted from, whose seal is that graph's. The files are read in
    pieces (:data:`CHUNK`): the check takes little memory, whatever their size.
    """
    low, high = 0, None
    if section is not None:
        bounds = _section(path, section)
        if bounds is None:
            return False
        low, high = bounds
    found = _seals(path, low, high)
    if not found:
        if any(offset >= low and (high is None or offset + len(text) <= high)
               for offset, text in _matches(path, _KEY_ONE_OFF)):
            raise SealBroken(f"its {SEAL_KEY} seal is damaged")
        return False
    if len(found) > 1:
        raise SealBroken(f"it holds {len(found)} {SEAL_KEY} seals")
    start, recorded = found[0]
    if not re.fullmatch(rb"[0-9a-f]{64}", recorded):
        raise SealBroken(f"its {SEAL_KEY} seal is damaged (not 64 hex digits)")
    missing = [companion.name for companion in companions if not companion.is_file()]
    if missing:
        raise SealBroken(f"{', '.join(missing)} is missing beside it")
    actual = _digest(path, start, companions)
    if actual != recorded.decode():
        files = " or ".join([path.name, *(companion.name for companion in companions)])
        raise SealBroken(
            f"its bytes do not match its {SEAL_KEY} seal (sha256 {actual[:12]}…, sealed {recorded.decode()[:12]}…): "
            f"{files} was truncated or changed after it was written"
        )
    return True
