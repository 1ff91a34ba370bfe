"""The encoder thread behind the streamed PNGs and GeoTIFFs of ``predict --tile``: items in order, a
bounded queue, and what the encoder raised handed to the caller (never a hang, never silence)."""

from __future__ import annotations

import errno
import threading

import numpy as np
import pytest
import tifffile

from isnet.utils.background_encoder import BackgroundEncoder


def test_items_reach_the_encoder_in_order_and_close_waits_for_it():
    seen = []
    encoder = BackgroundEncoder(lambda items: seen.extend(items), name="test", queue_size=2)
    for item in range(50):
        encoder.put(item)
    encoder.close()
    assert seen == list(range(50))
    encoder.close()  # a second close does nothing


def test_the_queue_holds_a_few_items_not_all():
    release = threading.Event()

    def slow(items):
        release.wait()
        for _ in items:
            pass

    encoder = BackgroundEncoder(slow, name="test", queue_size=2)
    putter = threading.Thread(target=lambda: [encoder.put(item) for item in range(10)])
    putter.start()
    putter.join(timeout=0.5)
    assert putter.is_alive()  # waiting for room: two items queued, not ten
    release.set()
    putter.join(timeout=10)
    encoder.close()


def test_what_the_encoder_raised_comes_back_from_put_or_close():
    def full_disk(items):
        for index, _ in enumerate(items):
            if index == 3:
                raise OSError(errno.ENOSPC, "No space left on device")

    encoder = BackgroundEncoder(full_disk, name="test", queue_size=2)
    with pytest.raises(OSError, match="No space left"):
        for item in range(100):  # put goes on (the encoder drains) until it hears of the error
            encoder.put(item)
        encoder.close()
    assert encoder.failed
    with pytest.raises(OSError, match="No space left"):
        encoder.close()


def test_a_geotiff_row_writer_whose_file_cannot_be_written_says_so(tmp_path):
    from isnet.data.geotiff import GeoReference, GeoTiffRowWriter

    writer = GeoTiffRowWriter(tmp_path / "missing" / "labels.tif", 300, 600, np.uint8, GeoReference((), None), 255)
    with pytest.raises(OSError):
        for _ in range(3):
            writer.put(np.zeros((256, 300), np.uint8))
        writer.close()
    written = tmp_path / "ok.tif"
    writer = GeoTiffRowWriter(written, 300, 600, np.uint8, GeoReference((), None), 255)
    rows = np.random.default_rng(0).integers(0, 200, (600, 300), dtype=np.uint8)
    for start in range(0, 600, 70):
        writer.put(rows[start:start + 70])
    writer.close()
    assert np.array_equal(tifffile.imread(written), rows)
