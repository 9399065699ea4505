"""Kill -9 at five points of a run (two of them inside a checkpoint save) and SIGTERM at a sixth;
restarting after each, the run ends with exactly the configured tokens, the reference run's losses,
data and final weights bit for bit, and no step's samples consumed twice or skipped; no process of a
run outlives it."""

from __future__ import annotations

import json

import pytest

from megatron_octo.checkpoint import integrity
from megatron_octo.checkpoint.save_load import read_trainer_state
from tests.helpers import read_metrics
from tests.reliability.faultlib import (STEPS, TOKENS, assert_same_tensors, checkpoint_tensors, lineage, tracker,
                                       train)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

KILLED = -9
# (OCTO_FAULT_INJECT, exit code, tracker afterwards). Checkpoints every 2 steps; each run resumes
# from the tracker the previous one left.
CHAIN = [
    ("step:2", KILLED, None),  # before the first checkpoint: the next run starts from scratch
    ("save:after_model_write:4", KILLED, 2),  # iter_0000004.tmp holds the model only
    ("save:before_tracker:4", KILLED, 2),  # iter_0000004 complete, the tracker still names 2
    ("step:3=sigterm", 75, 3),  # SIGTERM during step 3: saves iteration 3, exits 75
    ("save:after_tracker:4", KILLED, 4),  # the tracker names 4, old checkpoints not pruned yet
    ("step:7", KILLED, 6),  # between checkpoints: steps 5-6 kept, step 7 lost and redone
    (None, 0, STEPS),
]


def test_kill_anywhere_then_resume_equals_uninterrupted_run(rel):
    save = rel["tmp"] / "killed"
    logged = 0
    for fault, rc, expect_tracker in CHAIN:
        before = tracker(save)
        res = train(rel["recipe"], [f"checkpoint.save={save}"], fault=fault, expect_rc=rc)
        # Killed or not, the run's helper processes (megatron's checkpoint-writer Manager) ended with it.
        assert res.survivors == [], (fault, res.survivors)
        if before is None:
            assert "from scratch" in res.stdout
        else:
            assert f"resumed from {save}/iter_{before:07d}" in res.stdout, res.stdout[-2000:]
        assert tracker(save) == expect_tracker, (fault, res.stdout[-2000:])
        if expect_tracker is not None:
            latest = save / f"iter_{expect_tracker:07d}"
            integrity.verify(str(latest))  # the tracked checkpoint is always complete and intact
            integrity.check_pickles(str(latest))
        if fault == "save:after_model_write:4":
            partial = save / "iter_0000004.tmp"
            assert partial.is_dir() and not (partial / "trainer_state.json").exists()
        if fault == "save:before_tracker:4":
            assert (save / "iter_0000004" / "manifest.json").is_file()  # complete, just not tracked
        if fault == "step:3=sigterm":
            assert "signal received" in res.stdout
        # This run's records continue exactly where the checkpoint it resumed from left off.
        records = read_metrics(save / "tensorboard")
        mine = [r for r in records[logged:] if "lm loss" in r]
        logged = len(records)
        start = before or 0
        assert [int(r["iteration"]) for r in mine] == list(range(start + 1, start + 1 + len(mine)))
        assert [int(r["consumed-samples"]) for r in mine] == [8 * int(r["iteration"]) for r in mine]

    state = read_trainer_state(str(save / f"iter_{STEPS:07d}"))
    assert (state.iteration, state.tokens, state.stage_tokens, state.consumed_samples) == (STEPS, TOKENS, TOKENS, 64)
    assert not list(save.glob("*.tmp")), "a partial save was left behind"

    ref, got = lineage(rel["ref"]), lineage(save)
    assert sorted(got) == list(range(1, STEPS + 1))
    for it in range(1, STEPS + 1):
        # Same loss (bitwise), same learning rate, and the same samples (CRC-32 of the step's tokens).
        for key in ("lm loss", "learning-rate", "data-crc32", "consumed-samples", "consumed-tokens"):
            assert got[it][key] == ref[it][key], (it, key, got[it][key], ref[it][key])
    assert len({r["data-crc32"] for r in ref.values()}) == STEPS, "every step reads different samples"
    # Final weights and optimizer state, bit for bit.
    assert_same_tensors(checkpoint_tensors(save / f"iter_{STEPS:07d}"),
                        checkpoint_tensors(rel["ref"] / f"iter_{STEPS:07d}"))
    manifest = json.loads((save / f"iter_{STEPS:07d}" / "manifest.json").read_text())
    assert {"__0_0.distcp", ".metadata", "common.pt", "trainer_state.json"} <= set(manifest["files"])
