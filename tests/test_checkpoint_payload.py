"""A checkpoint of the right run whose payload lacks a key, or whose header lacks its position,
is set aside like any damaged one (one warning line) and the run goes on with the same rows;
before, it failed with KeyError on every restart."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch

from al_core import checkpoint
from al_core.loop import run
from tests.test_resume import interrupted_run, reference, rows_of  # noqa: F401  (reference: a fixture)


def rewrite(path, header_change=None, payload_change=None) -> None:
    """Rewrite a checkpoint with a changed header or payload, its length and checksum made right
    again (so that only the change itself is wrong)."""
    line, _, payload = path.read_bytes().partition(b"\n")
    header = json.loads(line)
    if payload_change is not None:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        payload_change(state)
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
    if header_change is not None:
        header_change(header)
    header.update(length=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    path.write_bytes(json.dumps(header).encode() + b"\n" + payload)


DAMAGES = {
    "payload without accum": dict(payload_change=lambda s: s.pop("accum")),
    "payload without model": dict(payload_change=lambda s: s.pop("model")),
    "labelled set not a tensor": dict(payload_change=lambda s: s.update(labelled=[1, 2, 3])),
    "accum of two numbers": dict(payload_change=lambda s: s.update(accum=[0.0, 1.0])),
    "header without its cycle": dict(header_change=lambda h: h.pop("cycle")),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_payload_missing_a_key_is_set_aside_and_the_run_goes_on(smoke_yaml, reference, tmp_path, caplog, damage):  # noqa: F811
    spec, run_dir = interrupted_run(smoke_yaml, tmp_path)
    newest = checkpoint.list_checkpoints(run_dir)[0]
    rewrite(newest, **DAMAGES[damage])
    with pytest.raises(checkpoint.BadCheckpoint):
        checkpoint.read(newest, spec.config.fingerprint())
    run(spec, run_dir, log=lambda s: None)
    warnings = [r.getMessage() for r in caplog.records if r.name == "al_core.checkpoint"]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: checkpoint {newest.name} is unusable")
    assert (run_dir / f"{newest.name}.bad").exists()  # kept for a person, no longer tried
    assert rows_of(run_dir) == reference
