"""Where a job's files go: the checks that keep a run from destroying its own inputs, the names of the
temporaries that outputs are written under, and the removal of temporaries a killed run left behind.

One rule for every job (train, classify, evaluate, …): no output may be the same file as any input or
another output of the same run, and every output's folder must exist and be writable. "The same file"
means: the same path after symlinks, the same file on disk (device and inode, which also catches case-
insensitive disks and hard links), or any file a multi-file input consists of (a shapefile's .dbf/.shx,
an ENVI .hdr, GDAL's .aux.xml, a VRT's sources; GDAL lists them). It runs before any work, so a
mistyped path costs a second, not a model or a raster.

Temporaries are hidden files beside their output, named ``.<output name>.<host>-<pid>-<random><suffix>``.
A run that is killed (``kill -9``, a power cut) cannot delete them; the next run to the same output on
the same machine removes those of its own naming pattern whose process is gone
(``remove_stale_temporaries``). Files of a process that is still running, or of another machine writing
to a shared folder, are left alone, so two runs never delete each other's work. Temporaries of plugin
versions before this naming (``.<stem>.<random>.part.tif``) are removed once they are a day old.
No torch here; GDAL only to list an input's files, when it is installed.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import sys
import tempfile
import time
from typing import IO, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["check_writable", "check_distinct", "temporary_file", "remove_stale_temporaries", "describe_write_error",
           "free_space_text", "write_atomic", "write_text_atomic"]

log = logging.getLogger(__name__)

PathList = Union[None, str, Sequence[Optional[str]]]


LEGACY_AGE_SECONDS = 24 * 3600


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def _identity(path: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of an existing file, None otherwise or where the platform gives no inode."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if stat.st_ino else None


def _component_files(path: str) -> List[str]:
    """``path`` and every file GDAL reads with it (sidecars, a shapefile's parts, a VRT's sources)."""
    try:
        from osgeo import gdal
    except ImportError:  # a GPU machine without GDAL: the path alone
        return [path]
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        dataset = gdal.OpenEx(path)
        files = (dataset.GetFileList() or []) if dataset is not None else []
    except RuntimeError:
        files = []
    finally:
        gdal.PopErrorHandler()
    return [path] + [f for f in files if f != path]


def check_writable(path: str, what: str = "output") -> None:
    """Fail before hours of work, not after: the folder must exist and be writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write the {what} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write the {what} {path}: the folder {folder} is not writable; choose another path")
    if os.path.isdir(path):
        raise ValueError(f"cannot write the {what} {path}: it is a folder; give a file name")


def _named(paths: Mapping[str, PathList]) -> Iterable[Tuple[str, str]]:
    for what, value in paths.items():
        if not value:
            continue
        for path in ([value] if isinstance(value, str) else value):
            if path:
                yield what, path


def check_distinct(inputs: Mapping[str, PathList], outputs: Mapping[str, Optional[str]]) -> None:
    """Refuse, before any work, a run whose outputs would overwrite one of its inputs (or a file that is
    part of one) or each other; each output must also be writable (check_writable).

    ``inputs`` / ``outputs``: {what (e.g. "raster", "model file"): path or list of paths or None}. The
    message names both paths and the fix.
    """
    sources: dict = {}                                  # key -> (what, input path, how an output relates)
    for what, path in _named(inputs):
        for part in _component_files(path):
            relation = "resolves to" if part == path else "is part of"
            sources.setdefault(_key(part), (what, path, relation))
            identity = _identity(part)
            if identity is not None:
                sources.setdefault(identity, (what, path, "is the same file as" if part == path else "is part of"))
    taken: dict = {}
    for what, path in _named(outputs):
        keys = [_key(path)] + [k for k in [_identity(path)] if k is not None]
        clash = next((sources[k] for k in keys if k in sources), None)
        if clash is not None:
            source_what, source, relation = clash
            if os.path.abspath(path) == os.path.abspath(source):
                relation = "is"
            raise ValueError(f"the {what} {path} {relation} the input {source_what} {source}: writing it would "
                             f"destroy the input; give the {what} another file name")
        other = next((taken[k] for k in keys if k in taken), None)
        if other is not None:
            raise ValueError(f"the {what} {path} and the {other[0]} {other[1]} are the same file; give each output "
                             f"its own file name")
        for key in keys:
            taken[key] = (what, path)
        check_writable(path, what)


