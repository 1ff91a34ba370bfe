"""An encoder fed from a short queue on its own thread, for files written as their rows arrive.

The streamed PNGs of ``predict --tile`` and its GeoTIFFs are written by libraries (pypng,
tifffile) that take an iterator and pull from it; the prediction pushes bands of rows. A
:class:`BackgroundEncoder` joins the two: ``put(item)`` hands an item over (waiting while the
queue is full, so memory stays bounded), ``encode`` consumes them as an iterator on another
thread, and what the encoder raised (a full disk, say) is raised by the next ``put`` or by
``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_END = object()  # the end of the items


class BackgroundEncoder:
    """``encode(items)`` run on its own thread over the items given to :meth:`put`, until :meth:`close`."""

    def __init__(self, encode: Callable[[Iterator[Any]], None], *, name: str, queue_size: int) -> None:
        self._items: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        ended = threading.Event()  # the encoder has taken _END

        def items() -> Iterator[Any]:
            while (item := self._items.get()) is not _END:
                yield item
            ended.set()

        def run() -> None:
            try:
                encode(items())
            except BaseException as error:  # handed to the caller by put / close
                self._error = error
                while not ended.is_set() and self._items.get() is not _END:  # let put() go on, to hear of it
                    pass

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self._error is not None

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._items.put(item)

    def close(self) -> None:
        """Let the encoder finish (a second call does nothing); raise what it raised."""
        if self._thread.is_alive():
            self._items.put(_END)
            self._thread.join()
        if self._error is not None:
            raise self._error
