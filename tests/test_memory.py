"""Handing freed heap memory back to the system after a job (QGIS lives on after it)."""

import sys
import weakref

import pytest
import torch

from engine import memory


def resident_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_freed_heap_memory_kept_by_the_allocator_goes_back_to_the_system():
    if not memory.release_free_heap():
        pytest.skip("not glibc (musl): no malloc_trim")
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


def test_a_failed_job_s_arrays_are_freed_before_the_heap_is_given_back(monkeypatch):
    """The traceback of a cancel or an error holds the job's frames; their arrays must not outlive the release."""
    alive_at_release = []
    held = []
    monkeypatch.setattr(memory, "release_free_heap", lambda: alive_at_release.append(held[0]() is not None))

    @memory.gives_back_heap
    def job() -> None:
        cube = torch.zeros(1000)
        held.append(weakref.ref(cube))
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled") as caught:
        job()
    assert alive_at_release == [False]
    assert caught.traceback[-1].lineno > 0                  # where it failed is still known


def test_the_jobs_a_qgis_session_runs_give_back_the_heap(monkeypatch, tmp_path):
    from engine import pipeline, suggest

    calls = []
    monkeypatch.setattr(memory, "release_free_heap", lambda: calls.append(1) or True)
    missing = str(tmp_path / "missing.pt")
    with pytest.raises(ValueError):
        pipeline.train_from_files(missing, str(tmp_path / "m.pt"), labels=missing, sampling="tiles")
    with pytest.raises((ValueError, FileNotFoundError)):
        pipeline.classify_file(missing, missing, str(tmp_path / "c.tif"))
    with pytest.raises((ValueError, FileNotFoundError)):
        suggest.suggest_file(missing, missing, str(tmp_path / "s.gpkg"))
    assert calls == [1, 1, 1]
