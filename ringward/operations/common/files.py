"""File-system helpers: atomic writes, confined directory walks, mapped reads."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ringward.core.common.paths import check_relative_name
from ringward.core.errors import InputError, OutputExistsError, UnsafePathError

CHUNK = 1024 * 1024


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file in ``path``'s directory (created if missing). A directory that cannot be made
    or written (a parent is a file, permission denied, a symbolic-link loop) is the caller's bad output
    path: :class:`InputError` naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError, PermissionError) as exc:
        reason = "a parent of it is not a directory" if not isinstance(exc, PermissionError) else "permission denied"
        raise InputError(f"{path}: cannot write ({reason})") from exc
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise InputError(f"{path}: cannot write ({describe_os_error(exc)})") from exc


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, then rename.
    With ``overwrite=False`` an existing file is never replaced (link-then-unlink)."""
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise OutputExistsError(f"{path}: already exists; refusing to overwrite") from exc
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def describe_os_error(exc: OSError) -> str:
    """The user-facing reason for an ``OSError`` raised while opening or reading a user-supplied path."""
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, expected a file"
    if isinstance(exc, NotADirectoryError):
        return "a parent of it is not a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop, or a symbolic link where none is allowed"
    return exc.strerror or type(exc).__name__


def check_input_path(path: Path, *, option: str, kind: str = "file", allow_empty: bool = False) -> None:
    """Refuse a user-supplied input path that cannot be what ``option`` expects before anything reads it.

    ``kind``: ``file``, ``dir`` or ``any`` (a file, or a directory holding it). Missing, unreadable, a
    symbolic-link loop, the wrong kind, or an empty file (unless ``allow_empty``) raise one
    :class:`InputError` naming the option, the path and why."""
    where = f"{option} {path}" if option else str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise InputError(f"{where}: {'directory' if kind == 'dir' else 'file'} not found") from exc
    except OSError as exc:
        raise InputError(f"{where}: {describe_os_error(exc)}") from exc
    if kind == "dir" or (kind == "any" and stat.S_ISDIR(info.st_mode)):
        if not stat.S_ISDIR(info.st_mode):
            raise InputError(f"{where}: not a directory")
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"{where}: permission denied")
        return
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{where}: is a directory, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{where}: not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{where}: permission denied")
    if info.st_size == 0 and not allow_empty:
        raise InputError(f"{where}: empty file")


def check_output_parent(path: Path, *, option: str) -> None:
    """Refuse an output path whose nearest existing ancestor is not a directory (it can never be
    created): one :class:`InputError` naming the option and the path."""
    parent = path.absolute().parent
    while True:
        try:
            info = os.stat(parent)
        except FileNotFoundError:
            if parent.parent == parent:
                return
            parent = parent.parent
            continue
        except OSError as exc:
            raise InputError(f"{option} {path}: cannot write ({describe_os_error(exc)})") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise InputError(f"{option} {path}: cannot write (a parent of it is not a directory)")
        return


def read_capped(path: Path, cap: int, *, source: str) -> bytes:
    """Read a regular file (no symlinks) of at most ``cap`` bytes."""
    try:
        # O_NONBLOCK: a FIFO swapped in after the directory walk must not hang the reader
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise InputError(f"{source}: file not found") from exc
    except OSError as exc:
        raise InputError(f"{source}: cannot open ({describe_os_error(exc)})") from exc
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{source}: is a directory, expected a file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{source}: not a regular file")
        if info.st_size > cap:
            raise InputError(f"{source}: {info.st_size} bytes, expected at most {cap}")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(cap + 1)[:cap]


def walk_regular_files(root: Path) -> dict[str, int]:
    """Every file under ``root`` as ``relative posix name -> size``. Symlinks, devices, FIFOs
    and sockets anywhere in the tree are refused (a package is plain files only)."""
    found: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in list(dirnames) + filenames:
            full = base / name
            rel = full.relative_to(root).as_posix()
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                raise UnsafePathError(f"{rel}: symbolic links are not allowed in a package")
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise UnsafePathError(f"{rel}: not a regular file (device, FIFO or socket)")
            check_relative_name(rel, source="package file")
            found[rel] = info.st_size
    return found


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[memoryview]:
    """Read-only view of a whole file without copying it (empty files give an empty view)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            yield memoryview(b"")
            return
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                yield view
            finally:
                view.release()
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def copy_and_hash(source: Path, target: Path, *, mode: int) -> tuple[str, int]:
    """Copy ``source`` to a new ``target`` (never overwriting), hashing the bytes once."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        while True:
            n = src.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            dst.write(view[:n])
            size += n
    os.chmod(target, mode)
    return digest.hexdigest(), size
