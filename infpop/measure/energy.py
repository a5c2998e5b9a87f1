"""The energy of a trial, from the GPUs' own energy counters (NVML, through nvidia-ml-py's pynvml).

`nvmlDeviceGetTotalEnergyConsumption` gives the millijoules a device has used since its driver
loaded (Volta and newer). The worker reads it on every GPU it sees right before a trial's first
batch and right after its last; the difference, summed over the devices, is the trial's energy.
It is the whole device's: anything else running on the GPU counts too. On the CPU, or where a
GPU has no counter, the record says why there is no reading instead of a number.
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from typing import Any

CPU_REASON = "no NVIDIA GPU: NVML energy counters are not available on the CPU"
SOURCE = "nvml"


@dataclass(frozen=True)
class Device:
    """One GPU of the worker, as NVML knows it."""

    index: int  # NVML's index (the order of nvidia-smi), not necessarily CUDA's
    name: str
    uuid: str
    handle: Any


def unavailable(reason: str) -> dict:
    """The energy record of a trial without a reading: every figure null, and why."""
    return {
        "joules": None,
        "average_power_w": None,
        "tokens_per_joule": None,
        "seconds": None,
        "source": None,
        "devices": [],
        "reason": reason,
    }


def energy_record(
    devices: list[Device], before_mj: list[int], after_mj: list[int], seconds: float, generated_tokens: int
) -> dict:
    """The accounting of one trial: joules per device and in all (the counters are millijoules),
    the average power over the window, and generated tokens per joule."""
    per_device = [(after - before) / 1000.0 for before, after in zip(before_mj, after_mj, strict=False)]
    joules = sum(per_device)
    record = {
        "joules": joules,
        "average_power_w": joules / seconds if seconds > 0 else None,
        "tokens_per_joule": generated_tokens / joules if joules > 0 else None,
        "seconds": seconds,
        "source": SOURCE,
        "devices": [
            {"index": d.index, "name": d.name, "uuid": d.uuid, "joules": j}
            for d, j in zip(devices, per_device, strict=False)
        ],
        "reason": None,
    }
    if joules <= 0:  # the counters update every few tens of ms: a reading of 0 is no measurement
        record.update(
            joules=None,
            average_power_w=None,
            tokens_per_joule=None,
            reason="the GPUs' energy counters did not advance during the trial (shorter than their update interval)",
        )
    return record


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_uuids() -> list[str] | None:
    """The UUIDs of the devices CUDA gives this process, in CUDA's order (torch), or None where
    torch cannot say. CUDA's order (fastest first) need not be NVML's (PCI bus): the UUID is what
    ties a CUDA device to its NVML counter."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        uuids = [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - an older torch without the uuid: fall back to the indices
        return None
    return [u if u.startswith(("GPU-", "MIG-")) else f"GPU-{u}" for u in uuids]


class EnergyMeter:
    """Reads the energy counters of the worker's GPUs around each trial."""

    def __init__(
        self, nvml=None, devices: list[Device] | None = None, reason: str | None = None, clock=time.perf_counter
    ):
        self.nvml, self.devices, self.reason, self.clock = nvml, devices or [], reason, clock
        self.before: list[int] | None = None
        self.read_failure: str | None = None  # why this trial's first reading failed
        self.started = 0.0

    @classmethod
    def open(
        cls, device: str, nvml=None, cuda_uuids: list[str] | None = None, visible: str | None = None
    ) -> EnergyMeter:
        """A meter of the GPUs this process sees (`cuda_uuids`, default torch's; else the
        CUDA_VISIBLE_DEVICES indices), or one that says why it has none."""
        if device != "cuda":
            return cls(reason=CPU_REASON)
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError:
                return cls(reason="nvidia-ml-py (module pynvml) is not installed: no NVML energy counters")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return cls(reason=f"NVML did not start ({_text(exc)}): no energy counters")
        try:
            handles = cls._handles(
                nvml,
                _cuda_uuids() if cuda_uuids is None else cuda_uuids,
                os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible,
            )
            devices = []
            for handle in handles:
                devices.append(
                    Device(
                        int(nvml.nvmlDeviceGetIndex(handle)),
                        _text(nvml.nvmlDeviceGetName(handle)),
                        _text(nvml.nvmlDeviceGetUUID(handle)),
                        handle,
                    )
                )
            for d in devices:
                try:
                    nvml.nvmlDeviceGetTotalEnergyConsumption(d.handle)
                except nvml.NVMLError_NotSupported:
                    return cls(reason=f"GPU {d.index} ({d.name}) has no NVML energy counter (Volta or newer has)")
        except nvml.NVMLError as exc:
            return cls(reason=f"NVML could not read the GPUs ({_text(exc)}): no energy counters")
        if not devices:
            return cls(reason="NVML sees none of this process's GPUs: no energy counters")
        return cls(nvml, devices)

    @staticmethod
    def _handles(nvml, uuids: list[str] | None, visible: str | None) -> list:
        if uuids:
            return [nvml.nvmlDeviceGetHandleByUUID(u) for u in uuids]
        entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
        if not entries:
            return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
        # Indices as NVML numbers them: CUDA's own order agrees where CUDA_DEVICE_ORDER=PCI_BUS_ID
        # or all GPUs are of one model (a node's usual case); torch's UUIDs, above, settle it.
        return [
            nvml.nvmlDeviceGetHandleByUUID(e) if not e.isdigit() else nvml.nvmlDeviceGetHandleByIndex(int(e))
            for e in entries
        ]

    def _read(self) -> list[int]:
        return [int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(d.handle)) for d in self.devices]

    def start(self) -> None:
        """Read the counters before a trial's first batch."""
        self.before, self.read_failure = None, None
        if self.reason is None:
            try:
                self.before = self._read()
            except self.nvml.NVMLError as exc:
                self.read_failure = f"NVML reading failed ({_text(exc)})"
        self.started = self.clock()

    def stop(self, generated_tokens: int) -> dict:
        """The trial's energy record, after its last batch."""
        seconds = self.clock() - self.started
        if self.reason is not None:
            return unavailable(self.reason)
        if self.before is None:
            return unavailable(self.read_failure or "the counters were not read at the trial's start")
        try:
            after = self._read()
        except self.nvml.NVMLError as exc:
            return unavailable(f"NVML reading failed ({_text(exc)})")
        return energy_record(self.devices, self.before, after, seconds, generated_tokens)
