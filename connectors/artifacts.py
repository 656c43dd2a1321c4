"""Reading an installer named by a publication event: confined to the artifact root, checked first.

Shared by the native Jamf Pro and Intune publishers: the bytes that get uploaded are exactly the
bytes the (signed, approved) event names, or nothing is uploaded at all.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from ringward.core.delivery.publication_artifact import ArtifactFile


class ArtifactError(Exception):
    """The file cannot be used: missing, outside the artifact root, or not the bytes the event names."""


def read_artifact(root: str, item: ArtifactFile) -> bytes:
    """The file's bytes, read confined to ``root`` and checked against the event.

    Every path segment is opened relative to its parent with ``O_NOFOLLOW``, so neither the file
    nor any directory on the way may be a symlink (a link cannot point the upload outside the
    root); the file must be a regular file of exactly the expected size and SHA-256.

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
        try:
            content = handle.read(item.size + 1)
        except OSError as exc:
            raise ArtifactError(f"artifact {name}: cannot be read ({exc.strerror}); nothing uploaded") from exc
    digest = hashlib.sha256(content).hexdigest()
    if len(content) != item.size or digest != item.sha256:
        raise ArtifactError(
            f"artifact {name}: expected sha256 {item.sha256} ({item.size} bytes), "
            f"found sha256 {digest} ({len(content)} bytes); nothing uploaded"
        )
    return content


def _open_error(name: str, exc: OSError) -> ArtifactError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return ArtifactError(
            f"artifact {name}: expected a file inside the artifact root, found a symlink or non-directory "
            "on its path (refused); nothing uploaded"
        )
    if exc.errno == errno.ENOENT:
        return ArtifactError(f"artifact {name}: expected under the artifact root, found no such file; nothing uploaded")
    return ArtifactError(f"artifact {name}: cannot be read ({exc.strerror}); nothing uploaded")
