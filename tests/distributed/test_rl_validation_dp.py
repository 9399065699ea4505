"""RL validation (rl.val_*) deals its prompts out over the data-parallel ranks and gathers the responses
(eval's generate_sharded): greedy validation at DP=2 (torchrun, 2 gloo processes) equals DP=1, each rank
generating its share only."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import ROOT, run

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(600)]

LIMIT = 5  # uneven: ranks generate 3 and 2


def _validate(ckpt, save, val, nproc):
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     f"--nproc-per-node={nproc}"]
    res = run([*launcher, "tests/scripts/rl_validate_check.py", "--config", str(ROOT / "recipes/tiny/rl_grpo.yaml"),
               "model.preset=tiny", f"checkpoint.init_from={ckpt}", f"checkpoint.save={save}",
               f"rl.val_benchmarks={val}", f"rl.val_limit={LIMIT}", "rl.val_max_new_tokens=16",
               "rl.prompts_per_step=2", "rl.mini_batch_prompts=2"], timeout=280)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(next(line[7:] for line in res.stdout.splitlines() if line.startswith("RESULT ")))


def test_greedy_validation_at_dp2_equals_dp1(tiny_text_checkpoint, tmp_path):
    ckpt = tiny_text_checkpoint / "ckpt"
    val = tmp_path / "val.jsonl"  # short problems (math500's longest exceed the tiny recipe's prompt room)
    val.write_text("".join(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                           for a, b in [(2, 3), (10, 7), (41, 1), (6, 6), (123, 877)]))
    one = _validate(ckpt, tmp_path / "dp1", val, 1)
    two = _validate(ckpt, tmp_path / "dp2", val, 2)
    assert one["generated_per_rank"] == [LIMIT]
    assert two["generated_per_rank"] == [3, 2]  # sharded: each replica generated its share only
    assert two["ranks_agree"]  # every rank holds the gathered responses
    assert len(one["responses"][0]) == LIMIT and any(tokens for per in one["responses"][0] for _, tokens in per)
    assert two["responses"] == one["responses"]  # the same greedy text and tokens, in prompt order
    assert two["metrics"] == one["metrics"]
