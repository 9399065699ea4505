"""SIGTERM/SIGUSR1 during evaluation: a clean, explained exit 75 and no half-written output. (During
training — save, exit 75, resume — see test_kill_resume.py; tests/e2e/test_train_cli.py sends a real
SIGUSR1 from outside.)"""

from __future__ import annotations

import json
import sys

import pytest

from tests.reliability.faultlib import launch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_sigterm_during_eval_keeps_finished_benchmarks_and_writes_nothing_partial(tiny_text_checkpoint, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "megatron_octo.eval", "--checkpoint", str(tiny_text_checkpoint / "ckpt"),
           "--benchmarks", "gsm8k,math500", "--limit", "2", "--max-new-tokens", "8", "--out", str(out)]
    res = launch(cmd, fault="eval:generate:2=sigterm", timeout=400)  # SIGTERM as math500 starts
    assert res.returncode == 75, res.stderr[-3000:]
    assert "[eval] stopped by SIGTERM" in res.stderr
    assert f"complete files in {out}: gsm8k; not evaluated: math500" in res.stderr
    assert "Exiting with 75" in res.stderr
    # gsm8k finished before the signal: its file is complete; nothing else exists, not even a temp file.
    assert sorted(p.name for p in out.iterdir()) == ["gsm8k.jsonl"]
    rows = [json.loads(line) for line in (out / "gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all({"response", "correct", "gold"} <= set(r) for r in rows)
