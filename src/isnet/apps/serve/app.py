"""The ASGI application (``create_app``) and the server that runs it (``run``).

Routes: ``POST /predict`` (multipart field ``image``; answers the label map, the overlay or
JSON, see :mod:`isnet.apps.serve.responses`), ``GET /`` (the web page), ``GET /healthz`` and
``POST /`` (the Hugging Face Inference API's image-segmentation shape, :mod:`isnet.apps.serve.hf_inference`).
Uploads are decoded in worker threads, the model runs in the batcher's thread
(:mod:`isnet.apps.serve.batching`), so the event loop only moves bytes and keeps answering
``/healthz`` while the model works. Errors are JSON ``{"error": message}`` with a 4xx
status that says whose fault it is: 400 not an image or a malformed upload, 406 unmet
``Accept``, 408 a body too slow, 413 too large, 415 not a multipart upload, 431 headers too
large, 503 queue full (with ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import resources

import numpy as np
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from torch import Tensor, nn

from isnet.apps.predict_files import model_inputs, model_normalisation, predict_on_model_device
from isnet.apps.serve.batching import DynamicBatcher, QueueFullError
from isnet.apps.serve.hf_inference import HFInference
from isnet.apps.serve.responses import (
    MEDIA_TYPES,
    areas_json,
    choose_format,
    labels_png,
    overlay_png,
)
from isnet.apps.serve.slow_clients import HeaderTimeoutProtocol, RequestLimits
from isnet.apps.serve.uploads import BodySizeLimit, decode_upload
from isnet.data.transforms import evaluation_transforms
from isnet.inference.engine import InferenceConfig
from isnet.inference.predictor import Predictor, as_predictor

# The page runs only what the server sends: inline script and style, images from data URLs.
PAGE_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'"
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching of the server; ``inference`` is how each image is predicted."""

    max_batch: int = 8  # images of one size in one model call
    max_wait_ms: float = 5.0  # how long the oldest request waits for others to join its batch
    max_queue: int = 32  # requests waiting for the model; more get 503
    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 4096 * 4096
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    resize: tuple = (None, None)  # the test resize (fit_size, resize_to): isnet.data.transforms.evaluation_transforms
    request_timeout_s: float = 30.0  # for a request's headers, and then for its body (slow clients: slow_clients.py)
    max_header_bytes: int = 32 * 2**10


def _error(request: Request, error: HTTPException) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


async def _read_upload(request: Request) -> tuple[bytes, str]:
    """The bytes and file name of the multipart field ``image``."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, "send the image as multipart/form-data in the field 'image', e.g. curl -F image=@photo.jpg")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException as error:  # Starlette's words for a malformed body ("Missing boundary in multipart.")
        if error.status_code != 400:
            raise
        raise HTTPException(400, f"malformed multipart/form-data upload: {error.detail} Send one file in the field "
                                 "'image', e.g. curl -F image=@photo.jpg") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "no file in the multipart field 'image', e.g. curl -F image=@photo.jpg")
        return await upload.read(), upload.filename or "upload"
    finally:
        await form.close()


def create_app(
    model: Predictor | nn.Module,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    config: ServeConfig = ServeConfig(),
) -> Starlette:
    """An ASGI app serving ``model`` (a predictor of :func:`isnet.deploy.load_predictor`, or a segmentor);
    ``classes`` and ``palette`` name its outputs."""
    model = as_predictor(model)
    mean, std = model_normalisation(model)
    test_resize = evaluation_transforms(*config.resize)

    def predict_batch(images: Tensor) -> Tensor:  # (N, H, W, 3) uint8 images of one size, labelled as isnet predict does
        arrays = list(images.numpy())
        scores = predict_on_model_device(model, model_inputs(arrays, mean, std, test_resize), config.inference,
                                         size=arrays[0].shape[:2])
        return scores.argmax(dim=1).to(torch.uint8 if len(classes) <= 256 else torch.int32)

    batcher = DynamicBatcher(
        predict_batch, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000, max_queue=config.max_queue
    )
    hf_inference = HFInference(model, classes, config, test_resize)  # POST /: the Hugging Face Inference API's shape
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({
            "status": "ok", "classes": list(classes),
            "queued": batcher.queued, "running": batcher.running, "max_queue": batcher.max_queue,
            "max_batch": batcher.max_batch, "batches": batcher.batches, "images": batcher.images,
        })

    def decode(data: bytes, name: str) -> tuple[np.ndarray, Tensor]:
        image = decode_upload(data, name, config.max_pixels)
        return image, torch.from_numpy(image)  # resized and normalised in the batch, as isnet predict does

    def render(fmt: str, image: np.ndarray, labels: np.ndarray, name: str, embed_overlay: bool) -> Response:
        if fmt == "json":
            return JSONResponse(areas_json(image, labels, classes, palette, embed_overlay=embed_overlay))
        if fmt == "overlay":
            return Response(overlay_png(image, labels, classes, palette, title=name), media_type=MEDIA_TYPES[fmt])
        return Response(labels_png(labels, palette), media_type=MEDIA_TYPES[fmt])

    async def predict(request: Request) -> Response:
        fmt = choose_format(request.query_params.get("format"), request.headers.get("accept"))
        data, name = await _read_upload(request)
        image, tensor = await run_in_threadpool(decode, data, name)
        try:
            labels = await batcher.predict(tensor)
        except QueueFullError as error:
            raise HTTPException(503, f"busy: {error}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        embed_overlay = request.query_params.get("overlay", "") in ("1", "true")
        return await run_in_threadpool(render, fmt, image, labels.numpy(), name, embed_overlay)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        batcher.start()
        hf_inference.batcher.start()
        yield
        await run_in_threadpool(batcher.close)  # answers what is still queued
        await run_in_threadpool(hf_inference.batcher.close)

    return Starlette(
        routes=[Route("/", index), Route("/healthz", healthz), Route("/predict", predict, methods=["POST"]),
                hf_inference.route],
        middleware=[Middleware(RequestLimits, timeout_s=config.request_timeout_s, max_header_bytes=config.max_header_bytes),
                    Middleware(BodySizeLimit, max_bytes=config.max_upload_bytes)],
        exception_handlers={HTTPException: _error},
        lifespan=lifespan,
    )


def run(app: Starlette, host: str = "127.0.0.1", port: int = 8000, *, graceful_timeout_s: float = 60,
        request_timeout_s: float = ServeConfig.request_timeout_s) -> None:
    """Serve ``app`` with uvicorn until SIGINT or SIGTERM; requests in flight then finish (up to ``graceful_timeout_s``).

    A connection whose request headers take over ``request_timeout_s`` is closed
    (:class:`~isnet.apps.serve.slow_clients.HeaderTimeoutProtocol`).
    """
    import uvicorn

    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=graceful_timeout_s, log_level="info",
                http=partial(HeaderTimeoutProtocol, header_timeout_s=request_timeout_s))
