"""The Hugging Face Inference ``image-segmentation`` API on ``POST /``, so that its clients work unchanged.

Request, as the Inference API and Inference Endpoints take it (and as ``huggingface_hub``'s
``InferenceClient(model="http://host:port/").image_segmentation(...)`` sends it): the raw
image bytes as the body (any ``Content-Type`` but JSON), or JSON ``{"inputs": "<base64
image>", "parameters": {...}}`` (a ``data:image/...;base64,`` prefix is accepted). The
parameters of instance and panoptic segmentation (``threshold``, ``mask_threshold``,
``overlap_mask_area_threshold``, ``subtask``) do not apply to semantic segmentation and are
ignored, as the ``transformers`` pipeline ignores them for a semantic model.

Response: a JSON list, one entry per class present in the image, in class order:
``{"label": class name, "score": float, "mask": "<base64 PNG>"}``; the mask is an 8-bit
greyscale PNG of the image's size, 255 where the class was predicted and 0 elsewhere (as
the ``transformers`` pipeline encodes it). The score, which the pipeline leaves empty for a
semantic model, is here the mean confidence (the probability of the predicted class, with
the temperature of ``isnet calibrate`` when the model has one) over the class's pixels.
Errors are ``{"error": message}`` with the same 4xx statuses as ``POST /predict``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

import numpy as np
import torch
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from torch import Tensor, nn

from isnet.apps.predict_files import model_inputs, model_normalisation, predict_on_model_device
from isnet.apps.serve.batching import DynamicBatcher, QueueFullError
from isnet.apps.serve.responses import png_bytes
from isnet.apps.serve.uploads import decode_upload
from isnet.data.base import Transform
from isnet.inference.predictor import Predictor
from isnet.inference.temperature import max_probability
from isnet.utils.json_text import load_json


def _image_bytes(body: bytes, content_type: str) -> bytes:
    """The image of a request: the body itself, or the base64 ``inputs`` of a JSON body."""
    if not content_type.split(";")[0].strip().lower() == "application/json":
        return body
    try:
        payload = load_json(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"the JSON body does not parse: {error}") from None
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, str):
        raise HTTPException(400, 'send {"inputs": "<base64 image>"}, or the image bytes themselves as the body')
    if inputs.startswith("data:") and "," in inputs:
        inputs = inputs.split(",", 1)[1]
    try:
        return base64.b64decode(inputs, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, '"inputs" is not base64: send the image as base64, or as the raw body') from None


def segments(labels: np.ndarray, confidence: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """One ``{label, score, mask}`` per class present, in class order."""
    answer = []
    for index in np.unique(labels):
        mask = labels == index
        answer.append({
            "label": classes[int(index)],
            "score": float(confidence[mask].mean()),
            "mask": base64.b64encode(png_bytes(mask.astype(np.uint8) * 255)).decode("ascii"),
        })
    return answer


class HFInference:
    """``POST /`` in the Inference API's shape; its batcher is started and closed with the app's."""

    def __init__(self, model: Predictor | nn.Module, classes: Sequence[str], config, resize: Transform) -> None:
        normalisation = model_normalisation(model)  # as isnet predict normalises for this model

        def predict_batch(images: Tensor) -> Tensor:  # (N, H, W, 3) uint8 images of one size
            arrays = list(images.numpy())
            scores = predict_on_model_device(model, model_inputs(arrays, *normalisation, resize), config.inference,
                                             size=arrays[0].shape[:2])
            labels = scores.argmax(dim=1).to(torch.float32)
            return torch.stack([labels, max_probability(scores, config.inference)], dim=1)

        self.batcher = DynamicBatcher(predict_batch, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000,
                                      max_queue=config.max_queue)
        self.classes, self.config = list(classes), config
        self.route = Route("/", self.answer, methods=["POST"])

    async def answer(self, request: Request) -> JSONResponse:
        data = _image_bytes(await request.body(), request.headers.get("content-type", ""))
        image = await run_in_threadpool(decode_upload, data, "inputs", self.config.max_pixels)
        try:
            result = await self.batcher.predict(torch.from_numpy(image))
        except QueueFullError as error:
            raise HTTPException(503, f"busy: {error}; retry shortly", headers={"Retry-After": "1"}) from None
        labels, confidence = result[0].to(torch.int32).numpy(), result[1].numpy()  # exact: 65,536 classes at most
        return JSONResponse(await run_in_threadpool(segments, labels, confidence, self.classes))
