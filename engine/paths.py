"""Where a job's files go: the checks that keep a run from destroying its own inputs, the names of the
temporaries that outputs are written under, and the removal of temporaries a killed run left behind.

One rule for every job (train, classify, evaluate, …): no output may resolve (symlinks followed, case
folded where the platform folds it) to any input or to another output of the same run, and every
output's folder must exist and be writable. It runs before any work, so a mistyped path costs a
second, not a model or a raster.

Temporaries are hidden files beside their output, named ``.<output name>.<pid>-<random><suffix>``.
A run that is killed (``kill -9``, a power cut) cannot delete them; the next run to the same output
removes those of its own naming pattern whose process is gone (``remove_stale_temporaries``). Files
of a process that is still running are left alone, so two runs never delete each other's work.
No GDAL and no torch here.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["check_writable", "check_distinct", "temporary_file", "remove_stale_temporaries", "describe_write_error",
           "free_space_text"]

log = logging.getLogger(__name__)

PathList = Union[None, str, Sequence[Optional[str]]]


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


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
    """Refuse, before any work, a run whose outputs would overwrite one of its inputs or each other.

    ``inputs`` / ``outputs``: {what (e.g. "raster", "model file"): path or list of paths or None}.
    Each output must also be writable (check_writable). The message names both paths and the fix.
    """
    sources = {_key(path): (what, path) for what, path in _named(inputs)}
    taken: dict = {}
    for what, path in _named(outputs):
        key = _key(path)
        if key in sources:
            source_what, source = sources[key]
            same = "is" if os.path.abspath(path) == os.path.abspath(source) else "resolves to"
            raise ValueError(f"the {what} {path} {same} the input {source_what} {source}: writing it would destroy "
                             f"the input; give the {what} another file name")
        if key in taken:
            other_what, other = taken[key]
            raise ValueError(f"the {what} {path} and the {other_what} {other} are the same file; give each output "
                             f"its own file name")
        taken[key] = (what, path)
        check_writable(path, what)


def _pattern(path: str, suffix: str) -> "re.Pattern[str]":
    name = os.path.basename(path)
    return re.compile(rf"^\.{re.escape(name)}\.(?P<pid>\d+)-[A-Za-z0-9_]+{re.escape(suffix)}(\.aux\.xml)?$")


def temporary_file(path: str, suffix: str) -> str:
    """Create (empty) and return a hidden temporary beside ``path`` that this module's cleanup knows.

    OSError when the folder cannot be written to."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, name = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(handle)
    return name


def _process_is_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):  # exists (another user's), or the platform cannot tell: keep the file
        return False
    return False


def remove_stale_temporaries(path: str, suffixes: Sequence[str]) -> List[str]:
    """Delete the temporaries of ``path`` (with these suffixes) left by runs whose process is gone;
    returns what was removed. A file that cannot be removed is logged and left."""
    folder = os.path.dirname(os.path.abspath(path))
    patterns = [_pattern(path, suffix) for suffix in suffixes]
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        match = next((m for m in (p.match(name) for p in patterns) if m), None)
        if match is None or not _process_is_gone(int(match.group("pid"))):
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


def free_space_text(folder: str) -> str:
    """'12.3 MB free' for messages, '' when the platform cannot tell."""
    try:
        import shutil

        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f"{free / 1e6:,.1f} MB free"


def _nearly_full(folder: str) -> bool:
    try:
        import shutil

        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


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


def write_text_atomic(path: str, text: str, what: str) -> None:
    """Write ``text`` through a temporary beside ``path`` and rename it over ``path``: a reader never sees a
    half-written file, and a failure (a full disk) leaves what was there before and raises OSError with
    a message that says what to do."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write the {what} {path}: the folder {folder} does not exist; create it first")
    if os.path.isdir(path):
        raise OSError(f"cannot write the {what} {path}: it is a folder; give a file name")
    remove_stale_temporaries(path, [".tmp"])
    try:
        temporary = temporary_file(path, ".tmp")
    except OSError as exc:
        raise OSError(f"cannot write the {what} {path}: {exc.strerror} in {folder}; choose a writable folder") from None
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's permissions
        os.replace(temporary, path)
    except OSError as exc:
        os.unlink(temporary)
        raise OSError(describe_write_error(exc, path, what)) from exc
    except BaseException:
        os.unlink(temporary)
        raise
