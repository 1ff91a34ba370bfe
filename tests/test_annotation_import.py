"""``isnet data convert --from TOOL``: annotation tools' exports to folder datasets, masks checked pixel for pixel.

COCO files are written with pycocotools (polygons, uncompressed and compressed RLE) and the
expected masks are pycocotools' own decoding; the Label Studio brush RLE fixture was written by
label-studio-sdk's encoder (tests/fixtures/labelling/make_labelstudio_brush.py); a CVAT XML file
and a "Segmentation mask" export were written by datumaro, the library CVAT exports with
(make_cvat_xml.py, make_cvat_masks.py), beside datumaro's own decoding of them. The other CVAT,
LabelMe and VOC files are built to their published layouts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_message, isnet
from PIL import Image

coco_mask = pytest.importorskip("pycocotools.mask")

FIXTURES = Path(__file__).parent / "fixtures" / "labelling"
H, W = 9, 13


def _image(path: Path, height: int = H, width: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: runs of 0 then 1 ..., column by column."""
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def test_coco_polygons_and_both_rles_match_pycocotools_later_on_top(tmp_path):
    export = tmp_path / "export"
    _image(export / "images" / "a.png")
    _image(export / "images" / "b.png")
    y, x = np.mgrid[:H, :W]
    road = (y >= 5).astype(np.uint8)
    sky = (y <= 2).astype(np.uint8)
    compressed = coco_mask.encode(np.asfortranarray(sky))
    polygon = [1.0, 1.0, 8.0, 1.0, 8.0, 7.0, 1.0, 7.0]
    assert coco_mask.decode(coco_mask.frPyObjects({"counts": _uncompressed(road), "size": [H, W]}, H, W)).tolist() \
        == road.tolist()
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W},
                   {"id": 2, "file_name": "b.png", "height": H, "width": W},
                   {"id": 3, "file_name": "gone.png", "height": H, "width": W}],
        "categories": [{"id": 7, "name": "car"}, {"id": 3, "name": "road"}, {"id": 9, "name": "sky"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "segmentation": {"counts": _uncompressed(road), "size": [H, W]}},
            {"id": 2, "image_id": 1, "category_id": 7, "segmentation": [polygon]},  # later: on top of the road
            {"id": 3, "image_id": 1, "category_id": 9,
             "segmentation": {"counts": compressed["counts"].decode("ascii"), "size": [H, W]}, "iscrowd": 1},
            {"id": 4, "image_id": 2, "category_id": 99, "segmentation": [polygon]},
        ],
    }
    (export / "instances.json").write_text(json.dumps(data))
    result = isnet("data", "convert", export / "instances.json", tmp_path / "out", "--from", "coco")
    assert result.returncode == 1, result.stderr  # two images left out
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert record["classes"] == ["background", "road", "car", "sky"]  # categories in id order
    expected = np.zeros((H, W), np.uint8)
    for label, rle in ((1, coco_mask.frPyObjects({"counts": _uncompressed(road), "size": [H, W]}, H, W)),
                       (2, coco_mask.merge(coco_mask.frPyObjects([polygon], H, W))),
                       (3, {"counts": compressed["counts"], "size": [H, W]})):
        expected[coco_mask.decode(rle).astype(bool)] = label
    assert _mask(tmp_path / "out" / "masks" / "train" / "a.png").tolist() == expected.tolist()
    assert "a.png: 'car' painted over 'road' on" in result.stdout and "(later on top)" in result.stdout
    assert "b.png: unknown label(s) 'category id 99'; left out" in result.stderr
    assert "gone.png: image not found in" in result.stderr
    assert not (tmp_path / "out" / "images" / "train" / "b.png").exists()
    assert "isnet data check" in result.stdout


