"""GPU energy over a timed window, from NVML's cumulative energy counter (``nvidia-ml-py``, extra ``gpu``).

``nvmlDeviceGetTotalEnergyConsumption`` returns the millijoules the board consumed since the driver
loaded (Volta and newer). The difference across the timed window, divided by the clips it processed,
is joules per clip: the whole board (idle power included) over a window in which this process ran
back-to-back forwards. Elsewhere (CPU, no NVML, an older GPU) the figure is absent (None), never zero.
"""
from __future__ import annotations

import typing as tp

import torch


class EnergyMeter:
    """``start()`` ... ``stop()`` -> joules consumed by the CUDA device in between, or None."""

    def __init__(self, device: torch.device, nvml: tp.Any = None):
        self.device, self.reason, self._handle, self._start = torch.device(device), None, None, None
        if self.device.type != "cuda":
            self.reason = "not a CUDA device"
            return
        try:
            self._nvml = nvml if nvml is not None else _import_nvml()
            self._nvml.nvmlInit()
            self._handle = _handle_of(self._nvml, self.device)
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except Exception as err:  # no library, no driver, or a GPU without the counter
            self._handle, self.reason = None, f"NVML energy counter unavailable: {type(err).__name__}: {err}"

    @property
    def available(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self.available:
            torch.cuda.synchronize(self.device)
            self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def stop(self) -> tp.Optional[float]:
        if not self.available or self._start is None:
            return None
        torch.cuda.synchronize(self.device)
        millijoules = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start
        self._start = None
        return millijoules / 1e3


def _import_nvml():
    import pynvml  # provided by nvidia-ml-py

    return pynvml


def _handle_of(nvml, device: torch.device):
    """The NVML handle of torch's ``device`` (matched by UUID: CUDA_VISIBLE_DEVICES may renumber)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
    if uuid:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            nv_uuid = nvml.nvmlDeviceGetUUID(handle)
            nv_uuid = nv_uuid.decode() if isinstance(nv_uuid, bytes) else str(nv_uuid)
            if nv_uuid.replace("GPU-", "") == uuid.replace("GPU-", ""):
                return handle
    return nvml.nvmlDeviceGetHandleByIndex(index)
