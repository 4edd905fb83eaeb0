"""Per-GPU ring buffers of recent samples, for the history charts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from hivetui.model import GpuSample

DEFAULT_POINTS = 600  # ten minutes at one sample a second


@dataclass(slots=True)
class GpuHistory:
    """The last ``maxlen`` readings of one GPU, one deque per metric.

    ``None`` readings are kept as ``nan`` so every series stays aligned with
    ``times``.
    """

    maxlen: int = DEFAULT_POINTS
    times: deque[float] = field(init=False)
    utilization: deque[float] = field(init=False)
    memory_pct: deque[float] = field(init=False)
    temperature: deque[float] = field(init=False)
    power: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.times = deque(maxlen=self.maxlen)
        self.utilization = deque(maxlen=self.maxlen)
        self.memory_pct = deque(maxlen=self.maxlen)
        self.temperature = deque(maxlen=self.maxlen)
        self.power = deque(maxlen=self.maxlen)

    def append(self, at: float, gpu: GpuSample) -> None:
        nan = float("nan")
        self.times.append(at)
        self.utilization.append(nan if gpu.utilization_pct is None else gpu.utilization_pct)
        mem = gpu.memory_pct
        self.memory_pct.append(nan if mem is None else mem)
        self.temperature.append(nan if gpu.temperature_c is None else gpu.temperature_c)
        self.power.append(nan if gpu.power_w is None else gpu.power_w)

    def __len__(self) -> int:
        return len(self.times)
