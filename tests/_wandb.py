"""Reading W&B offline runs back with wandb's own record type (`wandb.proto` Record).

wandb 0.31 no longer ships its Python datastore reader (wandb.sdk.internal.datastore), so the
framing is read here: a 7-byte header (`:W&B`, magic 0xBEE1, version), then LevelDB-log blocks of
32 KiB, each chunk with a 7-byte header (CRC-32C, length, type: 1 full, 2 first, 3 middle, 4 last).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

HEADER, BLOCK, CHUNK = 7, 32768, 7


def records(path: Path):
    """The wandb_internal_pb2.Record messages of one .wandb file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", path
    pos, pending = HEADER, b""
    while pos + CHUNK <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK:  # the block's tail is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        body = data[pos + CHUNK : pos + CHUNK + length]
        pos += CHUNK + length
        pending = body if kind in (1, 2) else pending + body
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            yield rec
            pending = b""


def history(run_dir: Path, wandb_id: str) -> list[dict]:
    """Every history row logged to W&B run `wandb_id` under run_dir/wandb, across its offline runs."""
    rows = []
    for f in sorted(Path(run_dir).glob(f"wandb/offline-run-*-{wandb_id}/run-{wandb_id}.wandb")):
        for rec in records(f):
            if rec.WhichOneof("record_type") == "history":
                rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return rows


def run_ids(run_dir: Path) -> set[str]:
    """The W&B run ids recorded in the `run` records of run_dir's offline runs."""
    ids = set()
    for f in Path(run_dir).glob("wandb/offline-run-*/*.wandb"):
        ids |= {rec.run.run_id for rec in records(f) if rec.WhichOneof("record_type") == "run"}
    return ids
