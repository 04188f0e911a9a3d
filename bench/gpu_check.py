"""`make gpu-check`: check and measure a GPU node in one command (sized for 8 minutes on an H100-class GPU).

1. the node report (`python -m al_core.preflight`): device, compute capability, the build's kernel
   architectures, native bf16, and whether a job here would be refused (exit 78);
2. the `gpu`-marked tests (tests/test_gpu.py);
3. `make bench` at full width (bench.bench_train: project path vs DataLoader+PIL reference, eager
   and with CUDA graphs), and bench.bench_pack for ResNet18 (K = 1, 2, 4 runs on the GPU, the
   study's projected GPU-hours);
4. a timed 3-cycle run of the LL4AL recipe (jobs/ll4al.yaml: ResNet18 at width 64, SGD, 200
   epochs per cycle, learning_loss, 10,000-sample scoring subset, fp32 as the replication sweeps
   train) on CIFAR-shaped synthetic data, and the 10-cycle time projected from it.

One summary table on stdout and one JSON file (bench/results/gpu-check-<host>-<time>.json).
Needs, beside PyTorch: numpy, scikit-learn, pyyaml, pytest, submitit (`pip install -e '.[test]'`,
or the wheels of those packages on a node without internet). `--quick --device cpu` runs every
step at toy sizes on a CPU (how the test suite checks this script).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LL4AL = ROOT / "jobs" / "ll4al.yaml"
RUN_ID = "resnet18-sgd-learning_loss-t0"
PROTOCOL_CYCLES, TIMED_CYCLES = 10, 3


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="toy sizes (seconds): for tests, not for numbers")
    p.add_argument("--skip", nargs="*", default=[], choices=("tests", "bench", "pack", "run"), help="steps to leave out")
    p.add_argument("--json", type=Path, help="result file (default bench/results/gpu-check-<host>-<time>.json)")
    p.add_argument("--timeout", type=int, default=300, help="seconds allowed to each of the tests and the bench")
    return p.parse_args(argv)


def step_tests(args) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), 124
    lines = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|skipped|error|deselected)", ln)]
    return {
        "rc": rc,
        "summary": lines[-1].strip("= ") if lines else out.strip().splitlines()[-1:] or "",
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _bench_step(args, cmd: list[str], path: Path) -> dict:
    """Run one benchmark command (JSON to `path`); its exit status, time, last lines and its JSON."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        rc, tail = p.returncode, (p.stdout + p.stderr).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        rc, tail = 124, ["timed out"]
    result = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1), "tail": tail}
    if rc == 0 and path.exists():
        result["raw"] = json.loads(path.read_text())
    return result


def step_bench(args, out_dir: Path) -> dict:
    path = out_dir / "bench.json"
    cmd = [sys.executable, "-m", "bench.bench_train", "--device", args.device, "--json", str(path), "--no-markdown"]
    cmd += ["--quick", "--models", "resnet18"] if args.quick else ["--width", "64"]
    result = _bench_step(args, cmd, path)
    if "raw" in result:
        data = result["raw"]
        result["models"] = {
            name: {
                "train_img_per_s": round(e["project"]["train"]["img_per_s"]),
                "score_img_per_s": round(e["project"]["score"]["img_per_s"]),
                "precision": e["project"]["precision"],
                "train_mfu": e["project"]["train"].get("mfu"),
                "peak_mem_bytes": e["project"]["train"].get("peak_mem_bytes"),
                "train_ratio": round(e["train_ratio"], 2),
                "score_ratio": round(e["score_ratio"], 2),
                "cuda_graphs_ratio": round(e["cuda_graphs_ratio"], 2) if e.get("cuda_graphs_ratio") else None,
            }
            for name, e in data["models"].items()
        }
        result["data_path_ratio"] = round(data["data_path"]["ratio"], 2)
    return result


def step_pack(args, out_dir: Path) -> dict:
    """bench.bench_pack for ResNet18: K = 1, 2, 4 runs on the device, and the study's projected GPU-hours."""
    path = out_dir / "pack.json"
    cmd = [sys.executable, "-m", "bench.bench_pack", "--device", args.device, "--models", "resnet18"]
    cmd += ["--json", str(path), "--no-markdown"] + (["--quick", "--k", "1", "2"] if args.quick else [])
    return _bench_step(args, cmd, path)


