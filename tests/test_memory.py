"""Handing freed heap memory back to the system after a job (QGIS lives on after it)."""

import sys

import pytest
import torch

from engine import memory


def resident_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_freed_heap_memory_kept_by_the_allocator_goes_back_to_the_system():
    blocks = [torch.ones(16_000) for _ in range(5000)]      # 64 KB each: the heap, not mmap
    kept = blocks[::50]                                     # live blocks spread over it: the heap cannot shrink
    del blocks
    before = resident_mb()
    assert memory.release_free_heap() is True
    assert before - resident_mb() > 150                     # of the 310 MB freed
    assert len(kept) == 100


def test_a_job_gives_back_the_heap_however_it_ends(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_free_heap", lambda: calls.append(1) or True)

    @memory.gives_back_heap
    def job(fail: bool) -> str:
        """A job."""
        if fail:
            raise ValueError("bad input")
        return "done"

    assert job(False) == "done" and job.__doc__ == "A job."
    with pytest.raises(ValueError, match="bad input"):
        job(True)
    assert calls == [1, 1]