def _host() -> str:
    """This machine's name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _pattern(path: str, suffix: str) -> "re.Pattern[str]":
    name = os.path.basename(path)
    return re.compile(rf"^\.{re.escape(name)}\.(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[A-Za-z0-9_]+"
                      rf"{re.escape(suffix)}(\.aux\.xml)?$")


def _legacy_pattern(path: str, suffix: str) -> "re.Pattern[str]":
    """The names of plugin versions before the host and pid: ``.<stem>.<8 random chars><suffix>``."""
    stem = os.path.splitext(os.path.basename(path))[0] if suffix.endswith(".tif") else os.path.basename(path)
    return re.compile(rf"^\.{re.escape(stem)}\.[a-z0-9_]{{8}}{re.escape(suffix)}(\.aux\.xml)?$")


def temporary_file(path: str, suffix: str) -> str:
    """Create (empty) and return a hidden temporary beside ``path`` that this module's cleanup knows.

    OSError when the folder cannot be written to."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, name = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{_host()}-{os.getpid()}-", suffix=suffix,
                                    dir=folder)
    os.close(handle)
    return name


def _process_is_gone(pid: int) -> bool:
    """True only when this machine has no process ``pid`` (another user's process counts as alive)."""
    if pid == os.getpid():
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 87  # ERROR_INVALID_PARAMETER: no such process
        code = ctypes.c_ulong()
        alive = kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) and code.value == 259  # STILL_ACTIVE
        kernel32.CloseHandle(handle)
        return not alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists (another user's), or the platform cannot tell: keep the file
        return False
    return False


def _is_stale(name: str, folder: str, patterns: Sequence["re.Pattern[str]"],
              legacy: Sequence["re.Pattern[str]"]) -> bool:
    match = next((m for m in (p.match(name) for p in patterns) if m), None)
    if match is not None:
        return match.group("host") == _host() and _process_is_gone(int(match.group("pid")))
    if any(p.match(name) for p in legacy):
        try:
            return time.time() - os.path.getmtime(os.path.join(folder, name)) > LEGACY_AGE_SECONDS
        except OSError:
            return False
    return False


def remove_stale_temporaries(path: str, suffixes: Sequence[str]) -> List[str]:
    """Delete the temporaries of ``path`` (with these suffixes) left by runs whose process is gone;
    returns what was removed. A file that cannot be removed is logged and left."""
    folder = os.path.dirname(os.path.abspath(path))
    patterns = [_pattern(path, suffix) for suffix in suffixes]
    legacy = [_legacy_pattern(path, suffix) for suffix in suffixes]
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        if not _is_stale(name, folder, patterns, legacy):
            continue
        stale = os.path.join(folder, name)
        try:
            os.remove(stale)
        except OSError as error:
            log.warning("could not remove the stale temporary %s of an earlier, interrupted run: %s", stale,
                        error.strerror)
            continue
        removed.append(stale)
    if removed:
        log.info("removed %d temporary file(s) that an interrupted earlier run left beside %s", len(removed), path)
    return removed


def _free_bytes(folder: str) -> Optional[int]:
    try:
        import shutil

        return shutil.disk_usage(folder).free
    except OSError:
        return None


def free_space_text(folder: str) -> str:
    """'12.3 MB free' for messages, '' when the platform cannot tell."""
    free = _free_bytes(folder)
    return "" if free is None else f"{free / 1e6:,.1f} MB free"


def _nearly_full(folder: str) -> bool:
    free = _free_bytes(folder)
    return free is not None and free < 2**20


def describe_write_error(error: BaseException, path: str, what: str) -> str:
    """A sentence for a failed write of ``path``: the disk is full, or the OS's reason, and the way out."""
    folder = os.path.dirname(os.path.abspath(path))
    text = str(error)
    full = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)) or any(
        words in text.lower() for words in ("no space", "disk full", "write error", "io error", "file too large",
                                            "quota", "file write failed")) or _nearly_full(folder)
    space = free_space_text(folder)
    if full:
        return (f"cannot write the {what} {path}: the disk holding {folder} is full or refuses the write "
                f"({space + '; ' if space else ''}{' '.join(text.split())[:200]}); free some space or choose "
                f"a folder on another disk")
    return f"cannot write the {what} {path}: {' '.join(text.split())[:300]}; choose another folder"


def write_atomic(path: str, write: Callable[[IO[bytes]], None], what: str) -> None:
    """Call ``write(stream)`` on a temporary beside ``path``, fsync it, give it an ordinary file's
    permissions and rename it over ``path``: a reader never sees a half-written file, and a failure (a
    full disk) leaves what was there before and raises OSError with a message that says what to do."""
    try:
        check_writable(path, what)
    except ValueError as error:
        raise OSError(str(error)) from None
    remove_stale_temporaries(path, [".tmp"])
    folder = os.path.dirname(os.path.abspath(path))
    try:
        temporary = temporary_file(path, ".tmp")
    except OSError as exc:
        raise OSError(f"cannot write the {what} {path}: {exc.strerror} in {folder}; choose a writable folder") from None
    try:
        with open(temporary, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's permissions
        os.replace(temporary, path)
    except BaseException as exc:
        if os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise OSError(describe_write_error(exc, path, what)) from exc
        raise


def write_text_atomic(path: str, text: str, what: str) -> None:
    """``write_atomic`` of UTF-8 text."""
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")), what)