def step_run(args, out_dir: Path) -> dict:
    """Three cycles of the LL4AL recipe; the 10-cycle time projected from their per-image cost."""
    from al_core.config import load_sweep
    from al_core.io import read_jsonl
    from al_core.loop import run

    overrides = [
        f"output={out_dir}",
        "dataset.name=synthetic_cifar",
        f"al.cycles={TIMED_CYCLES}",
        f"train.device={args.device}",
        "train.precision=fp32",
        "train.checkpoint_every=0",
    ]
    if args.quick:
        overrides += [
            "dataset.name=synthetic",
            "train.epochs=2",
            "train.width=4",
            "al.initial_size=64",
            "al.query_size=64",
            "al.subset=256",
        ]
    sweep = load_sweep(LL4AL, overrides)
    spec = sweep.run(RUN_ID)
    cfg = spec.config
    t0 = time.perf_counter()
    run(spec, sweep.run_dir(RUN_ID), log=lambda s: print(f"  {s}", flush=True))
    wall = time.perf_counter() - t0
    rows = read_jsonl(sweep.run_dir(RUN_ID) / "cycles.jsonl")
    # Training time grows with the labelled set (epochs x labelled images); selection and
    # evaluation are about constant per cycle (a fixed scoring subset, the whole test set).
    image_epochs = sum(r["n_labeled"] * r["epochs"] for r in rows)
    train_s = sum(r["train_time_s"] for r in rows)
    per_image_epoch = train_s / image_epochs
    fixed = sum(r["select_time_s"] + r["eval_time_s"] for r in rows) / len(rows)
    overhead = max(wall - sum(r["train_time_s"] + r["select_time_s"] + r["eval_time_s"] for r in rows), 0.0)
    al = cfg.al
    sizes = [al.initial_size + c * al.query_size for c in range(PROTOCOL_CYCLES)]
    projected = sum(n * cfg.train.epochs * per_image_epoch + fixed for n in sizes) + overhead
    return {
        "config": {
            "model": cfg.model,
            "width": cfg.train.width,
            "epochs": cfg.train.epochs,
            "precision": rows[0]["precision"],
            "subset": al.subset,
            "sizes": [r["n_labeled"] for r in rows],
        },
        "device": rows[0]["device"],
        "cycles": [
            {
                k: r[k]
                for k in (
                    "cycle",
                    "n_labeled",
                    "train_time_s",
                    "select_time_s",
                    "eval_time_s",
                    "train_img_per_s",
                    "peak_mem_bytes",
                    "energy_j",
                )
            }
            for r in rows
        ],
        "wall_s": round(wall, 1),
        "projected_10_cycle_s": round(projected, 1),
    }


def table(result: dict) -> str:
    node = result["node"]
    lines = [
        "| check | result |",
        "| --- | --- |",
        f"| device | {node['gpu'] or 'none'} (capability {node['capability'] or '-'}) on {node['host']} |",
        f"| build | torch {node['torch']}, CUDA {node['build_cuda']}, kernels {' '.join(node['build_archs']) or '-'} |",
        f"| served / native bf16 | {node['served']} / {node['native_bf16']} (auto precision: {node['precision_auto']}) |",
        f"| preflight | {'ok' if not node['problem'] else node['problem']} |",
    ]
    if "tests" in result:
        t = result["tests"]
        lines.append(f"| gpu tests | {t['summary']} (rc {t['rc']}, {t['seconds']} s) |")
    if "bench" in result:
        b = result["bench"]
        for model, m in (b.get("models") or {}).items():
            lines.append(
                f"| bench {model} | train {m['train_img_per_s']:,} img/s ({m['precision']}), score "
                f"{m['score_img_per_s']:,} img/s; {m['train_ratio']}x / {m['score_ratio']}x the DataLoader+PIL reference |"
            )
            if m.get("cuda_graphs_ratio"):
                lines.append(f"| bench {model} CUDA graphs | train {m['cuda_graphs_ratio']}x eager |")
        if b["rc"]:
            lines.append(f"| bench | failed (rc {b['rc']}): {' / '.join(b['tail'])} |")
    if "pack" in result:
        pk = result["pack"]
        for model, m in (pk.get("raw") or {}).get("models", {}).items():
            lines.append(
                f"| runs per GPU, {model} | "
                + ", ".join(f"K={k} {r['aggregate_img_per_s']:,.0f} img/s ({r['speedup']:.2f}x)" for k, r in m["k"].items())
                + " |"
            )
        if pk.get("raw"):
            pj = pk["raw"]["projection"]
            lines.append(
                f"| projected study ({pj['runs']} runs) | "
                + ", ".join(f"K={k} {h:,.1f} GPU-h" for k, h in pj["gpu_hours_by_k"].items())
                + " |"
            )
        if pk["rc"]:
            lines.append(f"| runs per GPU | failed (rc {pk['rc']}): {' / '.join(pk['tail'])} |")
    if "run" in result:
        r = result["run"]
        per = ", ".join(f"c{c['cycle']} {c['train_time_s']:.1f}s" for c in r["cycles"])
        lines.append(f"| {TIMED_CYCLES}-cycle LL4AL run | {r['wall_s']} s wall ({per}); {r['config']['precision']} |")
        lines.append(
            f"| projected {PROTOCOL_CYCLES}-cycle run | {r['projected_10_cycle_s']:.0f} s "
            f"({r['projected_10_cycle_s'] / 60:.1f} min) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from al_core import preflight, results

    t0 = time.perf_counter()
    node = preflight.inspect()
    result: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick, "node": asdict(node)}
    if args.device == "cuda":
        try:
            preflight.check("cuda", "auto", report=node)
        except preflight.NodeError as e:
            print(f"error: {e}", file=sys.stderr)
            return results.EXIT_NODE
    out_dir = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    if "tests" not in args.skip:
        print("== gpu tests", flush=True)
        result["tests"] = step_tests(args)
    if "bench" not in args.skip:
        print("== bench", flush=True)
        result["bench"] = step_bench(args, out_dir)
    if "pack" not in args.skip:
        print("== runs per GPU (bench_pack)", flush=True)
        result["pack"] = step_pack(args, out_dir)
    if "run" not in args.skip:
        print(f"== {TIMED_CYCLES}-cycle LL4AL-recipe run", flush=True)
        result["run"] = step_run(args, out_dir)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.json or ROOT / "bench" / "results" / f"gpu-check-{node.host}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    from al_core.io import atomic_write_json

    atomic_write_json(path, result)
    print(table(result))
    print(f"wrote {path} ({result['seconds']} s)")
    failed = any(result.get(k, {}).get("rc") for k in ("tests", "bench", "pack"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
