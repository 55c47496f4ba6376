"""The numerical regime of a forward: precision (autocast), the SDPA backend, and what to record about it.

    validate_precision("bf16", device)            # raises PrecisionError with the reason, else returns it
    with autocast_context(device, "bf16"):        # torch.autocast; fp32 is a no-op context
        model(x)
    with sdpa_backend_context("efficient"):       # torch.nn.attention.sdpa_kernel([...]); "auto": no-op
        model(x)

Precision is autocast around the forward (weights stay fp32, matmuls and attention run in the lower
precision), the way timm, STA and vid-TLDR time in mixed precision. fp16 needs CUDA: CPU autocast to
fp16 exists in recent torch but its kernels are neither fast nor what users run, so it is refused.
"""
from __future__ import annotations

import contextlib
import typing as tp

import torch

from harness.measure.choices import PRECISIONS, SDPA_BACKENDS

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    pass


class SdpaBackendError(ValueError):
    pass


def validate_precision(precision: str, device: tp.Union[str, torch.device]) -> str:
    """``precision`` if it can run on ``device``; else a ``PrecisionError`` saying why."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {'|'.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise PrecisionError(f"precision fp16 runs on CUDA only (device is {device.type}); "
                             "use bf16 or fp32 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}")
    return precision


def autocast_context(device: tp.Union[str, torch.device], precision: str) -> tp.ContextManager:
    """``torch.autocast`` to the precision's dtype on ``device`` (fp32: nothing)."""
    device = torch.device(device)
    validate_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def validate_sdpa_backend(name: str) -> str:
    if name not in SDPA_BACKENDS:
        raise SdpaBackendError(f"sdpa_backend must be one of {'|'.join(SDPA_BACKENDS)}, got {name!r}")
    return name


def sdpa_backend_context(name: str) -> tp.ContextManager:
    """Restrict ``scaled_dot_product_attention`` to one backend ("auto": torch's own choice).

    On CPU "flash" is the fused CPU kernel (``_scaled_dot_product_flash_attention_for_cpu``) and
    "efficient"/"cudnn" do not exist: a forward under them fails (see ``harness.measure.kernels``).
    """
    validate_sdpa_backend(name)
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name]
    return sdpa_kernel([backend])


@contextlib.contextmanager
def regime_context(device: tp.Union[str, torch.device], precision: str, sdpa_backend: str) -> tp.Iterator[None]:
    """Autocast and the SDPA backend restriction together (what every timed forward runs under)."""
    with autocast_context(device, precision), sdpa_backend_context(sdpa_backend):
        yield


def regime_record(device: tp.Union[str, torch.device], precision: str, sdpa_backend: str) -> dict:
    """What a record needs to say about the regime (the versions and the TF32 switches included, P13)."""
    device = torch.device(device)
    out = {"precision": precision, "sdpa_backend": sdpa_backend, "torch_version": torch.__version__,
           "cuda_version": torch.version.cuda, "device_type": device.type, "device_name": device_name(device)}
    if device.type == "cuda":
        out["allow_tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
        out["allow_tf32_cudnn"] = bool(torch.backends.cudnn.allow_tf32)
        out["cudnn_version"] = torch.backends.cudnn.version()
    return out


def device_name(device: tp.Union[str, torch.device]) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
