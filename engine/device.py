"""The one rule for turning a user's device choice ('auto', 'cpu', 'cuda') into a torch device."""

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str) -> torch.device:
    """'auto' = CUDA when PyTorch sees a GPU, else CPU; 'cuda' without a GPU -> ValueError (never a silent CPU run)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but PyTorch sees no CUDA GPU; use device 'cpu' or 'auto'")
    return resolved
