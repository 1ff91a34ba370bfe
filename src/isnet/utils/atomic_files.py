"""Every file isnet writes: complete or not at all, never through a planted link, and never at
the cost of a file we did not write.

A file is written under a temporary name of its folder, ``.<stem>.isnet-<pid>-<random>.partial<suffix>``,
created with ``O_CREAT | O_EXCL`` (which never follows a symbolic link: a name planted there
makes the creation fail, and another is drawn), flushed to the disk and renamed over its real
name (a rename within a folder is atomic). A kill at any moment leaves the old file or the new
one, and at worst a temporary file that :func:`remove_unfinished_writes` can prove is ours: its
name has our pattern, and the process it names is gone. A user's ``*.tmp`` is never touched.

The real name must be absent or a regular file: a symbolic link there (planted, or the user's)
is refused with a message rather than replaced or followed, and a replaced file keeps its
permission bits. Writers that stream (a video, an OpenVINO IR pair, a PNG written by a
library) use the context-manager forms, :func:`atomic_path` and :func:`atomic_paths`, which
yield the temporary names, commit them on success and remove them on failure;
:func:`write_atomically` takes a function instead. :func:`atomic_directory` does the same for
a folder (a converted dataset).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from isnet.utils.errors import os_error_behind

CHECKSUM_SUFFIX = ".sha256"
# ".<stem>.isnet-<pid>-<12 hex>.partial<suffix>": the suffix stays last, so that writers that choose
# a format by the name's suffix (video containers, OpenVINO's .xml → .bin) see the real one.
_TEMPORARY = re.compile(r"\..*\.isnet-(?P<pid>\d+)-[0-9a-f]{12}\.partial(\.[^./]*)?")


def checksum_path(path: Path) -> Path:
    """The sha256 sidecar of ``path``: ``<name>.sha256``, in ``sha256sum`` format."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_temporary(path: Path) -> bool:
    """Whether ``path``'s name is one of our temporary names (:func:`temporary_path`)."""
    return _TEMPORARY.fullmatch(path.name) is not None


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _temporary_name(final: Path, token: str) -> Path:
    return final.with_name(f".{final.stem}.isnet-{os.getpid()}-{token}.partial{final.suffix}")


def require_replaceable(path: Path) -> os.stat_result | None:
    """``path``'s status when it is a regular file we may replace, None when it is absent.

    A symbolic link (which a rename would replace by a file, and a write would follow) or
    anything but a regular file is refused with an ``OSError`` naming it and what to do.
    """
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(status.st_mode):
        raise OSError(errno.ELOOP, "is a symbolic link; isnet neither follows nor replaces links when it writes: "
                                   "give the path of the file it points to, or remove the link", str(path))
    if stat.S_ISDIR(status.st_mode):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(status.st_mode):
        raise OSError(errno.EEXIST, "exists and is not a regular file; choose another name", str(path))
    return status


def _create_temporaries(finals: tuple[Path, ...]) -> tuple[Path, ...]:
    """New, empty temporary files beside each of ``finals`` (one random part for all, so that an
    IR's ``.xml`` and ``.bin`` stay a pair), each created with ``O_EXCL``: never through a link."""
    for _ in range(100):
        token, created = secrets.token_hex(6), []
        try:
            for final in finals:
                temporary = _temporary_name(final, token)
                os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))
                created.append(temporary)
            return tuple(created)
        except FileExistsError:  # a name planted there (or, once in 2**48, drawn twice): draw again
            _remove(created)
        except OSError as error:  # a folder that refuses new files: named by the file wanted
            _remove(created)
            raise OSError(error.errno, error.strerror or str(error), str(finals[len(created)])) from None
    raise OSError(errno.EEXIST, "cannot create a temporary file beside it", str(finals[0]))


def _remove(paths) -> None:
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:  # a folder that refuses the write may refuse the cleanup too
            pass


