"""Dataset records: everything known about a dataset without reading its files.

One :class:`DatasetInfo` per dataset holds its class names, colours, ignore value, how stored
label values become training values, left/right pairs, input normalisation, test protocol and
the paper's training defaults. Presets, recipes, the command line and the readers take these
facts from the records (:data:`DATASETS`), never from a name string.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Literal

from isnet.inference.engine import MS_SCALES, InferenceConfig
from isnet.data.image import MEAN, STD
from isnet.data.record_rules import record_problems
from isnet.utils.json_text import load_json

RGB = tuple[int, int, int]
Size = tuple[int, int]


@dataclass(frozen=True)
class TestProtocol:
    """How a dataset is tested: the test-time resize and the released multi-scale protocol.

    Images are resized to fit ``fit_size`` (long side, short side) keeping their aspect, or
    to exactly ``resize_to`` (height, width), or kept as they are when both are None; the
    prediction is interpolated back and scored against the original label. ``multi_scale`` is
    the released ms + flip inference (``isnet eval --protocol released``); the single-scale
    protocol is whole-image inference.
    """

    fit_size: Size | None = None
    resize_to: Size | None = None
    multi_scale: InferenceConfig | None = None


@dataclass(frozen=True)
class Schedule:
    """The paper's optimisation schedule for a dataset (SGD, poly decay)."""

    batch_size: int
    lr: float
    weight_decay: float
    max_iters: int


