"""The released test protocols, restated step by step from the authors' code, not from ours.

The authors' sssegmentation (github.com/SegmentationBLWX/sssegmentation):
- ``ssseg/modules/models/segmentors/base/base.py``, ``BaseSegmentor.inference``: in ``slide``
  mode each window's logits are interpolated to the window's size, THEN softmaxed (with
  ``use_probs_before_resize``), padded into the image's sum and divided by the window count;
  in ``whole`` mode the head's logits are softmaxed and returned at the head's resolution.
- ``BaseSegmentor.auginference``: each scale (``F.interpolate(scale_factor=s)``) and its
  mirror (left/right class pairs swapped, flipped back) gives one such prediction.
- ``ssseg/test.py``: every prediction is interpolated straight to the original image's
  (the label's) height and width, then averaged; the label is never resized.
- ``ssseg/modules/datasets/lip.py``: LIP's palette.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isnet.data.info import LIP
from isnet.evaluation import evaluate
from isnet.inference.engine import InferenceConfig, predict, slide_inference
from isnet.inference.streaming import stream_slide
from scene_helpers import responsive_model, scene

from isnet.data.image import to_tensor

NUM_CLASSES = 4  # the responsive model's


@pytest.fixture(scope="module")
def model():
    """A tiny model whose labels follow the image, in float64 so that the orders compare to round-off."""
    return responsive_model().double()


def image(height: int, width: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return to_tensor(scene(height, width, seed))[None].to(dtype)


def released_inference(model, images, *, mode, crop=None, stride=None, probs=True):
    """``BaseSegmentor.inference``, restated."""
    if mode == "whole":
        logits = model.logits(images)
        return F.softmax(logits, dim=1) if probs else logits
    stride_h, stride_w = stride
    crop_h, crop_w = crop
    batch, _, image_h, image_w = images.shape
    grids_h = max(image_h - crop_h + stride_h - 1, 0) // stride_h + 1
    grids_w = max(image_w - crop_w + stride_w - 1, 0) // stride_w + 1
    total = images.new_zeros(batch, NUM_CLASSES, image_h, image_w)
    count = images.new_zeros(batch, 1, image_h, image_w)
    for h_index in range(grids_h):
        for w_index in range(grids_w):
            x1, y1 = w_index * stride_w, h_index * stride_h
            x2, y2 = min(x1 + crop_w, image_w), min(y1 + crop_h, image_h)
            x1, y1 = max(x2 - crop_w, 0), max(y2 - crop_h, 0)
            crop_logits = model.logits(images[:, :, y1:y2, x1:x2])
            crop_logits = F.interpolate(crop_logits, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
            if probs:
                crop_logits = F.softmax(crop_logits, dim=1)
            total += F.pad(crop_logits, (x1, image_w - x2, y1, image_h - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def released_test(model, images, label_size, *, scales, flip, flip_pairs=(), **inference):
    """``auginference`` then ``ssseg/test.py``: each prediction resized once, to the label's size."""
    predictions = []
    for scale in scales:
        scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        predictions.append(released_inference(model, scaled, **inference))
        if flip:
            mirrored = released_inference(model, scaled.flip(-1), **inference)
            swapped = mirrored.clone()
            for a, b in flip_pairs:
                swapped[:, a], swapped[:, b] = mirrored[:, b], mirrored[:, a]
            predictions.append(swapped.flip(-1))
    resized = [F.interpolate(p, size=label_size, mode="bilinear", align_corners=False) for p in predictions]
    return sum(resized) / len(resized)


def test_sliding_windows_resize_each_windows_logits_before_the_softmax(model):
    images = image(70, 90)
    window = {"crop": (48, 48), "stride": (32, 32)}
    with torch.no_grad():
        expected = released_inference(model, images, mode="slide", probs=True, **window)
        actual = slide_inference(model, images, probs_before_resize=True, **window)
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
        # The other order (softmax at the head's resolution, then resize) gives other scores.
        logits = model.logits(images[:, :, :48, :48])
        softmax_first = F.interpolate(logits.softmax(1), size=(48, 48), mode="bilinear", align_corners=False)
        resize_first = F.interpolate(logits, size=(48, 48), mode="bilinear", align_corners=False).softmax(1)
    assert (softmax_first - resize_first).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_a_resized_image_is_scored_with_one_resize_to_its_label(model, mode):
    """ADE20K/COCO-Stuff/LIP fit or resize the image, not the label: every prediction goes straight to the label."""
    images = image(56, 72)  # the image after the test resize
    label_size = (75, 97)  # the original image's, the label's
    scales, pairs = (0.75, 1.0, 1.25), ((1, 2),)
    window = {"crop": (40, 40), "stride": (27, 27)} if mode == "slide" else {}
    config = InferenceConfig(mode=mode, scales=scales, flip=True, flip_pairs=pairs, probs_before_resize=True, **window)
    with torch.no_grad():
        expected = released_test(model, images, label_size, scales=scales, flip=True, flip_pairs=pairs, mode=mode, **window)
        actual = predict(model, images, config, output_size=label_size)
        twice = F.interpolate(predict(model, images, config), size=label_size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    assert (twice - expected).abs().max() > 1e-4  # resizing through the image's size is not the same


def test_evaluation_scores_the_prediction_resized_once_to_the_label(model):
    images = image(48, 64)[0]
    label = torch.randint(0, NUM_CLASSES, (61, 83))
    config = InferenceConfig(scales=(0.75, 1.0), flip=True, probs_before_resize=True)
    matrix = evaluate(model, [{"image": images, "label": label}], NUM_CLASSES, config).matrix
    with torch.no_grad():
        expected = released_test(model, images[None], tuple(label.shape), scales=(0.75, 1.0), flip=True, mode="whole")
    predicted = expected.argmax(1)[0]
    expected_matrix = torch.bincount(label.flatten() * NUM_CLASSES + predicted.flatten(), minlength=NUM_CLASSES**2)
    assert torch.equal(matrix, expected_matrix.view(NUM_CLASSES, NUM_CLASSES))


def test_streamed_windows_average_probabilities_as_sliding_windows_do_to_the_bit():
    model = responsive_model(seed=1)
    pixels = image(150, 130, seed=1, dtype=torch.float32)[0]
    crop, stride = (64, 64), (40, 40)
    with torch.no_grad():
        bands = stream_slide(model, 150, 130, lambda a, b: pixels[:, a:b], crop=crop, stride=stride, probs_before_resize=True)
        streamed = torch.cat([scores for _, (scores,) in bands], 1)
        reference = predict(model, pixels[None], InferenceConfig(mode="slide", crop=crop, stride=stride, probs_before_resize=True))[0]
    assert torch.equal(streamed, reference)
    torch.testing.assert_close(streamed.sum(0), torch.ones(150, 130))  # probabilities, averaged


def test_lip_is_coloured_with_lips_own_palette():
    # ssseg/modules/datasets/lip.py (and MMSegmentation's LIPDataset) list these colours.
    released = (
        (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
        (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
        (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
    )
    assert LIP.palette == released
    assert LIP.classes[14:20] == ("Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe")