class PendingFiles:
    """Files being written: ``temporaries`` to write, then :meth:`commit` (each renamed into place) or
    :meth:`discard` (each removed; after a commit, nothing to do). For writers whose structure a
    ``with`` block does not fit; :func:`atomic_paths` is the usual form."""

    def __init__(self, *paths: str | Path, checksum: bool = False) -> None:
        self.finals = tuple(Path(path) for path in paths)
        self.checksum = checksum
        for final in self.finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            require_replaceable(final)
        self.temporaries = _create_temporaries(self.finals)

    def commit(self) -> None:
        """Flush each temporary file, give it the permission bits of the file it replaces, rename it into place."""
        writing = self.finals[0]
        try:
            for temporary, final in zip(self.temporaries, self.finals):
                writing = final
                _commit(temporary, final, self.checksum)
            for folder in dict.fromkeys(final.parent for final in self.finals):  # the renames on the disk
                _fsync(folder)
        except BaseException as error:
            self.discard()
            named = self.named(error, writing)
            if named is error:
                raise
            raise named from error

    def discard(self) -> None:
        _remove(self.temporaries)

    def named(self, error: BaseException, writing: Path | None = None) -> BaseException:
        """``error``, or the ``OSError`` behind it named by the real file rather than its temporary name
        (by ``writing`` when it names none: the one file of a single write)."""
        cause = os_error_behind(error) if isinstance(error, Exception) else None
        if cause is None or cause.errno is None:  # not an operating system's refusal (a DataFileError...)
            return error
        if writing is None and len(self.finals) == 1:
            writing = self.finals[0]
        by_temporary = {str(temporary): final for temporary, final in zip(self.temporaries, self.finals)}
        named = by_temporary.get(str(cause.filename), writing if cause.filename is None else Path(cause.filename))
        return OSError(cause.errno, cause.strerror or str(cause), *(() if named is None else (str(named),)))


@contextlib.contextmanager
def atomic_paths(*paths: str | Path, checksum: bool = False) -> Iterator[tuple[Path, ...]]:
    """Write several files, each complete or absent: ``with atomic_paths(a, b) as (ta, tb): ...``.

    The body writes the temporary files (which exist, empty, when it starts); when it returns,
    each is flushed, given the permission bits of the file it replaces, and renamed into place
    in the order given (an IR: its ``.bin`` before its ``.xml``). If the body raises, the
    temporary files are removed and the real ones left as they were; an ``OSError`` is raised
    again named by the real file (``out.png: no space left on device (ENOSPC)``). With
    ``checksum``, each file's ``<name>.sha256`` sidecar is in place before the file.
    """
    pending = PendingFiles(*paths, checksum=checksum)
    try:
        yield pending.temporaries
    except BaseException as error:
        pending.discard()
        named = pending.named(error)
        if named is error:
            raise
        raise named from error
    pending.commit()


def _commit(temporary: Path, final: Path, checksum: bool) -> None:
    _fsync(temporary)
    previous = require_replaceable(final)  # checked again: a link may have been planted meanwhile
    if previous is not None:
        os.chmod(temporary, stat.S_IMODE(previous.st_mode))
    if checksum:
        sidecar = checksum_path(final)
        with atomic_path(sidecar) as sidecar_temporary:
            sidecar_temporary.write_text(f"{file_sha256(temporary)}  {final.name}\n")
    os.replace(temporary, final)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, checksum: bool = False) -> Iterator[Path]:
    """:func:`atomic_paths` for one file: ``with atomic_path(out) as temporary: write(temporary)``."""
    with atomic_paths(path, checksum=checksum) as (temporary,):
        yield temporary


def write_atomically(path: str | Path, write: Callable[[Path], Any], *, checksum: bool = False) -> Path:
    """Write ``path`` complete or not at all: ``write(temporary)`` fills the temporary file
    (:func:`atomic_path`); returns ``path``."""
    with atomic_path(path, checksum=checksum) as temporary:
        write(temporary)
    return Path(path)


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``, complete or not at all (:func:`write_atomically`)."""
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """A folder made whole or not at all: the body fills a new temporary folder beside ``path``,
    which is renamed to ``path`` (absent, or an empty folder) on success and removed on failure."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        temporary = _temporary_name(final, secrets.token_hex(6))
        try:
            os.mkdir(temporary)  # fails on anything there, a link included
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "cannot create a temporary folder beside it", str(final))
    try:
        yield temporary
        if final.is_symlink():
            require_replaceable(final)
        if final.exists():
            final.rmdir()  # an empty folder only (OSError ENOTEMPTY otherwise)
        os.replace(temporary, final)
        _fsync(final.parent)
    except BaseException:
        _remove([temporary])
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_unfinished_writes(folder: Path) -> list[Path]:
    """Delete the temporary files that killed writes of ours left in ``folder``; return them.

    Only names of our pattern (:func:`is_temporary`) whose process is gone are deleted: a
    user's ``*.tmp`` or ``*.sha256``, and a write still in progress in another process, stay.
    """
    if not folder.is_dir():
        return []
    unfinished = []
    for path in sorted(folder.iterdir()):
        match = _TEMPORARY.fullmatch(path.name)
        if match is None or _process_alive(int(match["pid"])):
            continue
        _remove([path])
        unfinished.append(path)
    return unfinished

