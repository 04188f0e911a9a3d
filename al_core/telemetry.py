"""Device facts per cycle: device name, peak device memory (torch.cuda), GPU energy (NVML).

Everything here degrades to None where the device does not report it (CPU, old GPUs, no NVML).
"""

from __future__ import annotations

import torch


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


class CycleMeter:
    """Peak memory and energy between `start()` and `stop()`; both None on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._nvml = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml.nvmlDeviceGetHandleByPciBusId(_pci_bus_id(device))
                pynvml.nvmlDeviceGetTotalEnergyConsumption(self._nvml)  # raises where unsupported
            except Exception:
                self._nvml = None
        self._energy0: int | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._energy0 = self._energy_mj()

    def cycle_costs(self, before: dict) -> tuple[int | None, float | None]:
        """Peak memory and energy of the cycle so far: earlier processes' share (`before`, a
        checkpoint's timing) plus this process's since `start()`."""
        peak, energy = self.peak_mem_bytes(), self.energy_j()
        before_peak, before_energy = before.get("peak_mem_bytes"), before.get("energy_j")
        if peak is not None or before_peak is not None:
            peak = max(peak or 0, before_peak or 0)
        if energy is not None or before_energy is not None:
            energy = (energy or 0.0) + (before_energy or 0.0)
        return peak, energy

    def peak_mem_bytes(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))

    def energy_j(self) -> float | None:
        now = self._energy_mj()
        if now is None or self._energy0 is None:
            return None
        return (now - self._energy0) / 1000.0

    def _energy_mj(self) -> int | None:
        if self._nvml is None:
            return None
        try:
            import pynvml

            return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._nvml))
        except Exception:
            return None


def _pci_bus_id(device: torch.device) -> str:
    props = torch.cuda.get_device_properties(device)
    return f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