def test_labelstudio_brush_from_the_sdk_and_polygons(tmp_path):
    spec = importlib.util.spec_from_file_location("make_brush", FIXTURES / "make_labelstudio_brush.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    fixture = json.loads((FIXTURES / "labelstudio_brush.json").read_text())
    masks = maker.masks(fixture["height"], fixture["width"])
    _image(tmp_path / "uploads" / "a.png")
    size = {"original_width": W, "original_height": H}
    brush = [{"type": "brushlabels", **size, "value": {"format": "rle", "rle": fixture["rle"][name], "brushlabels": [name]}}
             for name in ("road", "car")]
    polygon = {"type": "polygonlabels", **size,
               "value": {"points": [[0, 0], [50, 0], [50, 50], [0, 50]], "polygonlabels": ["sign"]}}
    tasks = [{"id": 1, "data": {"image": "/data/upload/3/0a1b2c3d-a.png"},
              "annotations": [{"result": [*brush, polygon]}]},
             {"id": 2, "data": {"image": "/data/upload/3/beefbeef-missing.png"}, "annotations": [{"result": brush}]}]
    (tmp_path / "project.json").write_text(json.dumps(tasks))
    result = isnet("data", "convert", tmp_path / "project.json", tmp_path / "out", "--from", "labelstudio",
                   "--images", tmp_path / "uploads")
    assert result.returncode == 1 and "missing.png: image not found" in result.stderr, result.stderr
    classes = json.loads((tmp_path / "out" / "dataset.json").read_text())["classes"]
    assert classes == ["background", "road", "car", "sign"]
    expected = np.zeros((H, W), np.uint8)
    expected[masks["road"] > 0] = 1
    expected[masks["car"] > 0] = 2
    expected[coco_mask.decode(coco_mask.frPyObjects([[0, 0, 6.5, 0, 6.5, 4.5, 0, 4.5]], H, W))[..., 0] > 0] = 3
    assert _mask(tmp_path / "out" / "masks" / "train" / "a.png").tolist() == expected.tolist()


def test_labelstudio_codec_reads_the_sdk_and_writes_what_it_reads():
    from isnet.data.formats.labelstudio import decode_rle, mask_rle, rle_mask

    fixture = json.loads((FIXTURES / "labelstudio_brush.json").read_text())
    spec = importlib.util.spec_from_file_location("make_brush", FIXTURES / "make_labelstudio_brush.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    for name, mask in maker.masks(fixture["height"], fixture["width"]).items():
        assert decode_rle(fixture["rle"][name]).tolist() == np.repeat(mask.ravel(), 4).tolist()
        long_runs = np.zeros((300, 310), bool)
        long_runs[100:, 7:] = True  # runs over 2**16 values are split
        for case in (mask > 0, long_runs):
            assert rle_mask(mask_rle(case), *case.shape).tolist() == case.tolist()


def test_cvat_xml_polygons_boxes_masks_by_z_order(tmp_path):
    _image(tmp_path / "images" / "a.png")
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
<meta><task><labels>
  <label><name>car</name><color>#fa3253</color></label>
  <label><name>road</name><color>#00ff00</color></label>
</labels></task></meta>
<image id="0" name="a.png" width="{W}" height="{H}">
  <mask label="car" source="manual" occluded="0" rle="1, 2, 3, 2" left="2" top="1" width="4" height="2" z_order="1"/>
  <polygon label="road" occluded="0" points="0.0,4.0;12.0,4.0;12.0,8.0;0.0,8.0" z_order="0"/>
  <box label="car" occluded="0" xtl="9" ytl="0" xbr="12" ybr="2" z_order="0"/>
</image>
<image id="1" name="b.png" width="{W}" height="{H}"><polygon label="tree" points="0,0;3,0;3,3"/></image>
</annotations>"""
    (tmp_path / "annotations.xml").write_text(xml)
    result = isnet("data", "convert", tmp_path / "annotations.xml", tmp_path / "out", "--from", "cvat")
    assert result.returncode == 1 and "b.png: unknown label(s) 'tree'; left out" in result.stderr, result.stderr
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert record["classes"] == ["background", "car", "road"]
    assert [tuple(c) for c in record["palette"][1:]] == [(250, 50, 83), (0, 255, 0)]
    expected = np.zeros((H, W), np.uint8)
    expected[coco_mask.decode(coco_mask.frPyObjects([[0, 4, 12, 4, 12, 8, 0, 8]], H, W))[..., 0] > 0] = 2
    expected[coco_mask.decode(coco_mask.frPyObjects([[9, 0, 12, 0, 12, 2, 9, 2]], H, W))[..., 0] > 0] = 1
    box = np.zeros(8, bool)
    box[1:3] = box[6:8] = True  # runs 1 off, 2 on, 3 off, 2 on over the 4×2 box
    expected[1:3, 2:6][box.reshape(2, 4)] = 1
    assert _mask(tmp_path / "out" / "masks" / "train" / "a.png").tolist() == expected.tolist()


def test_cvat_xml_written_by_datumaro_equals_datumaros_own_decoding(tmp_path):
    """tests/fixtures/labelling/make_cvat_xml.py: datumaro (CVAT's exporter) wrote the XML and decoded each shape."""
    fixture = FIXTURES / "cvat_xml"
    result = isnet("data", "convert", fixture / "default.xml", tmp_path / "out", "--from", "cvat",
                   "--images", fixture / "images")
    assert result.returncode == 0, result.stdout + result.stderr
    classes = json.loads((tmp_path / "out" / "dataset.json").read_text())["classes"]
    assert classes == ["background", "car", "road"]
    shapes = json.loads((FIXTURES / "cvat_xml_expected.json").read_text())
    expected = np.zeros((9, 13), np.uint8)
    for shape in sorted(shapes, key=lambda shape: shape["z_order"]):  # the road and the box do not touch
        expected[np.asarray(shape["mask"], bool)] = classes.index(shape["label"])
    assert _mask(tmp_path / "out" / "masks" / "train" / "street.png").tolist() == expected.tolist()
    assert "'car' painted over 'road'" in result.stdout  # the mask (z 1) over the polygon (z 0)


def test_cvat_segmentation_masks_written_by_datumaro_equal_its_decoding(tmp_path):
    """make_cvat_masks.py: datumaro's "Segmentation mask" export (a label map of names only, RGB masks)."""
    expected = json.loads((FIXTURES / "cvat_masks_expected.json").read_text())
    result = isnet("data", "convert", FIXTURES / "cvat_masks", tmp_path / "out", "--from", "cvat")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["classes"] == expected["classes"]
    assert _mask(tmp_path / "out" / "masks" / "train" / "street.png").tolist() == expected["labels"]


def test_labelme_polygons_rectangles_circles(tmp_path):
    _image(tmp_path / "a.png")
    shapes = [{"label": "lake", "points": [[6, 4], [6, 7]], "shape_type": "circle"},
              {"label": "house", "points": [[8, 1], [1, 3]], "shape_type": "rectangle"},
              {"label": "path", "points": [[0, 8], [12, 8], [12, 6]], "shape_type": "polygon"},
              {"label": "wire", "points": [[0, 0], [5, 5]], "shape_type": "line"}]
    (tmp_path / "a.json").write_text(json.dumps({"shapes": shapes, "imagePath": "a.png", "imageHeight": H,
                                                 "imageWidth": W, "imageData": None}))
    result = isnet("data", "convert", tmp_path, tmp_path.parent / f"{tmp_path.name}-out", "--from", "labelme")
    out = tmp_path.parent / f"{tmp_path.name}-out"
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "dataset.json").read_text())["classes"] == ["background", "house", "lake", "path"]
    y, x = np.mgrid[:H, :W]
    expected = np.zeros((H, W), np.uint8)
    expected[(x - 6) ** 2 + (y - 4) ** 2 <= 9] = 2
    expected[coco_mask.decode(coco_mask.frPyObjects([[1, 1, 8, 1, 8, 3, 1, 3]], H, W))[..., 0] > 0] = 1
    expected[coco_mask.decode(coco_mask.frPyObjects([[0, 8, 12, 8, 12, 6]], H, W))[..., 0] > 0] = 3
    assert _mask(out / "masks" / "train" / "a.png").tolist() == expected.tolist()
    assert "a.json: 1 shape(s) that cover no area (lines, points) skipped" in result.stdout


def test_voc_palette_masks_keep_255_and_cvat_mask_zip_maps_colours(tmp_path):
    from isnet.data.formats.cvat import write_segmentation_mask_zip

    voc = tmp_path / "VOC"
    _image(voc / "JPEGImages" / "a.jpg")
    labels = np.zeros((H, W), np.uint8)
    labels[2:5, 3:9], labels[5, :] = 15, 255  # a person with its boundary
    (voc / "SegmentationClass").mkdir(parents=True)
    picture = Image.fromarray(labels, mode="P")
    picture.putpalette([0] * 768)
    picture.save(voc / "SegmentationClass" / "a.png")
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    result = isnet("data", "convert", voc, tmp_path / "out", "--from", "voc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _mask(tmp_path / "out" / "masks" / "val" / "a.png").tolist() == labels.tolist()
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["classes"][15] == "person"

    archive = tmp_path / "cvat-masks.zip"
    write_segmentation_mask_zip(archive, [("a.jpg", np.minimum(labels, 2))], ["background", "cat", "dog"],
                                [(0, 0, 0), (255, 0, 0), (0, 0, 255)])
    result = isnet("data", "convert", archive, tmp_path / "out2", "--from", "cvat", "--images", voc / "JPEGImages")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _mask(tmp_path / "out2" / "masks" / "train" / "a.png").tolist() == np.minimum(labels, 2).tolist()


@pytest.mark.parametrize("tool, content, problem", [
    ("coco", "{not json", "not valid JSON"),
    ("coco", '{"images": [{"id": 1}], "categories": []}', "a COCO record lacks a field"),
    ("labelstudio", '{"tasks": 1}', "not a Label Studio JSON export"),
    ("cvat", "<annotations><image", "not a readable CVAT XML file"),
])
def test_malformed_export_is_one_line_and_writes_nothing(tmp_path, tool, content, problem):
    source = tmp_path / "export.json"
    source.write_text(content)
    result = isnet("data", "convert", source, tmp_path / "out", "--from", tool)
    lines = error_message(result, "data", 1)
    assert lines[0].startswith(f"isnet data: error: {source}: ") and problem in lines[0], lines
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_a_bad_shape_half_way_leaves_no_folder(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W},
                       {"id": 2, "file_name": "b.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "car"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 5, 0, 5, 5]]},
                            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": {"counts": [3, 4], "size": [H, W]}}]}
    (tmp_path / "coco.json").write_text(json.dumps(data))
    result = isnet("data", "convert", tmp_path / "coco.json", tmp_path / "out", "--from", "coco")
    line = error_message(result, "data", 1)[0]
    assert "annotation 2 of b.png: an uncompressed RLE whose counts add to 7" in line
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_folder_fixing_options_are_refused_with_an_export(tmp_path):
    (tmp_path / "coco.json").write_text('{"images": [], "categories": []}')
    result = isnet("data", "convert", tmp_path / "coco.json", tmp_path / "out", "--from", "coco", "--reduce-zero-label")
    assert "--reduce-zero-label fix a folder dataset" in error_message(result, "data", 2)[0]
