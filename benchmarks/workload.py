"""What the benchmarks run on: a ResNet-50-D8 ISNet with informative random weights, and an image.

Random weights with random BatchNorm statistics give degenerate logits (one class
everywhere, near-ties between the rest), which would make SLCM aggregate a single region
and make argmax comparisons meaningless. :func:`benchmark_model` therefore

1. draws the BatchNorm affines at random (the last of each residual branch small, see
   :data:`RESIDUAL_SCALE`) and calibrates every BatchNorm's running statistics on the
   benchmark image (one training-mode forward with momentum 1), so activations keep a
   sane scale through the 50 layers and round-off is not amplified from layer to layer,
   as in a trained network;
2. sets the stage-1 classifier ``D`` to a nearest-centroid classifier over
   :data:`STAGE1_CLASSES` k-means clusters of the features it classifies, so its argmax
   spans many classes (as in the reference fixtures);
3. sets the stage-2 classifier ``O`` to a nearest-centroid classifier over
   :data:`STAGE2_CLASSES` clusters: a scene of a few classes, like a trained model's.

The computation is untouched: only parameter and buffer values are chosen.
"""

from __future__ import annotations

from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.data.image import read_image, to_tensor
from isnet.weights.presets import create_model

# Scale of the last BatchNorm of every residual branch. A deep random network at full scale
# is chaotic (a relative perturbation of 1e-3 at the input of layer1 grows to order 1 by
# layer4), unlike a trained one; small residual branches keep it well conditioned.
RESIDUAL_SCALE = 0.03
# Classes the stage-1 and stage-2 classifiers predict: at least 30 regions for SLCM; a
# street scene has about a dozen classes.
STAGE1_CLASSES = 40
STAGE2_CLASSES = 12

PRESET_FOR_CLASSES = {150: "isnet_resnet50os8_ade20k", 19: "isnet_resnet50os8_cityscapes"}


def benchmark_image(height: int, width: int, batch: int = 1) -> Tensor:
    """The bundled sample photo, resized to ``height``×``width``, normalised, (batch, 3, H, W).

    Later images of a batch are mirrored / shifted copies, so a batch is not one image repeated.
    """
    path = resources.files("isnet") / "assets" / "sample.jpg"
    image = to_tensor(read_image(str(path))).unsqueeze(0)
    image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)
    images = [image, image.flip(-1), image.roll(width // 3, -1), image.flip(-2)]
    return torch.cat([images[i % len(images)] for i in range(batch)])


def benchmark_model(num_classes: int, *, seed: int = 0, calibration_size: tuple[int, int] = (256, 256)) -> nn.Module:
    """A ResNet-50-D8 ISNet (eval mode) whose stage-1 argmax spans many classes (see module doc)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = create_model(PRESET_FOR_CLASSES.get(num_classes, "isnet_resnet50os8_ade20k"), num_classes=num_classes)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    last_norms = {id(m.bn3) for m in model.backbone.modules() if hasattr(m, "bn3")}
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5, generator=generator)
            norm.bias.normal_(0.0, 0.1, generator=generator)
            if id(norm) in last_norms:  # residual branches start small, as in trained ResNets
                norm.weight.mul_(RESIDUAL_SCALE)
    image = benchmark_image(*calibration_size)

    # 1. BatchNorm statistics of this image (momentum 1: running = batch statistics).
    for norm in norms:
        norm.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(torch.cat([image, image.flip(-1)]))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()

    head = model.head
    captured: dict[str, Tensor] = {}
    stage1_classifier = head.classifier_stage1[-1]  # the conv after CBR → Dropout2d
    stage2_classifier = head.decoder.classifier[-1]
    hooks = [
        stage1_classifier.register_forward_hook(lambda m, args, out: captured.__setitem__("stage1", args[0])),
        stage2_classifier.register_forward_hook(lambda m, args, out: captured.__setitem__("stage2", args[0])),
    ]
    try:
        with torch.no_grad():
            # 2. Stage-1 centroids (this changes SLCM's regions, hence the stage-2 features).
            model(image)
            _set_nearest_centroid(stage1_classifier, captured["stage1"], generator, scale=8.0, clusters=STAGE1_CLASSES)
            # 3. Stage-2 centroids.
            model(image)
            _set_nearest_centroid(stage2_classifier, captured["stage2"], generator, scale=8.0, clusters=STAGE2_CLASSES)
    finally:
        for hook in hooks:
            hook.remove()
    return model


def _set_nearest_centroid(
    classifier: nn.Conv2d, features: Tensor, generator: torch.Generator, scale: float, clusters: int
) -> None:
    """``clusters`` classes score ``−scale·‖z − c_k‖²`` (up to a per-pixel constant) for the
    k-means centroids ``c_k`` of the pixels' features; the other classes score far below.

    A scene with a few classes and decision boundaries halfway between them, like a
    trained model's output.
    """
    pixels = features[0].flatten(1).T.float()  # (hw, C)
    num_classes = classifier.out_channels
    centroids = pixels[torch.randperm(len(pixels), generator=generator)[: min(clusters, num_classes)]]
    for _ in range(20):  # Lloyd iterations
        assignment = torch.cdist(pixels, centroids).argmin(dim=1)
        for k in range(len(centroids)):
            members = pixels[assignment == k]
            if len(members):
                centroids[k] = members.mean(dim=0)
    distances = torch.cdist(pixels, centroids).square()
    unit = scale / distances.std().clamp_min(1e-12)
    weight = torch.zeros(num_classes, pixels.shape[1])
    bias = torch.full((num_classes,), -float(distances.max()) * unit)
    classes = torch.randperm(num_classes, generator=generator)[: len(centroids)]
    weight[classes] = 2 * unit * centroids
    bias[classes] = -unit * centroids.square().sum(dim=1)
    classifier.weight.copy_(weight.view_as(classifier.weight))
    classifier.bias.copy_(bias)


def classes_present(logits: Tensor) -> int:
    """Number of distinct argmax classes (over all images and pixels)."""
    return int(torch.unique(logits.argmax(dim=1)).numel())


def region_inputs(
    channels: int, num_classes: int, size: tuple[int, int], present: int, *, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Random features (1, C, h, w) and logits whose argmax covers ``present`` classes in blobs."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    feats = torch.randn(1, channels, height, width, generator=generator)
    logits = torch.randn(1, num_classes, height, width, generator=generator)
    classes = torch.randperm(num_classes, generator=generator)[:present]
    coarse = classes[torch.randint(0, present, (1, 1, max(height // 8, 1), max(width // 8, 1)), generator=generator)]
    blobs = F.interpolate(coarse.float(), size=size, mode="nearest").long()[:, 0]  # (1, h, w)
    logits.scatter_add_(1, blobs.unsqueeze(1), torch.full((1, 1, height, width), 6.0))
    return feats, logits
