"""Annotation tools' exports read into folder datasets (``isnet data convert --from TOOL``), one module per tool.

Each reader takes the export (a file or folder), the folders holding its images and, optionally,
the class names in label order, and returns an :class:`~isnet.data.formats.common.Export`;
:func:`~isnet.data.formats.common.write_folder_dataset` writes it. A zip export is unpacked into
a temporary folder first.

Libraries: pycocotools (2 MB, needs only numpy; BSD) decodes COCO RLE and rasterises every
polygon, so one polygon gives one mask whatever the tool. datumaro (MIT; reads COCO, CVAT, VOC,
LabelMe) and label-studio-sdk (Apache-2.0; the brush codec) were measured and not taken: each
installs about 0.5 GB (pandas, pyarrow, OpenCV; black, nltk, Faker), datumaro pins Pillow 12 and
label-studio-sdk's OpenCV pin pulls numpy back to 2.2, and the formats read here are small
(LabelMe JSON, CVAT XML, the brush bit stream, ~100 lines each). The brush codec is tested
against label-studio-sdk's own encoder (a fixture it wrote), CVAT's mask runs follow datumaro's
reading of them.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from isnet.data.formats.common import Export, ExportError

FORMATS = ("coco", "cvat", "labelme", "labelstudio", "voc")


def _reader(tool: str, source: Path):
    from isnet.data.formats.coco import read_coco
    from isnet.data.formats.cvat import read_cvat_xml
    from isnet.data.formats.labelme import read_labelme
    from isnet.data.formats.labelstudio import read_labelstudio
    from isnet.data.formats.voc import read_voc

    if tool == "cvat":  # "CVAT for images 1.1" (annotations.xml) or "Segmentation mask 1.1" (a VOC layout)
        if source.is_dir() and (source / "annotations.xml").is_file():
            return read_cvat_xml, source / "annotations.xml"
        return (read_voc, source) if source.is_dir() else (read_cvat_xml, source)
    return {"coco": read_coco, "labelme": read_labelme, "labelstudio": read_labelstudio, "voc": read_voc}[tool], source


@contextmanager
def _unpacked(source: Path) -> Iterator[Path]:
    """``source``, or the folder a zip export is unpacked into (removed afterwards)."""
    if not zipfile.is_zipfile(source):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="isnet-export-") as folder:
        try:
            with zipfile.ZipFile(source) as archive:
                archive.extractall(folder)  # member names with .. or a leading / are made safe by zipfile
        except (zipfile.BadZipFile, OSError, RuntimeError) as error:
            raise ExportError(f"{source}: unreadable zip: {error}") from None
        yield Path(folder)


@contextmanager
def read_export(tool: str, source: str | Path, images: Sequence[str | Path] = (),
                classes: Sequence[str] | None = None) -> Iterator[Export]:
    """The :class:`Export` of ``source`` as written by ``tool`` (one of :data:`FORMATS`); valid inside the ``with``."""
    source = Path(source)
    if not source.exists():
        raise ExportError(f"{source}: no such file or folder")
    with _unpacked(source) as unpacked:
        read, path = _reader(tool, unpacked)
        folders = [Path(folder) for folder in images]
        try:
            export = read(path, folders, classes)
            export.source = source
            export.problems = [problem.replace(str(unpacked), str(source)) for problem in export.problems]
            yield export
        except ExportError as error:  # named by the zip the user gave, not the temporary folder
            raise ExportError(str(error).replace(str(unpacked), str(source))) from None


def convert_export(tool: str, source: str | Path, output: str | Path, *, images: Sequence[str | Path] = (),
                   classes: Sequence[str] | None = None) -> tuple[Export, int, list[str]]:
    """Write the folder dataset of ``tool``'s export ``source`` to ``output``: (export, pairs written, notes)."""
    from isnet.data.formats.common import check_output_folder, write_folder_dataset

    source, output = Path(source), Path(output)
    check_output_folder(source, output)
    with read_export(tool, source, images, classes) as export:
        if not export.samples:
            raise ExportError(f"{source}: no image of the export could be converted"
                              + (f" ({export.problems[0]}{', ...' if len(export.problems) > 1 else ''})"
                                 if export.problems else ""))
        pairs, notes = write_folder_dataset(export, output)
    return export, pairs, export.notes + notes
