"""How large a model to build on the device at hand: the papers' sizes on a GPU, the plugin's on a CPU.

The plugin's defaults (registry.PLUGIN_DEFAULTS: width 32, M3amba width 16 and depth 2) were chosen so
that 200 epochs finish in minutes on a 2-core CPU; on a GPU they waste the card. On CUDA a model is
built at its paper size (the constructors' defaults: CSSMamba and MambaHSI width 128, M3amba width 384
and depth 9) when the memory estimate says a training step fits the GPU, else at the largest halved
width that fits, down to the CPU size. Sizes the user sets (--set dim=…, the toolbox's width) are kept
as given. The model file records the config that ran, and the log says which size and why.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Tuple

import torch

from ..models.registry import PLUGIN_DEFAULTS, paper_config

__all__ = ["size_candidates", "choose_size"]

Size = Dict[str, Any]


def size_candidates(name: str) -> List[Size]:
    """Sizes to try on a GPU, largest first: the paper's, then its width halved while it stays above the
    plugin's CPU width (keeping the paper's depth), then the CPU size."""
    cpu = dict(PLUGIN_DEFAULTS.get(name, {}))
    if "dim" not in cpu:
        return [cpu]
    paper = {key: paper_config(name)[key] for key in cpu}
    candidates = [paper]
    width = paper["dim"] // 2
    while width > cpu["dim"] and width % 4 == 0:
        candidates.append(dict(paper, dim=width))
        width //= 2
    if cpu not in candidates:
        candidates.append(cpu)
    return candidates


def choose_size(name: str, device: torch.device, overrides: Mapping[str, Any],
                fits: Callable[[Size], bool]) -> Tuple[Size, str]:
    """(size options to build ``name`` with, why). The size options the user set (``overrides``) are
    left out: only the others are chosen. ``fits(size)`` answers whether a training step at that size
    (with the user's options) fits the device's memory budget; it is only asked on CUDA, largest first."""
    def free(size: Size) -> Size:
        return {key: value for key, value in size.items() if key not in overrides}

    cpu = free(PLUGIN_DEFAULTS.get(name, {}))
    user = "; " + ", ".join(f"{key} set by the user" for key in PLUGIN_DEFAULTS.get(name, {}) if key in overrides)
    user = user if len(user) > 2 else ""
    if not cpu:
        return {}, "set by the user"
    if device.type != "cuda":
        return cpu, "the plugin's CPU size" + user
    candidates: List[Size] = []
    for size in map(free, size_candidates(name)):
        if size not in candidates:
            candidates.append(size)
    for i, size in enumerate(candidates):
        if fits(size):
            return size, ("the paper's size; it fits the GPU" if i == 0 else
                          "the largest size that fits the GPU (the paper's does not)") + user
    return cpu, "the plugin's CPU size: no larger size fits the GPU memory" + user