@dataclass(frozen=True)
class TrainingDefaults:
    """The released training data pipeline of a dataset, and where it usually lives.

    ``pipeline``: "scene" (fit ``fit_size`` × a ratio in ``scale_range``, class-balanced crop,
    flip, photometric distortion) or "person" (LIP: exact resize, rotation, left/right swap).
    """

    root: str
    crop_size: Size
    fit_size: Size | None
    scale_range: tuple[float, float] = (0.5, 2.0)
    pipeline: Literal["scene", "person"] = "scene"
    train_split: str = "train"
    val_split: str = "val"
    schedule: Schedule | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """The record of a dataset; classes and colours are indexed by training label value.

    ``flip_pairs`` lists classes that swap under a horizontal flip (e.g. LIP's left and
    right arm); training flips and test-time flip averaging both need them. ``label_mapping``
    says in words how the stored label values become training values (the readers apply it).
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[RGB, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    ignore_index: int = 255  # the stored value of unlabelled pixels; readers map it to data.base.IGNORE_INDEX
    label_mapping: str | None = None  # None: "stored value k is class k; <ignore_index> is ignored"
    mean: tuple[float, ...] = MEAN  # one value per image channel, in the units of the stored pixels
    std: tuple[float, ...] = STD
    test: TestProtocol = TestProtocol()
    training: TrainingDefaults | None = None

    def __post_init__(self) -> None:
        """Every record is checked when it is made, wherever it comes from (:mod:`isnet.data.record_rules`)."""
        if self.label_mapping is None:
            object.__setattr__(self, "label_mapping", f"stored value k is class k; {self.ignore_index} is ignored")
        problems = record_problems(self)
        if problems:
            raise ValueError(f"dataset record {self.name!r}: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """Image channels: 3 (RGB) unless the record's mean and std name others (e.g. RGB + near infrared)."""
        return len(self.mean)

    def to_json(self) -> str:
        """The record as JSON: what checkpoints, exported models and ``dataset.json`` carry, with the
        version of this layout (:data:`RECORD_FORMAT`, under ``isnet_format``)."""
        return json.dumps({RECORD_FORMAT_KEY: RECORD_FORMAT, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatasetInfo:
        """The inverse of :meth:`to_json`; ``ValueError`` for anything that is not such a record."""
        data = load_json(text)
        if not isinstance(data, dict) or not isinstance(data.get("test") or {}, dict):
            raise ValueError("a dataset record is a JSON object (its test protocol too)")
        version = data.pop(RECORD_FORMAT_KEY, 0)  # 0: written before records had a version; read alike
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= RECORD_FORMAT:
            raise ValueError(f"a dataset record of format {version!r}; this version of isnet reads formats up to "
                             f"{RECORD_FORMAT} (a newer isnet wrote it: upgrade isnet)")
        test = dict(data.get("test") or {})
        if test.get("multi_scale") is not None:
            test["multi_scale"] = _build(InferenceConfig, test["multi_scale"])
        training = data.get("training")
        if training is not None:
            training = dict(training)
            if training.get("schedule") is not None:
                training["schedule"] = _build(Schedule, training["schedule"])
            training = _build(TrainingDefaults, training)
        return _build(cls, {**data, "test": _build(TestProtocol, test), "training": training})


RECORD_FORMAT_KEY = "isnet_format"
RECORD_FORMAT = 1  # the layout of to_json; bumped when a reader of the previous one would misread it


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the records hold."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _build(cls: type, data: dict[str, Any]) -> Any:
    known = {item.name for item in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {', '.join(unknown)}")
    missing = [item.name for item in fields(cls)
               if item.name not in data and item.default is MISSING and item.default_factory is MISSING]
    if missing:
        raise ValueError(f"{cls.__name__} needs {', '.join(missing)}")
    return cls(**{key: _tuples(value) for key, value in data.items()})


def make_palette(num_classes: int) -> tuple[RGB, ...]:
    """Distinct, deterministic colours for ``num_classes`` classes (the PASCAL VOC colour map).

    The bits of the class index are spread over the high bits of R, G and B, so neighbouring
    indices get clearly different colours; class 0 is black. Distinct up to 2**24 classes.
    """
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for bit in range(7, -1, -1):
            r |= (c & 1) << bit
            g |= ((c >> 1) & 1) << bit
            b |= ((c >> 2) & 1) << bit
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)


# ADE20K (SceneParsing, ADEChallengeData2016): the 150 classes of objectInfo150 and the
# palette that the segmentation toolboxes share.
ADE20K = DatasetInfo(
    name="ade20k",
    classes=(
        "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
        "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
        "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
        "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
        "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
        "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
        "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
        "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
        "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
        "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
        "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
        "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
        "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
        "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
        "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
        "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
        "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
        "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
    ),
    palette=(
        (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
        (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
        (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
        (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
        (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
        (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
        (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
        (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
        (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
        (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
        (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
        (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
        (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
        (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
        (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
        (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
        (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
        (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
        (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
        (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
        (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
        (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
        (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
        (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
        (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
        (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
        (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
        (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
        (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
        (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
    ),
    label_mapping="stored 0 (other) is ignored; stored k is class k − 1 (reduce zero label)",
    test=TestProtocol(
        fit_size=(2048, 512),
        multi_scale=InferenceConfig(scales=MS_SCALES, flip=True, probs_before_resize=True),
    ),
    training=TrainingDefaults(
        root="data/ADEChallengeData2016",
        crop_size=(512, 512),
        fit_size=(2048, 512),
        schedule=Schedule(batch_size=16, lr=0.01, weight_decay=5e-4, max_iters=160_000),
    ),
)

# Cityscapes: the 19 evaluated classes in trainId order, with the official colours.
CITYSCAPES = DatasetInfo(
    name="cityscapes",
    classes=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
        "bus", "train", "motorcycle", "bicycle",
    ),
    palette=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ),
    label_mapping="labelIds map to the 19 trainIds; every other id is ignored",
    test=TestProtocol(
        fit_size=(2048, 1024),
        multi_scale=InferenceConfig(
            mode="slide", crop=(512, 1024), stride=(341, 341), scales=MS_SCALES, flip=True, probs_before_resize=True
        ),
    ),
    training=TrainingDefaults(
        root="data/cityscapes",
        crop_size=(512, 1024),
        fit_size=(2048, 1024),
        schedule=Schedule(batch_size=16, lr=0.01, weight_decay=5e-4, max_iters=80_000),
    ),
)

# LIP (Look Into Person): 19 body parts and background, in LIP's own colours (those of the
# authors' sssegmentation ``ssseg/modules/datasets/lip.py`` and MMSegmentation's LIPDataset).
LIP = DatasetInfo(
    name="lip",
    classes=(
        "Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat",
        "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
        "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
    ),
    palette=(
        (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
        (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
        (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
    ),
    flip_pairs=((14, 15), (16, 17), (18, 19)),
    test=TestProtocol(
        resize_to=(473, 473),
        multi_scale=InferenceConfig(flip=True, flip_pairs=((14, 15), (16, 17), (18, 19)), probs_before_resize=True),
    ),
    training=TrainingDefaults(
        root="data/LIP",
        crop_size=(473, 473),
        fit_size=(520, 520),
        scale_range=(0.75, 1.25),
        pipeline="person",
        schedule=Schedule(batch_size=32, lr=0.01, weight_decay=5e-4, max_iters=160_000),
    ),
)

# COCO-Stuff: label value k is COCO-Stuff label id k + 1 (labels.txt), i.e. 91 "thing" ids
# (80 used) followed by 91 "stuff" ids. The released ISNet models predict all 182 values.
_COCO_STUFF_182 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "mirror",
    "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "blender", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
    "hair brush",
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence",
    "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog",
    "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud",
    "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic", "platform",
    "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug", "salad",
    "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
    "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other",
    "wood",
)
# The 11 COCO thing ids that were never annotated (street sign, hat, shoe, eye glasses,
# plate, mirror, window, desk, door, blender, hair brush), as 0-based label values.
COCO_STUFF_UNUSED: tuple[int, ...] = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
COCO_STUFF_USED: tuple[int, ...] = tuple(
    k for k in range(len(_COCO_STUFF_182)) if k not in COCO_STUFF_UNUSED
)

_COCO_STUFF_TEST = TestProtocol(
    fit_size=(2048, 512), multi_scale=InferenceConfig(scales=MS_SCALES, flip=True, probs_before_resize=True)
)
COCO_STUFF = DatasetInfo(
    name="cocostuff10k",
    classes=_COCO_STUFF_182,
    palette=make_palette(len(_COCO_STUFF_182)),
    label_mapping="stored 0 (unlabeled) is ignored; stored k is COCO-Stuff label id k, class k − 1",
    test=_COCO_STUFF_TEST,
    training=TrainingDefaults(
        root="data/cocostuff10k",
        crop_size=(512, 512),
        fit_size=(2048, 512),
        val_split="test",
        schedule=Schedule(batch_size=16, lr=0.001, weight_decay=1e-4, max_iters=60_000),
    ),
)
# The 171 annotated classes, in the same order; colours match the 182-class palette.
COCO_STUFF_171 = DatasetInfo(
    name="cocostuff10k_171",
    classes=tuple(COCO_STUFF.classes[k] for k in COCO_STUFF_USED),
    palette=tuple(COCO_STUFF.palette[k] for k in COCO_STUFF_USED),
    label_mapping="stored 0 and the 11 unannotated thing ids are ignored; the 171 others are classes 0..170 in order",
    test=_COCO_STUFF_TEST,
    training=COCO_STUFF.training,
)

# CamVid, 11-class SegNet version; "Unlabelled" (value 11) is ignored.
CAMVID = DatasetInfo(
    name="camvid",
    classes=(
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
        "Pedestrian", "Bicyclist",
    ),
    palette=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
        (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    label_mapping="stored k is class k; 11 (Unlabelled) and 255 are ignored",
    training=TrainingDefaults(root="data/camvid", crop_size=(360, 480), fit_size=(480, 360)),
)


# The datasets with a reader, by the name ``--dataset`` and recipes use.
DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (ADE20K, CITYSCAPES, COCO_STUFF, LIP, CAMVID)}
