"""How much memory this machine has, and how much is free now, without a psutil dependency."""

from __future__ import annotations

import os
from typing import Optional, Tuple

__all__ = ["physical_memory_bytes", "available_memory_bytes", "gigabytes"]


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
