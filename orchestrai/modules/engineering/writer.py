"""Writes a model's files into a workspace, and nowhere else.

Every path is checked as text first (no absolute paths, drive letters, `~`, backslashes or `..`; not
inside the folders orchestrai manages), then against the file system: the path must resolve inside the
workspace, and the folders are walked one at a time with directory file descriptors opened with
O_NOFOLLOW, so a symlink anywhere on the way is refused rather than followed, even one created after
the first check. A file is written to a temporary name in its folder and renamed over the target, so
an existing hard link or symlink at the target is never written through. Whatever is refused is
reported with its reason; the rest of the answer is still written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .parser import AnswerFile, Refusal

MANAGED = (".venv", ".orchestrai")  # orchestrai's own folders inside a workspace
MAX_DEPTH = 32
WHOLE_ANSWER = "(the whole answer)"


@dataclass(frozen=True)
class WriteLimits:
    """How much one answer may write."""

    max_files: int = 200
    max_file_bytes: int = 1024 * 1024
    max_total_bytes: int = 4 * 1024 * 1024


@dataclass
class WriteReport:
    """What one answer did to the workspace."""

    written: list[str] = field(default_factory=list)  # new or changed files
    unchanged: list[str] = field(default_factory=list)  # given again with the same content
    refused: list[Refusal] = field(default_factory=list)


class Refused(Exception):
    """A path that must not be written; the message says why."""


def check_path(path: str) -> list[str]:
    """The path's parts if it is a safe relative path; raises Refused saying why not."""
    if not path or not path.strip():
        raise Refused("the path is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise Refused("the path contains control characters")
    if "\\" in path:
        raise Refused("the path uses backslashes; paths must use /")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise Refused("it is an absolute path; paths must be relative to the workspace")
    if path.startswith("~"):
        raise Refused("it points into a home folder; paths must be relative to the workspace")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused("it contains '..'; paths must stay inside the workspace")
    if not parts:
        raise Refused("the path names no file")
    if parts[0] in MANAGED:
        raise Refused(f"it is inside {parts[0]}/, which orchestrai manages")
    if len(parts) > MAX_DEPTH or any(len(part.encode()) > 255 for part in parts):
        raise Refused("the path is too deep or a name in it is too long")
    return parts


class ConfinedWriter:
    """Writes files under one workspace folder; see the module docstring for the rules."""

    def __init__(self, root: Path, limits: WriteLimits | None = None) -> None:
        self.root = Path(root).resolve()
        self.limits = limits or WriteLimits()

    def write(self, files: Iterable[AnswerFile]) -> WriteReport:
        """Write every acceptable file; an answer over the count or byte limit writes nothing."""
        files = list(files)
        report = WriteReport()
        if whole := self._over_limits(files):
            report.refused.append(Refusal(WHOLE_ANSWER, whole))
            return report
        for item in files:
            try:
                changed = self._write_one(item.path, item.content.encode("utf-8"))
            except Refused as exc:
                report.refused.append(Refusal(item.path, str(exc)))
                continue
            except OSError as exc:  # a full disk, a read-only folder: the file's problem, not the run's
                report.refused.append(Refusal(item.path, f"cannot write it: {exc.strerror or exc}"))
                continue
            (report.written if changed else report.unchanged).append("/".join(check_path(item.path)))
        return report

    def _over_limits(self, files: list[AnswerFile]) -> str | None:
        limits = self.limits
        if len(files) > limits.max_files:
            return f"it holds {len(files)} files, over the limit of {limits.max_files} per answer; nothing was written"
        total = sum(len(item.content.encode("utf-8")) for item in files)
        if total > limits.max_total_bytes:
            return (f"its files add up to {_size(total)}, over the limit of {_size(limits.max_total_bytes)} "
                    "per answer; nothing was written")
        return None

    def _write_one(self, path: str, data: bytes) -> bool:
        """Write one file; False when it already had this content. Raises Refused."""
        parts = check_path(path)
        if len(data) > self.limits.max_file_bytes:
            raise Refused(f"it is {_size(len(data))}, over the limit of {_size(self.limits.max_file_bytes)} per file")
        self._check_resolves_inside(parts)
        folder = open_folder(self.root, parts[:-1], create=True)
        try:
            if _same_content(folder, parts[-1], data):
                return False
            _replace(folder, parts[-1], data)
            return True
        finally:
            os.close(folder)

    def _check_resolves_inside(self, parts: list[str]) -> None:
        # A first, readable answer for the common case; open_folder enforces it without races.
        try:
            self.root.joinpath(*parts).resolve().relative_to(self.root)
        except ValueError:
            raise Refused("it leads outside the workspace through a symlink") from None


def open_folder(root: Path, parts: list[str], *, create: bool) -> int:
    """A descriptor of root/parts..., walked one folder at a time without following symlinks."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    for name in parts:
        try:
            child = _enter(fd, name, create)
        finally:
            os.close(fd)
        fd = child
    return fd


def _enter(parent: int, name: str, create: bool) -> int:
    """Open folder `name` inside `parent`; refuse symlinks and files on the way."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        if not create:
            raise Refused(f"the folder {name!r} does not exist") from None
        os.mkdir(name, 0o755, dir_fd=parent)
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        raise Refused(f"the path passes through a symlink ({name!r})")
    if not stat.S_ISDIR(info.st_mode):
        raise Refused(f"{name!r} on the path is a file, not a folder")
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:  # swapped for a symlink between the stat and the open
        raise Refused(f"cannot enter {name!r}: {os.strerror(exc.errno or errno.EIO)}") from None


def _existing(folder: int, name: str) -> os.stat_result | None:
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise Refused("a symlink already has this name; it is not followed")
    if stat.S_ISDIR(info.st_mode):
        raise Refused("it is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise Refused("something that is not a regular file (a pipe, socket or device) already has this name")
    return info


def _same_content(folder: int, name: str, data: bytes) -> bool:
    info = _existing(folder, name)
    if info is None or info.st_size != len(data):
        return False
    return read_at(folder, name, len(data) + 1) == data


def read_at(folder: int, name: str, max_bytes: int) -> bytes | None:
    """Up to max_bytes of regular file `name` in `folder`; None for anything else (symlinks included)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], max_bytes
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_confined(root: Path, path: str, max_bytes: int) -> bytes | None:
    """Read a workspace file the way the writer writes: never through a symlink. None if unreadable."""
    try:
        parts = check_path(path)
        folder = open_folder(Path(root).resolve(), parts[:-1], create=False)
    except (Refused, OSError):
        return None
    try:
        return read_at(folder, parts[-1], max_bytes)
    finally:
        os.close(folder)


def _replace(folder: int, name: str, data: bytes) -> None:
    """Write to a fresh temporary file beside the target, then rename it over the target."""
    temporary = f".orchestrai-{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MiB"
    return f"{count / 1024:.0f} KiB" if count >= 1024 else f"{count} bytes"
