"""Can this node serve the run? Checked in the job before anything is trained or written.

A job that asked for a GPU must get a usable one, with kernels in this PyTorch build for its
compute capability, and the precision asked for must exist on it; otherwise the job stops at once
with one `error:` line naming the node, the GPU, the build and what to do, and exit status 78
(EX_CONFIG), instead of failing on its first CUDA kernel or training on the CPU for days.

`python -m al_core.preflight` prints the same facts for the node it runs on (the README's
"check a node" command).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import asdict, dataclass

from al_core import results
from al_core.errors import NodeError  # noqa: F401  (re-exported: `preflight.NodeError`)


# SLURM sets these in a job that was given GPUs (--gpus, --gres=gpu:N, --gpus-per-node, ...).
SLURM_GPU_COUNTS = ("SLURM_GPUS", "SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_TASK")  # "0": none
SLURM_GPU_INDICES = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS")  # lists of allocated GPU indices, e.g. "0" or "0,1"
# The sbatch script sets this when the profile asks for GPUs (profiles.Resources.gpus > 0).
EXPECT_GPU_VAR = "AL_EXPECT_GPU"

# Kernel architectures of PyTorch's published Linux CUDA builds (torch 2.14), by wheel tag; the
# authoritative list of an installed build is torch.cuda.get_arch_list(). Used on the login node,
# where no GPU is visible, to check a profile's `torch_build` against its partitions' GPUs.
BUILD_ARCHS = {
    "cu126": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),  # Maxwell .. Hopper, Volta included
    "cu128": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),  # Turing .. Blackwell
    "cu129": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    "cu130": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),  # PyPI's default torch 2.14 wheel
}


def _cap(cap) -> tuple[int, int]:
    if isinstance(cap, str):
        major, _, minor = cap.partition(".")
        return int(major), int(minor or 0)
    return int(cap[0]), int(cap[1])


def serves(arch_list, capability) -> bool:
    """Do kernels built for `arch_list` run on a GPU of `capability`?

    A cubin `sm_XY` runs on devices X.Z with Z >= Y (same major: binary compatibility within a
    family); PTX `compute_XY` is compiled by the driver for any device >= X.Y.
    """
    major, minor = _cap(capability)
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit():
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def has_native_bf16(capability) -> bool:
    """bf16 arithmetic in hardware: Ampere (8.0) and later. V100 (7.0) and T4 (7.5) emulate it slowly."""
    return _cap(capability) >= (8, 0)


def resolve_precision(requested: str, device_type: str, capability=None) -> str:
    """The precision a run trains in: `auto` = bf16 only on GPUs with native bf16, else fp32.

    `bf16` on a GPU without native bf16 raises NodeError; on a CPU autocast is not used, so the
    run trains in fp32 and says so.
    """
    if device_type != "cuda":
        return "fp32"
    native = capability is not None and has_native_bf16(capability)
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        cap = "unknown" if capability is None else "%d.%d" % _cap(capability)
        raise NodeError(
            f"train.precision=bf16 but this GPU (compute capability {cap}) has no native bf16; "
            "use train.precision=auto or fp32, or a partition with Ampere or newer GPUs"
        )
    return requested


def gpu_expected(env=None) -> bool:
    """Did this job ask for a GPU? The profile says so (AL_EXPECT_GPU=1), or SLURM gave it GPUs."""
    env = os.environ if env is None else env
    if env.get(EXPECT_GPU_VAR, "") not in ("", "0"):
        return True
    if any(env.get(v, "") not in ("", "N/A") for v in SLURM_GPU_INDICES):
        return True
    return any(env.get(v, "").rpartition(":")[2] not in ("", "0", "N/A") for v in SLURM_GPU_COUNTS)


@dataclass
class NodeReport:
    host: str
    torch: str
    build_cuda: str | None  # CUDA version the build was compiled against (None: CPU-only build)
    build_archs: list[str]
    cuda_available: bool
    gpu: str | None
    capability: str | None
    served: bool | None  # None without a GPU
    native_bf16: bool | None
    precision_auto: str
    gpu_expected: bool
    problem: str | None = None


def inspect(env=None) -> NodeReport:
    """What this node and this PyTorch build offer (never raises)."""
    import torch

    archs = list(torch.cuda.get_arch_list()) if torch.version.cuda else []
    problem = None
    try:
        available = torch.cuda.is_available()
    except Exception as e:  # a broken driver can raise here
        available, problem = False, f"CUDA unusable ({e})"
    gpu = cap = None
    if available:
        try:
            gpu = torch.cuda.get_device_name(0)
            cap = "%d.%d" % torch.cuda.get_device_capability(0)
        except Exception as e:
            available, problem = False, f"CUDA unusable ({e})"
    return NodeReport(
        host=socket.gethostname(),
        torch=torch.__version__,
        build_cuda=torch.version.cuda,
        build_archs=archs,
        cuda_available=available,
        gpu=gpu,
        capability=cap,
        served=None if cap is None else serves(archs, cap),
        native_bf16=None if cap is None else has_native_bf16(cap),
        precision_auto=resolve_precision("auto", "cuda" if available else "cpu", cap),
        gpu_expected=gpu_expected(env),
        problem=problem,
    )


def check(device_pref: str = "auto", precision: str = "auto", env=None, report: NodeReport | None = None) -> NodeReport:
    """Raise NodeError when this node cannot serve a run with these settings; else return the facts."""
    r = report or inspect(env)
    build = f"torch {r.torch} (CUDA {r.build_cuda}, kernels {' '.join(r.build_archs) or 'none'})"
    if device_pref != "cpu" and (r.gpu_expected or device_pref == "cuda") and not r.cuda_available:
        why = r.problem or ("this PyTorch build has no CUDA" if not r.build_cuda else "no CUDA device is visible")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset") if env is None else env.get("CUDA_VISIBLE_DEVICES", "unset")
        raise NodeError(
            f"node {r.host}: the job asked for a GPU but {why} (CUDA_VISIBLE_DEVICES={visible}; {build}); "
            "check the partition (-p) and --gpus, run `python -m al_core.preflight` on the node, "
            "or set train.device=cpu on purpose"
        )
    if r.cuda_available and device_pref != "cpu":
        if not r.served:
            raise NodeError(
                f"node {r.host}: GPU {r.gpu} (compute capability {r.capability}) has no kernels in {build}; "
                "install a build that covers it (make env: the profile's torch_build, e.g. cu126 for V100s) "
                "or choose another partition"
            )
        try:
            resolve_precision(precision, "cuda", r.capability)
        except NodeError as e:
            raise NodeError(f"node {r.host}: GPU {r.gpu}: {e}") from None
    return r


def main(argv: list[str] | None = None) -> int:
    """Print what this node offers; exit 78 if a job here could not use the GPU it asked for."""
    as_json = "--json" in (argv if argv is not None else sys.argv[1:])
    r = inspect()
    status = 0
    try:
        check(report=r)
    except NodeError as e:
        r.problem, status = str(e), results.EXIT_NODE
    if as_json:
        print(json.dumps(asdict(r), indent=2))
    else:
        print(f"host          {r.host}")
        print(f"torch         {r.torch}, CUDA {r.build_cuda or 'none (CPU-only build)'}")
        print(f"build kernels {' '.join(r.build_archs) or '-'}")
        print(f"GPU           {r.gpu or 'none visible'}" + (f", compute capability {r.capability}" if r.capability else ""))
        if r.capability:
            print(f"served        {'yes' if r.served else 'NO: no kernels for this GPU in this build'}")
            print(f"native bf16   {'yes' if r.native_bf16 else 'no'} (train.precision=auto trains in {r.precision_auto})")
        if r.problem:
            print(f"error: {r.problem}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
