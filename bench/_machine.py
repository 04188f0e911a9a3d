"""What a timing needs beside the clock: the machine stamp, peak memory, FLOPs and device peaks.

Every number a benchmark writes carries `stamp()`: host, device, torch version, threads, commit.
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from al_core.telemetry import device_name

ROOT = Path(__file__).resolve().parents[1]

# Training FLOPs per image (forward + backward = 3 x forward) of the CIFAR ResNets at 32 x 32,
# width 64 (3 x the forward FLOPs torch.utils.flop_counter counts); other widths and sizes scale
# as width^2 x pixels (the 3-channel stem and the final layer do not: +1% at width 16, +2% at 8).
TRAIN_GFLOP_PER_IMAGE = {"resnet18": 3.33, "resnet34": 6.96, "resnet50": 7.79}
REF_WIDTH, REF_SIZE = 64, 32

# Dense bf16 peak in TFLOP/s by a substring of torch.cuda.get_device_name(), first match wins
# (V100 has no bf16: its fp16 tensor-core peak). Unknown device: None, printed as n/a.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("A100", 312.0),
    ("V100", 125.0),
    ("RTX 6000 Ada", 364.0),
)


def train_flops_per_image(model: str, width: int = REF_WIDTH, size: int = REF_SIZE) -> float:
    """Training FLOPs of one image (forward + backward)."""
    return TRAIN_GFLOP_PER_IMAGE[model] * 1e9 * (width / REF_WIDTH) ** 2 * (size / REF_SIZE) ** 2


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None (CPU, unknown GPU)."""
    return peak_flops_of(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def peak_flops_of(name: str) -> float | None:
    """Dense bf16 peak in FLOP/s of a GPU named as torch.cuda.get_device_name() names it."""
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12
    return None


def mfu(img_per_s: float, flops_per_image: float, peak: float | None) -> float | None:
    """Model-FLOPs utilisation: achieved model FLOP/s over the device's peak (None where unknown)."""
    return None if peak is None else img_per_s * flops_per_image / peak


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def stamp(device: torch.device) -> dict:
    """Where and with what a number was measured."""
    import torchvision

    commit, dirty = "", None
    try:
        git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=5)  # noqa: E731
        commit = git("rev-parse", "--short", "HEAD").stdout.strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "host": socket.gethostname(),
        "device": device_name(device),
        "device_type": device.type,
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,  # others' work on shared cores
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "git_commit": commit or None,
        "git_dirty": dirty,  # tracked files modified since the commit
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class PeakMemory:
    """Peak memory between `reset()` and `read()`.

    CUDA: the caching allocator's peak (`max_memory_allocated`). CPU on Linux: the process's peak
    resident set (VmHWM, reset through /proc/self/clear_refs), which includes Python and torch
    themselves. Elsewhere None.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else ("process_peak_rss" if _rss_resettable() else None)

    def reset(self) -> None:
        if self.kind == "cuda_max_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.kind == "process_peak_rss":
            Path("/proc/self/clear_refs").write_text("5")

    def read(self) -> int | None:
        if self.kind == "cuda_max_allocated":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "process_peak_rss":
            return _vm_hwm()
        return None


def _vm_hwm() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_resettable() -> bool:
    if _vm_hwm() is None:
        return False
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timings(images: int, times: list[float]) -> dict:
    median = statistics.median(times)
    # best_img_per_s (the fastest pass) shows what the median lost to other work on shared cores.
    return {
        "img_per_s": images / median,
        "best_img_per_s": images / min(times),
        "images_per_rep": images,
        "median_s": median,
        "times_s": [round(t, 6) for t in times],
    }


def side_by_side(fns: dict[str, Callable[[], int]], reps: int, warmup: int, device: torch.device, mem: PeakMemory) -> dict:
    """`repeat` for several passes at once, interleaved: every repetition times each pass in turn,
    so a machine that slows down or speeds up (shared cores, frequency) weighs on all of them alike.
    Each result also has `peak_mem_bytes`, the largest over its timed passes."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    images, peaks = dict.fromkeys(fns, 0), dict.fromkeys(fns, None)
    for _ in range(reps):
        for key, fn in fns.items():
            sync(device)
            mem.reset()
            t0 = time.perf_counter()
            images[key] = fn()
            sync(device)
            times[key].append(time.perf_counter() - t0)
            peak = mem.read()
            peaks[key] = peak if peaks[key] is None or peak is None else max(peaks[key], peak)
    return {k: {**_timings(images[k], times[k]), "peak_mem_bytes": peaks[k]} for k in fns}


def repeat(fn: Callable[[], int], reps: int, warmup: int, device: torch.device) -> dict:
    """Run `fn` (returns images processed) `warmup` times untimed, then `reps` times timed.

    The device is synchronised around every timed repetition; the result is the median.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times, images = [], 0
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        images = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return _timings(images, times)
