"""The whole tiny pipeline end to end through its CLI (a process) on nemo-run's local executor."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.helpers import run
from tests.pipeline_cases import TINY

nemo_run = pytest.importorskip("nemo_run", reason="nemo-run not installed: pip install -e '.[launch]'")

from megatron_octo import pipeline  # noqa: E402


@pytest.mark.e2e
def test_local_pipeline_end_to_end(tmp_path):
    """The whole tiny DAG for one branch: tokenize -> stable -> decay_long -> rl_long -> eval_long, hf_long."""
    out = tmp_path / "run"
    hf = pipeline.hf_export_available()
    res = run([sys.executable, "-m", "megatron_octo.pipeline", "--out", str(out), "--rl", "yes", "--branches", "long",
               *TINY, "--override", "rl:rl.steps=1", "--override", "rl:rl.val_interval=0",
               "--eval-benchmarks", "gsm8k", "--eval-limit", "2", "--max-new-tokens", "8"], timeout=900)
    assert res.returncode == 0, (res.stdout[-4000:], res.stderr[-4000:])
    expected = {"tokenize.ok", "stable.ok", "decay_long.ok", "rl_long.ok", "eval_long.ok"}
    expected |= {"hf_long.ok"} if hf else set()
    assert {p.name for p in (out / ".stages").iterdir()} == expected
    assert (out / "stable" / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    state = json.loads((out / "decay_long" / "iter_0000006" / "trainer_state.json").read_text())
    assert state["stage"] == "decay" and state["tokens"] == 16384 + 8192
    latest = (out / "rl_long" / "latest_checkpointed_iteration.txt").read_text().strip()
    state = json.loads((out / "rl_long" / f"iter_{int(latest):07d}" / "trainer_state.json").read_text())
    assert state["stage"] == "rl" and state["stage_iteration"] == 1, state
    summary = json.loads((out / "eval" / "rl_long" / "summary.json").read_text())
    assert summary["protocol"] == "rl" and "gsm8k" in summary["benchmarks"], summary
    if hf:
        assert any((out / "hf" / "rl_long").glob("*.safetensors"))
    assert os.path.isdir(out / "nemo-run")
