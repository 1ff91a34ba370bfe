"""GeoTIFF in, GeoTIFF out: ``isnet predict --tile`` on a georeferenced TIFF keeps its place on the Earth.

The input is written with tifffile and GeoTIFF tags built to the GeoTIFF 1.1 specification
(UTM zone 33N, EPSG:32633; pixel scale and tiepoint; GDAL_NODATA); the outputs are read back
with tifffile (tags, tiling, compression) and, where it is installed, rasterio (GDAL: the same
CRS and transform as the input).
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from cli_helpers import isnet
from PIL import Image
from scene_helpers import responsive_checkpoint, scene

from isnet.data.geotiff import GDAL_NODATA, GeoTiffRowWriter, read_georeference

H, W = 150, 300  # two tile rows of 256, two tile columns
GEO_KEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633)  # projected, pixel is area, EPSG:32633
TAGS = [(33550, 12, 3, (10.0, 10.0, 0.0), True), (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 4100000.0, 0.0), True),
        (34735, 3, len(GEO_KEYS), GEO_KEYS, True), (GDAL_NODATA, 2, 0, "0", True)]


def _geotiff(path, pixels):
    tifffile.imwrite(path, pixels, photometric="rgb", extratags=TAGS, metadata=None)
    return path


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("geo")
    pixels = scene(H, W, seed=3)
    pixels[:20, :30] = 0  # no data in the top-left corner
    source = _geotiff(root / "field.tif", pixels)
    checkpoint = responsive_checkpoint(root / "tiny.safetensors")
    result = isnet("predict", source, "--checkpoint", checkpoint, "--tile", 64, 64, "--confidence",
                   "--precision", "fp32", "--output", root / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    return source, root / "out"


def test_label_and_confidence_geotiffs_carry_the_tags_tiled_and_compressed(predicted):
    source, out = predicted
    labels_png = np.asarray(Image.open(out / "field_labels.png"))
    confidence_png = np.asarray(Image.open(out / "field_confidence.png"))
    assert len(np.unique(labels_png[20:, 30:])) > 1  # labels that follow the image
    assert (labels_png[:20, :30] == 255).all() and (confidence_png[:20, :30] == 0).all()  # nodata → ignored
    assert (labels_png[20:, 30:] != 255).all()
    for name, png, nodata in (("field_labels.tif", labels_png, "255"), ("field_confidence.tif", confidence_png, "0")):
        with tifffile.TiffFile(out / name) as tiff:
            page = tiff.pages[0]
            assert page.is_tiled and page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert page.asarray().tolist() == png.tolist()
            for code, _, _, value, _ in TAGS[:3]:
                assert tuple(page.tags[code].value) == value
            assert page.tags[GDAL_NODATA].value == nodata
    assert not list(out.glob(".*partial*"))


def test_gdal_reads_the_same_crs_and_transform(predicted):
    rasterio = pytest.importorskip("rasterio", reason="rasterio (GDAL) is optional: pip install rasterio")
    source, out = predicted
    with rasterio.open(source) as original, rasterio.open(out / "field_labels.tif") as labels:
        assert original.crs.to_epsg() == labels.crs.to_epsg() == 32633
        assert labels.transform == original.transform and labels.nodata == 255
        assert labels.read(1).tolist() == np.asarray(Image.open(out / "field_labels.png")).tolist()


def test_a_plain_tiff_gives_no_geotiff(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    assert read_georeference(tmp_path / "plain.tif") is None
    assert read_georeference(tmp_path / "photo.png") is None  # not a TIFF: not even opened


def test_the_writer_goes_bigtiff_past_the_limit_and_streams_rows(tmp_path, monkeypatch):
    import isnet.data.geotiff as geotiff

    monkeypatch.setattr(geotiff, "BIGTIFF_ABOVE", 0)
    source = _geotiff(tmp_path / "in.tif", np.ones((4, 4, 3), np.uint8))
    labels = np.arange(300 * 520, dtype=np.int64).reshape(300, 520) % 7
    writer = GeoTiffRowWriter(tmp_path / "big.tif", 520, 300, np.uint8, read_georeference(source), 255)
    for top in range(0, 300, 37):  # bands that do not line up with the 256-row tiles
        writer.put(labels[top:top + 37])
    writer.close()
    with tifffile.TiffFile(tmp_path / "big.tif") as tiff:
        assert tiff.is_bigtiff and tiff.pages[0].is_tiled
        assert tiff.pages[0].asarray().tolist() == labels.tolist()


def test_a_model_transformation_is_carried_as_gdal_reads_it(tmp_path):
    rasterio = pytest.importorskip("rasterio", reason="rasterio (GDAL) is optional: pip install rasterio")
    matrix = (0.5, 0.1, 0.0, 300000.0, 0.1, -0.5, 0.0, 5000000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated
    tags = [(34264, 12, 16, matrix, True), TAGS[2]]
    tifffile.imwrite(tmp_path / "in.tif", np.ones((20, 30, 3), np.uint8), photometric="rgb", extratags=tags, metadata=None)
    writer = GeoTiffRowWriter(tmp_path / "out.tif", 30, 20, np.uint8, read_georeference(tmp_path / "in.tif"), 255)
    writer.put(np.full((20, 30), 2, np.uint8))
    writer.close()
    with rasterio.open(tmp_path / "in.tif") as original, rasterio.open(tmp_path / "out.tif") as written:
        assert written.transform == original.transform and written.transform.b == pytest.approx(0.1)
        assert written.crs == original.crs and (written.read(1) == 2).all()


def test_a_model_of_more_classes_than_a_byte_gives_16_bit_labels_with_a_free_nodata_value(tmp_path):
    """300 classes: the label GeoTIFF is uint16 and its nodata label 65535, which no class has (255 is one);
    256 classes leave no 8-bit value free, and the image is refused by name."""
    from test_hostile_options import tiny_checkpoint

    pixels = scene(60, 80, seed=5)
    pixels[:10, :12] = 0
    source = _geotiff(tmp_path / "wide.tif", pixels)
    result = isnet("predict", source, "--checkpoint", tiny_checkpoint(tmp_path, 300), "--tile", 32, 32,
                   "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    labels_png = np.asarray(Image.open(tmp_path / "out" / "wide_labels.png"))
    with tifffile.TiffFile(tmp_path / "out" / "wide_labels.tif") as tiff:
        labels = tiff.pages[0].asarray()
        assert labels.dtype == np.uint16 and tiff.pages[0].tags[GDAL_NODATA].value == "65535"
    assert labels.tolist() == labels_png.tolist()
    assert (labels[:10, :12] == 65535).all() and (labels[10:] < 300).all() and (labels[:, 12:] < 300).all()
    assert (labels[10:] > 255).any() or (labels[:, 12:] > 255).any()  # classes a byte cannot hold

    refused = isnet("predict", source, "--checkpoint", tiny_checkpoint(tmp_path / "k256", 256), "--tile", 32, 32,
                    "--output", tmp_path / "refused")
    assert refused.returncode == 1
    assert f"{source}: a model of 256 classes leaves no 8-bit label value free for the GeoTIFF's nodata pixels" \
        in refused.stderr
    assert not (tmp_path / "refused" / "wide_labels.tif").exists()


def test_the_georeference_is_read_while_the_file_is_open(tmp_path):
    """tifffile reads the larger tag values (the GeoKey directory) only when asked: asked after the file
    was closed, it warned on every GeoTIFF a user predicted ("reading value from closed file")."""
    import warnings

    source = _geotiff(tmp_path / "field.tif", scene(40, 60, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        georeference = read_georeference(source)
    assert georeference is not None and georeference.nodata == 0.0
    assert {code: value for code, _, _, value, _ in georeference.tags} == {code: value for code, _, _, value, _ in TAGS[:3]}
