"""Reading an installer named by a publication event: confined to the artifact root, checked first.

Shared by the native Jamf Pro and Intune publishers: the bytes that get uploaded are exactly the
bytes the (signed, approved) event names, or nothing is uploaded at all.

Installers are large, so they are never read whole: :func:`open_artifact` opens the file (confined,
checked for type, links and size) and :meth:`ArtifactReader.chunks` reads it in chunks of
:data:`CHUNK_BYTES`, as many passes as the publisher needs, each checking size and SHA-256 against
the event before it hands over the last chunk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ringward.core.delivery.publication_artifact import ArtifactFile

#: bytes read from an installer at a time: what one read holds in memory, whatever the file's size
CHUNK_BYTES = 1024 * 1024


class ArtifactError(Exception):
    """The file cannot be used: missing, outside the artifact root, or not the bytes the event names."""


class ArtifactReader:
    """An artifact opened confined to the artifact root and checked: a regular file with one link
    and the size the event names (its digest is checked by every pass of :meth:`chunks`).

    Every pass reads through the same open file, so a file renamed or replaced under its name after
    the check changes nothing; a file rewritten in place is caught by the digest.
    """

    def __init__(self, item: ArtifactFile, handle: BinaryIO) -> None:
        self.item = item
        self._handle = handle

    @property
    def name(self) -> str:
        return self.item.artifact

    @property
    def size(self) -> int:
        return self.item.size

    def chunks(self, chunk_bytes: int | None = None) -> Iterator[bytes]:
        """The file's bytes from the start, at most ``chunk_bytes`` (default :data:`CHUNK_BYTES`) per chunk.

        The size and SHA-256 are checked before the LAST chunk is yielded, so a consumer that
        forwards chunks as they come (an upload) never forwards the whole of a wrong file.

        Raises:
            ArtifactError: the bytes are not the ones the event names (or cannot be read).
        """
        item, handle = self.item, self._handle
        step = chunk_bytes or CHUNK_BYTES
        digest = hashlib.sha256()
        found = 0
        last = b""
        try:
            handle.seek(0)
            left = item.size
            while left > 0:
                chunk = handle.read(min(step, left))
                if not chunk:
                    break  # shorter than at open
                digest.update(chunk)
                found += len(chunk)
                left -= len(chunk)
                if left > 0:
                    yield chunk
                else:
                    last = chunk
            extra = handle.read(1)  # longer than at open
        except OSError as exc:
            raise ArtifactError(f"artifact {item.artifact}: cannot be read ({exc.strerror}); nothing uploaded") from exc
        digest.update(extra)
        found += len(extra)
        hexdigest = digest.hexdigest()
        if found != item.size or hexdigest != item.sha256:
            raise ArtifactError(
                f"artifact {item.artifact}: expected sha256 {item.sha256} ({item.size} bytes), "
                f"found sha256 {hexdigest} ({found} bytes); nothing uploaded"
            )
        if last:
            yield last

    def verify(self, chunk_bytes: int | None = None) -> None:
        """One pass that only checks size and SHA-256 (:class:`ArtifactError` if they differ)."""
        for _chunk in self.chunks(chunk_bytes):
            pass


@contextmanager
def open_artifact(root: str, item: ArtifactFile) -> Iterator[ArtifactReader]:
    """The file named by ``item``, opened confined to ``root`` and checked, closed on exit.

    Every path segment is opened relative to its parent with ``O_NOFOLLOW``, so neither the file
    nor any directory on the way may be a symlink (a link cannot point the upload outside the
    root); the file must be a regular file with one link and exactly the expected size. Its bytes
    are not read here: :meth:`ArtifactReader.chunks` reads and checks them.

    Raises:
        ArtifactError: one line naming the artifact, expected vs found.
    """
    name = item.artifact
    *folders, leaf = name.split("/")
    if not hasattr(os, "O_NOFOLLOW") or os.open not in os.supports_dir_fd:
        raise ArtifactError(f"artifact {name}: this platform cannot open files confined to a root; nothing uploaded")
    cloexec = getattr(os, "O_CLOEXEC", 0)
    nofollow = os.O_NOFOLLOW
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | cloexec)
    except OSError as exc:
        raise ArtifactError(f"artifact root {root!r}: expected a readable directory, found {exc.strerror}") from exc
    try:
        for folder in folders:
            try:
                inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | nofollow | cloexec, dir_fd=fd)
            except OSError as exc:
                raise _open_error(name, exc) from exc
            os.close(fd)
            fd = inner
        try:
            file_fd = os.open(leaf, os.O_RDONLY | nofollow | os.O_NONBLOCK | cloexec, dir_fd=fd)
        except OSError as exc:
            raise _open_error(name, exc) from exc
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"artifact {name}: expected a regular file, found another file type; nothing uploaded")
        if info.st_nlink != 1:
            # a hard link can make a file outside the root appear inside it; refuse before reading
            # (so nothing about that file, not even its digest, reaches the evidence)
            raise ArtifactError(
                f"artifact {name}: expected a file with one link, found {info.st_nlink} hard links; nothing uploaded"
            )
        if info.st_size != item.size:
            raise ArtifactError(
                f"artifact {name}: expected {item.size} bytes, found {info.st_size} bytes; nothing uploaded"
            )
        yield ArtifactReader(item, handle)


def read_artifact(root: str, item: ArtifactFile) -> bytes:
    """The whole file's bytes, read confined to ``root`` and checked against the event (small files
    only: the publishers stream installers with :func:`open_artifact` instead).

    Raises:
        ArtifactError: one line naming the artifact, expected vs found.
    """
    with open_artifact(root, item) as reader:
        return b"".join(reader.chunks())


def _open_error(name: str, exc: OSError) -> ArtifactError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return ArtifactError(
            f"artifact {name}: expected a file inside the artifact root, found a symlink or non-directory "
            "on its path (refused); nothing uploaded"
        )
    if exc.errno == errno.ENOENT:
        return ArtifactError(f"artifact {name}: expected under the artifact root, found no such file; nothing uploaded")
    return ArtifactError(f"artifact {name}: cannot be read ({exc.strerror}); nothing uploaded")
