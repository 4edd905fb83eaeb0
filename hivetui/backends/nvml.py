"""The local GPUs through NVML (pynvml), used where the driver's library loads.

Only for the machine hivetui runs on: remote hosts are read with nvidia-smi
over SSH, so nothing has to be installed on them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any, TypeVar

from hivetui.backends.nvidia import GpuRow

log = logging.getLogger(__name__)
T = TypeVar("T")
MIB = 1024 * 1024


def _utilization(nvml: Any, handle: Any) -> int:
    return int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)


class NvmlReader:
    """Reads every local GPU's table row through NVML."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml

    @classmethod
    def open(cls) -> NvmlReader | None:
        """A reader, or ``None`` where NVML is missing or no driver answers."""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError subclasses, OSError from ctypes
            log.info("NVML unavailable, using nvidia-smi: %s", exc)
            return None
        return cls(pynvml)

    def _maybe(self, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except self._nvml.NVMLError:
            return None

    def read(self) -> list[GpuRow]:
        nvml = self._nvml
        rows = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            util = self._maybe(partial(_utilization, nvml, handle))
            mem = self._maybe(partial(nvml.nvmlDeviceGetMemoryInfo, handle))
            temp = self._maybe(
                partial(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
            )
            power = self._maybe(partial(nvml.nvmlDeviceGetPowerUsage, handle))
            rows.append(
                GpuRow(
                    index=index,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization_pct=None if util is None else float(util),
                    memory_used_mib=None if mem is None else mem.used / MIB,
                    memory_total_mib=None if mem is None else mem.total / MIB,
                    temperature_c=None if temp is None else float(temp),
                    power_w=None if power is None else power / 1000.0,
                )
            )
        return rows

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()
