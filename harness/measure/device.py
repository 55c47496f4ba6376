"""The device a cell, a fine-tune or a benchmark runs on, and the switches that change its numbers."""
from __future__ import annotations


def resolve_device(name: str = "auto"):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error, not a silent CPU run."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but no CUDA device is available")
    return torch.device(name)


def device_name(device) -> str:
    """The GPU's name, or ``cpu (<processor>)``."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from harness.provenance import machine

    return f"cpu ({machine()['processor']})"


def numerics_state(device, precision: str) -> dict:
    """Precision (the autocast dtype of the forwards) and the kernel switches that change speed or results."""
    import torch

    out = {"precision": precision, "matmul_precision": torch.get_float32_matmul_precision()}
    if device.type == "cuda":
        out.update({"allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                    "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
                    "sdpa_flash": torch.backends.cuda.flash_sdp_enabled(),
                    "sdpa_mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                    "sdpa_math": torch.backends.cuda.math_sdp_enabled(),
                    "cuda": torch.version.cuda})
    return out
