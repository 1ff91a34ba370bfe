"""Reading uploads within limits: the request body's size, then the image's pixel count.

An oversized body is refused (413) from its ``Content-Length`` before it is read, or as soon
as a streamed body passes the limit. An image is refused (413) from its header when it
declares more than ``max_pixels`` pixels, before anything is decoded, so a small file that
would decompress to gigabytes (a decompression bomb) costs nothing. Everything else that is
not a usable image is a 400 whose message says what is wrong. Images are decoded by
:func:`isnet.data.image.read_image`, as ``isnet predict`` decodes files (EXIF orientation,
grayscale, palette, 16-bit), so the server and the command see the same pixels.
"""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from isnet.data.image import DataFileError, read_image


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: int, *, streaming: bool = False) -> str:
        size = f"{size:,} bytes or more" if streaming else f"{size:,} bytes"
        return f"request body of {size} is over the server's limit of {self.max_bytes:,} bytes (--max-upload-mb)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"error": self._message(int(declared))}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message(received, streaming=True))
            return message

        await self.app(scope, limited_receive, send)


def _refuse_too_many_pixels(path: str, name: str, max_pixels: int) -> None:
    """413 when the header declares more than ``max_pixels`` pixels; anything else is left to ``read_image``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:
        raise HTTPException(413, f"{name}: refused as a possible decompression bomb: {error}") from None
    except Exception:  # not an image, or a broken one: read_image says which
        return
    if width * height > max_pixels:
        raise HTTPException(
            413, f"{name}: {width}×{height} = {width * height:,} pixels is over the server's limit of {max_pixels:,} "
            "(a decompression bomb?); the server's --max-pixels raises it"
        )


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The uploaded file as (H, W, 3) uint8 RGB, as displayed; HTTP 400 or 413 when it cannot be used."""
    if not data:
        raise HTTPException(400, f"{name}: empty file (0 bytes)")
    # read_image reads files: the same decoding as `isnet predict`, from a temporary copy.
    with tempfile.NamedTemporaryFile(prefix="isnet-upload-") as handle:
        handle.write(data)
        handle.flush()
        _refuse_too_many_pixels(handle.name, name, max_pixels)
        try:
            return read_image(handle.name, max_pixels)
        except DataFileError as error:
            raise HTTPException(400, str(error).replace(handle.name, name)) from None
