"""The PPO CLI (recipes/tiny/rl_ppo.yaml) on the tiny text checkpoint:

- 2 steps, then a resume to step 3 from the step-2 checkpoint, equal 3 uninterrupted steps
  (metrics, actor and critic weights, both optimizers' states);
- tools/convert_to_hf.py exports the actor of a PPO checkpoint;
- a TP=2 step (torchrun, 2 processes) equals the TP=1 step: rollouts, critic values, GAE, losses,
  and the updated actor and critic weights.

One 3-step TP=1 run (checkpoints after every step), the session's PPO family (tests/conftest.py: ppo_run), serves
as the reference of all three.
"""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

from megatron_octo.checkpoint.save_load import TRACKER, iter_dir_name, latest_checkpoint, read_trainer_state
from tests.conftest import ppo_overrides
from tests.helpers import ROOT, checkpoint_tensors, read_metrics, run, run_train

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

RECIPE = str(ROOT / "recipes/tiny/rl_ppo.yaml")
CRITIC_KEYS = ("critic/vf_loss", "critic/vf_clipfrac", "critic/vf_explained_var", "critic/values/mean",
               "critic/returns/mean", "critic/value_error", "critic/vpred_mean", "critic/grad_norm")


def _steps(save_dir) -> dict:
    keep = lambda r: {k: v for k, v in r.items() if not k.startswith(("timing/", "perf/"))}
    return {r["iteration"]: keep(r) for r in read_metrics(save_dir / "tensorboard") if "critic/vf_loss" in r}


def _rl(overrides, nproc=1):
    """One process: the CLI's main in this interpreter (the PPO family's run is the CLI in a process of its own);
    ``nproc`` > 1: under torchrun."""
    return run_train(RECIPE, overrides, nproc=nproc, timeout=280, module="megatron_octo.rl", in_process=nproc == 1)


@pytest.fixture(scope="module")
def ppo(ppo_run, tiny_text_checkpoint, tmp_path_factory):
    """This module's directory, the PPO family's overrides, its run (3 PPO steps at TP=1, a checkpoint after
    each) and that run's per-step metrics."""
    assert "RL (ppo)" in ppo_run["stdout"] and "rl step     3/3" in ppo_run["stdout"]
    return (tmp_path_factory.mktemp("ppo"), ppo_overrides(tiny_text_checkpoint / "ckpt"), ppo_run["save"],
            _steps(ppo_run["save"]))


def test_ppo_resumes_identically_and_exports_the_actor(ppo):
    tmp, common, full, a = ppo
    assert set(a) == {1, 2, 3}
    for m in a.values():
        assert all(m[key] == m[key] for key in CRITIC_KEYS)  # present and not NaN
        assert m["critic/grad_norm"] > 0 and m["actor/grad_norm"] > 0

    # Resume from the step-2 checkpoint (what a 2-step run leaves) to step 3.
    split = tmp / "ppo_split"
    split.mkdir()
    shutil.copytree(full / iter_dir_name(2), split / iter_dir_name(2))
    (split / TRACKER).write_text("2")
    res = _rl([*common, f"checkpoint.save={split}"])
    assert "resumed from" in res.stdout
    assert _steps(split) == {3: a[3]}
    st = read_trainer_state(latest_checkpoint(str(split)))
    assert st.stage == "rl" and st.stage_iteration == 3
    # Same actor, critic and optimizer states (the critic's Adam moments included).
    wa, wb = checkpoint_tensors(latest_checkpoint(str(full))), checkpoint_tensors(latest_checkpoint(str(split)))
    assert set(wa) == set(wb) and "optimizer.state.exp_avg.critic.output_layer.weight" in wa
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key

    # The HF export of a PPO checkpoint is the actor.
    out = tmp / "ppo_hf"
    res = run([sys.executable, "tools/convert_to_hf.py", str(split), "--out", str(out)], timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    from safetensors.torch import load_file

    hf = load_file(str(out / "model.safetensors"))
    assert not any("critic" in k or "value" in k for k in hf)
    assert torch.equal(hf["model.norm.weight"], wb["decoder.final_layernorm.weight"])
    assert not torch.equal(hf["model.norm.weight"], wb["critic.decoder.final_layernorm.weight"])


@pytest.mark.distributed
def test_tp2_ppo_step_equals_tp1(ppo, tiny_text_checkpoint):
    tmp, common, full, steps = ppo
    two = tmp / "ppo_tp2"
    _rl([*common, "rl.steps=1", "parallel.tp=2", f"checkpoint.save={two}"], nproc=2)
    a, b = steps[1], _steps(two)[1]
    for key in ("critic/score/mean", "response_length/mean"):
        assert a[key] == b[key], key
    for key in (*CRITIC_KEYS, "actor/pg_loss", "actor/grad_norm", "actor/ppo_kl", "actor/entropy"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key

    # Updated weights of both networks, read back whole from the two layouts' checkpoints. The
    # critic's body started as the actor's checkpoint (w0); each tensor's TP=2 - TP=1 difference
    # must be tiny next to how far the step moved it (Adam turns rounding in near-zero gradients
    # into differences of a fraction of lr, so an absolute bound would depend on lr).
    prefixes = ("critic.", "embedding.", "decoder.", "output_layer.")
    w1 = checkpoint_tensors(full / iter_dir_name(1), prefixes)
    w2 = checkpoint_tensors(latest_checkpoint(str(two)), prefixes)
    w0 = checkpoint_tensors(latest_checkpoint(str(tiny_text_checkpoint / "ckpt")), prefixes)
    head = "critic.output_layer.weight"
    assert set(w1) == set(w2) and "critic.decoder.final_layernorm.weight" in w1 and w1[head].shape == (1, 64)
    assert torch.allclose(w1[head], w2[head], rtol=1e-4, atol=1e-6)
    for key, t in w1.items():
        if key != head:
            moved = (t - w0[key.removeprefix("critic.")]).norm()
            assert moved > 0, f"{key} did not change"
            assert (t - w2[key]).norm() <= 1e-3 * moved, (key, float((t - w2[key]).norm()), float(moved))
