"""AtomicWriter (upstream pkg/volume/util/atomic_writer.go): a set of files a container sees change
all at once, or not at all.

The layout of a target directory, for a payload ``{"a": ..., "dir/b": ...}``::

    ..2024_05_01_10_00_00.123456789/   the current data (timestamped, 0755)
        a  dir/b
    ..data -> ..2024_05_01_10_00_00.123456789
    a -> ..data/a
    dir -> ..data/dir

An update writes a new timestamped directory, points a ``..data_tmp`` symlink at it and renames
that over ``..data`` (rename(2) is atomic), adds symlinks for new top-level names, removes those
of names that went away and deletes the old directory.  Nothing is written when every file has
the same content and no path went away.  All of it is blocking file I/O: run it in a thread.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_FILE_NAME_LENGTH = 255
MAX_PATH_LENGTH = 4096
DATA_DIR_NAME = "..data"
NEW_DATA_DIR_NAME = "..data_tmp"


@dataclass(frozen=True, slots=True)
class FileProjection:
    data: bytes
    mode: int
    fs_user: int | None = None  # owner of the file (a projected token with runAsUser)


def validate_path(target: str) -> None:
    """A payload path: relative, no ``..`` element, not starting with ``..``, within length limits."""
    if not target:
        raise ValueError(f'invalid path: must not be empty: "{target}"')
    if target.startswith("/"):
        raise ValueError(f"invalid path: must be relative path: {target}")
    if len(target) > MAX_PATH_LENGTH:
        raise ValueError(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    items = target.split("/")
    for item in items:
        if item == "..":
            raise ValueError(f"invalid path: must not contain '..': {target}")
        if len(item) > MAX_FILE_NAME_LENGTH:
            raise ValueError(f"invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters")
    if items[0].startswith("..") and len(items[0]) > 2:
        raise ValueError(f"invalid path: must not start with '..': {target}")


def validate_payload(payload: Mapping[str, FileProjection]) -> dict[str, FileProjection]:
    clean: dict[str, FileProjection] = {}
    for path, projection in payload.items():
        validate_path(path)
        clean[posixpath.normpath(path)] = projection
    return clean


class AtomicWriter:
    def __init__(self, target_dir: str, log_context: str) -> None:
        self.target_dir = target_dir
        self.log_context = log_context

    def write(self, payload: Mapping[str, FileProjection], set_perms: Callable[[str], None] | None = None) -> bool:
        """Make the directory show ``payload``; True when anything was written.

        ``set_perms`` is called with the new timestamped directory's name before it goes live."""
        clean = validate_payload(payload)
        data_dir = os.path.join(self.target_dir, DATA_DIR_NAME)
        try:
            old_ts_dir = os.readlink(data_dir)
        except FileNotFoundError:
            old_ts_dir = ""
        old_ts_path = os.path.join(self.target_dir, old_ts_dir)
        paths_to_remove: set[str] = set()
        if old_ts_dir:
            paths_to_remove = self._paths_to_remove(clean, old_ts_path)
            if not paths_to_remove and not _should_write_payload(clean, old_ts_path):
                log.debug("%s: no update required for target directory %s", self.log_context, self.target_dir)
                return False

        ts_dir = self._new_timestamp_dir()
        ts_dir_name = os.path.basename(ts_dir)
        try:
            _write_payload_to_dir(clean, ts_dir)
            if set_perms is not None:
                set_perms(ts_dir_name)
            new_data_dir = os.path.join(self.target_dir, NEW_DATA_DIR_NAME)
            if os.path.lexists(new_data_dir):  # left by a write that died half-way
                os.remove(new_data_dir)
            os.symlink(ts_dir_name, new_data_dir)
            os.rename(new_data_dir, data_dir)
        except BaseException:
            shutil.rmtree(ts_dir, ignore_errors=True)
            raise
        self._create_user_visible_files(clean)
        for path in paths_to_remove:
            if "/" not in path:  # only the top-level symlinks live outside the data directory
                os.remove(os.path.join(self.target_dir, path))
        if old_ts_dir:
            shutil.rmtree(old_ts_path)
        return True

    def _new_timestamp_dir(self) -> str:
        prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
        ts_dir = tempfile.mkdtemp(prefix=prefix, dir=self.target_dir)
        os.chmod(ts_dir, 0o755)
        return ts_dir

    @staticmethod
    def _paths_to_remove(payload: Mapping[str, FileProjection], old_ts_path: str) -> set[str]:
        old: set[str] = set()
        for root, dirs, files in os.walk(old_ts_path):
            rel = os.path.relpath(root, old_ts_path)
            for name in dirs + files:
                old.add(name if rel == "." else f"{rel}/{name}")
        new: set[str] = set()
        for path in payload:
            while path:
                new.add(path)
                path = posixpath.dirname(path)
        return old - new

    def _create_user_visible_files(self, payload: Mapping[str, FileProjection]) -> None:
        for path in payload:
            link_name = path.split("/", 1)[0]
            visible = os.path.join(self.target_dir, link_name)
            if not os.path.lexists(visible):
                os.symlink(os.path.join(DATA_DIR_NAME, link_name), visible)


def _should_write_payload(payload: Mapping[str, FileProjection], old_ts_path: str) -> bool:
    for path, projection in payload.items():
        try:
            with open(os.path.join(old_ts_path, path), "rb") as f:
                if f.read() != projection.data:
                    return True
        except FileNotFoundError:
            return True
    return False


def _write_payload_to_dir(payload: Mapping[str, FileProjection], directory: str) -> None:
    for path, projection in payload.items():
        full = os.path.join(directory, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, projection.mode)
        try:
            _write_all(fd, projection.data)
            os.fchmod(fd, projection.mode)  # open(2) applied the umask
            if projection.fs_user is not None:
                os.fchown(fd, projection.fs_user, -1)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
