"""RL frees the static engine's KV buffer after each rollout (and validation): during the actor update the
inference context holds no key/value tensors and the rollout's KV tensors are gone (no reference left);
the next rollout re-creates the buffer and generates exactly the tokens a run that keeps it generates.

The real CLI through ``tests/scripts/rl_probe.py`` (``python -m megatron_octo.rl`` in-process, a probe on the
actor update and on every generate call)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import ROOT, read_metrics, run, env_for_subprocess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RECIPE = str(ROOT / "recipes/tiny/rl_grpo.yaml")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _probe(ckpt, out, release: bool):
    out.mkdir()
    env = dict(env_for_subprocess(), OCTO_TEST_GENERATE_LOG=str(out / "gen.jsonl"),
               OCTO_TEST_KV_LOG=str(out / "kv.jsonl"), OCTO_TEST_NO_KV_RELEASE="0" if release else "1")
    res = run([sys.executable, "tests/scripts/rl_probe.py", "--config", RECIPE, "model.preset=tiny",
               f"checkpoint.init_from={ckpt}", f"checkpoint.save={out / 'save'}",
               f"rl.reward_fn={ROOT}/tests/scripts/rl_fault_rewards.py:length", "rl.steps=2",
               "rl.max_response_length={0: 16}", "rl.lr=1e-3", "rl.prompts_per_step=2", "rl.samples_per_prompt=4",
               "rl.mini_batch_prompts=2", "rl.rollout_batch_size=8", "rl.val_interval=1", "rl.val_benchmarks=math500",
               "rl.val_limit=2", "rl.val_max_new_tokens=8"], timeout=400, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    steps = {r["iteration"]: {k: v for k, v in r.items() if not k.startswith(("timing/", "perf/", "wall"))}
             for r in read_metrics(out / "save" / "tensorboard") if "critic/score/mean" in r}
    return _lines(out / "gen.jsonl"), _lines(out / "kv.jsonl"), steps


def test_kv_buffer_is_freed_for_the_update_and_rollouts_are_unchanged(tiny_text_checkpoint, tmp_path):
    ckpt = tiny_text_checkpoint / "ckpt"
    gens, updates, steps = _probe(ckpt, tmp_path / "release", release=True)
    kept_gens, kept_updates, kept_steps = _probe(ckpt, tmp_path / "keep", release=False)
    # validation, rollout 1, validation, rollout 2, validation: each left a real KV buffer behind it ...
    assert len(gens) == 5 and all(g["kv_bytes"] > 0 for g in gens)
    # ... which is gone during both updates: no entries, and not one of the rollout's tensors is alive.
    assert len(updates) == 2
    for u in updates:
        assert u["kv_entries"] == 0 and u["kv_bytes"] == 0, u
        assert u["rollout_kv"] > 0 and u["rollout_kv_alive"] == 0, u
    # The probe sees a kept buffer (the comparison run keeps it through the update).
    assert all(u["kv_entries"] > 0 and u["rollout_kv_alive"] == u["rollout_kv"] for u in kept_updates)
    # Re-created lazily: every generation (rollouts after the release included) is token for token the same.
    assert [g["tokens"] for g in gens] == [g["tokens"] for g in kept_gens]
    assert [g["kv_bytes"] for g in gens] == [g["kv_bytes"] for g in kept_gens]
    assert steps == kept_steps and set(steps) == {1, 2}
