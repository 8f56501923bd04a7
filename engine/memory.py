"""How much memory this machine has, how much is free now (without a psutil dependency), and handing
freed heap memory back to the system."""

from __future__ import annotations

import ctypes
import functools
import os
import traceback
from typing import Any, Callable, Optional, Tuple, TypeVar

__all__ = ["physical_memory_bytes", "available_memory_bytes", "gigabytes", "release_free_heap",
           "gives_back_heap"]


def _windows_memory() -> Optional[Tuple[int, int]]:
    """(total, available) physical memory on Windows, None elsewhere or when the call fails."""
    if os.name != "nt":
        return None
    import ctypes

    class _MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("sullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = _MemoryStatus()
    status.dwLength = ctypes.sizeof(_MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.ullTotalPhys), int(status.ullAvailPhys)


def physical_memory_bytes() -> Optional[int]:
    """Installed RAM, or None when the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    windows = _windows_memory()
    return None if windows is None else windows[0]


def available_memory_bytes() -> Optional[int]:
    """Memory a new allocation can get now: Linux's MemAvailable, Windows' available physical memory,
    else the free physical pages; where the platform says none of these (macOS), the installed RAM, so
    that an allocation beyond it is still refused. None when nothing is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    windows = _windows_memory()
    if windows is not None:
        return windows[1]
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return physical_memory_bytes()


def gigabytes(n_bytes: float) -> str:
    """'7.42 TiB', '3.6 GiB', '512 MiB' for messages."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30)):
        if n_bytes >= size:
            return f"{n_bytes / size:,.2f} {unit}"
    return f"{n_bytes / 2**20:,.0f} MiB"


@functools.lru_cache(maxsize=None)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, looked up once; None on other C libraries (musl, macOS) and Windows."""
    if os.name != "posix":
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim              # the C library the process runs on
    except (OSError, AttributeError):                    # not glibc: no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Hand the heap memory that is free but kept by the allocator back to the system (glibc's
    ``malloc_trim(0)``); True where that was done, False on other C libraries (musl, macOS, Windows).

    Why: glibc keeps freed buffers below its (self-raising) mmap threshold in the heap for reuse, and
    QGIS lives on after a job. After CSSMamba trained on the 1000 x 1000 x 224 px scene's label windows
    (on a worker thread, as in QGIS) the process still held 2.04 GB, 0.64 GB once trimmed; after classifying
    that scene 0.77 GB, 0.40 GB (bench/results/scale_heap.md). Trimming during a job does not lower its peak:
    that is fragmentation inside each tile, which only a fixed mmap threshold removes, at 1.35 to 1.7 times
    the time (bench/results/allocator_classify.md).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


Job = TypeVar("Job", bound=Callable[..., Any])


def gives_back_heap(job: Job) -> Job:
    """Decorate a job (training, classification) to ``release_free_heap`` when it ends, however it ends,
    once the arrays only it held are gone: when it raises (a cancel, an error), the exception's traceback
    would keep the job's frames and their arrays alive, so their locals are cleared first (the line numbers
    stay in the traceback)."""
    @functools.wraps(job)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return job(*args, **kwargs)
        except BaseException as error:
            traceback.clear_frames(error.__traceback__)
            raise
        finally:
            release_free_heap()
    return run  # type: ignore[return-value]
