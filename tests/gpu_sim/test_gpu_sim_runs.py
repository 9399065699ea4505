"""Every step type on the GPU code paths under the simulated-GPU mode (OCTO_SIMULATE_GPU=1): bf16,
GPU-side initialisation, "CUDA" tensors, NCCL's rule that collectives take CUDA tensors only.

What the runs found, each checked to fail here with its fix reverted:
* pretraining: a bf16 run (the GPU default) failed at its first checkpoint save ("Param id 18 does
  not match any model sharded param"): the local spec's RMSNorm weights stayed fp32 and megatron's
  bf16 optimizer cannot map them (models/llama.py) -> test_pretraining_step_saves_and_resumes;
* GRPO: the rollout batch built on the host and fed to the model (embedding: cuda:0 and cpu); the
  rewards, lengths and counts stacked with device tensors and all-reduced from the host; the KL
  metric's host zero stacked with device metrics (rl/trainer.py) -> test_grpo_step_tp2;
* PPO: GAE's running state on the host next to the critic's values (rl/advantages.py)
  -> test_ppo_step_dp2_with_reference_and_resume (also the frozen reference model and a resume).
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.hf_cases import hf_tensors, make_hf_model
from tests.helpers import (ROOT, env_for_subprocess, read_metrics, run, tiny_recipe, tiny_rl_overrides,
                           train_cmd, write_indexed_dataset)

pytestmark = [pytest.mark.gpu_sim, pytest.mark.timeout(900)]

BANNER = "simulated GPU (OCTO_SIMULATE_GPU=1)"


def _sim(cmd, timeout=300, expect_rc=0):
    env = dict(env_for_subprocess(), OCTO_SIMULATE_GPU="1")
    res = run(cmd, timeout=timeout, env=env)
    assert res.returncode == expect_rc, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    assert BANNER in res.stdout
    return res


def _launcher(nproc: int) -> list[str]:
    return [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 f"--nproc-per-node={nproc}"]


def test_mode_catches_cpu_tokens_and_cpu_all_reduce():
    res = _sim([sys.executable, str(ROOT / "tests/scripts/gpu_sim_checks.py")], timeout=180)
    out = json.loads(res.stdout.split("CHECKS ", 1)[1].splitlines()[0])
    assert out["cuda_available"] and out["backend"] == "nccl"
    assert out["params_dtype"] == "torch.bfloat16" and out["param_device"] == "cuda:0"
    assert "cuda:0 and cpu" in out["cpu_tokens_error"] and "embedding" in out["cpu_tokens_error"]
    assert out["logits_device"] == "cuda:0"
    assert "all_reduce" in out["cpu_all_reduce_error"] and "NCCL" in out["cpu_all_reduce_error"]
    assert out["cuda_all_reduce"] == [1.0, 1.0, 1.0] and out["all_reduce_values"] == [1.0, 2.0]
    assert out["counts"] == {"sync": 2, "d2h": 1}


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simpt")
    return tmp, tiny_recipe(tmp, write_indexed_dataset(str(tmp / "synthetic")))


def test_pretraining_step_saves_and_resumes(pretrain):
    tmp, recipe = pretrain
    save = tmp / "tp1"
    _sim(train_cmd(recipe, ["train.tokens=256", f"checkpoint.save={save}"]))
    res = _sim(train_cmd(recipe, ["train.tokens=512", f"checkpoint.save={save}"]))
    assert "resumed from" in res.stdout and (save / "iter_0000002").is_dir()
    rows = [r for r in read_metrics(save / "tensorboard") if "lm loss" in r]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert rows[-1]["sim/sync"] >= 1  # the loss read back to the host each step, counted


def test_mxfp8_on_the_simulated_h100_fails_before_starting(pretrain):
    tmp, recipe = pretrain
    res = _sim(train_cmd(recipe, ["train.tokens=256", "model.fp8=e4m3", "model.fp8_recipe=mxfp8"]), expect_rc=2)
    assert "'model.fp8_recipe'" in res.stderr and "9.0" in res.stderr


@pytest.mark.parametrize("layout", [["parallel.tp=2"], ["parallel.pp=2"],
                                    ["parallel.use_distributed_optimizer=true"]], ids=["tp2", "pp2", "dp2-distopt"])
def test_parallel_pretraining_step(pretrain, layout):
    tmp, recipe = pretrain
    save = tmp / layout[0].replace("=", "").replace(".", "_")
    _sim(train_cmd(recipe, [*layout, "train.tokens=256", f"checkpoint.save={save}"], nproc=2), timeout=400)
    assert (save / "iter_0000001").is_dir()


def _rl(algorithm, overrides, nproc):
    return [*_launcher(nproc), "-m", "megatron_octo.rl", "--config", str(ROOT / f"recipes/tiny/rl_{algorithm}.yaml"),
            *overrides]


def _rl_steps(save) -> dict:
    return {r["iteration"]: r for r in read_metrics(save / "tensorboard") if "critic/score/mean" in r}


def test_grpo_step_tp2(tiny_text_checkpoint, tmp_path):
    save = tmp_path / "sim_grpo"
    _sim(_rl("grpo", [*tiny_rl_overrides(tiny_text_checkpoint / "ckpt"), "rl.steps=1", "parallel.tp=2",
                      f"checkpoint.save={save}"], nproc=2), timeout=400)
    step = _rl_steps(save)[1]
    assert step["actor/grad_norm"] > 0 and step["sim/sync"] > 0


def test_ppo_step_dp2_with_reference_and_resume(tiny_text_checkpoint, tmp_path):
    save = tmp_path / "sim_ppo"
    common = [*tiny_rl_overrides(tiny_text_checkpoint / "ckpt"), "rl.kl_coef=0.01", "rl.critic_warmup_steps=0",
              f"checkpoint.save={save}"]
    _sim(_rl("ppo", [*common, "rl.steps=1"], nproc=2), timeout=400)
    res = _sim(_rl("ppo", [*common, "rl.steps=2"], nproc=2), timeout=400)
    assert "resumed from" in res.stdout
    steps = _rl_steps(save)
    assert set(steps) == {1, 2}
    assert all(s["critic/vf_loss"] is not None and s["actor/grad_norm"] > 0 for s in steps.values())


def test_eval_generation(tiny_text_checkpoint, tmp_path):
    out = tmp_path / "sim_eval"
    _sim([sys.executable, "-m", "megatron_octo.eval", "--checkpoint", str(tiny_text_checkpoint / "ckpt"),
          "--benchmarks", "gsm8k", "--limit", "2", "--max-new-tokens", "16", "--out", str(out)])
    rows = [json.loads(line) for line in open(out / "gsm8k.jsonl")]
    assert len(rows) == 2 and all("response" in r for r in rows)


def test_hf_import_and_export(tmp_path):
    src = make_hf_model(tmp_path / "hf")
    _sim([sys.executable, "tools/convert_from_hf.py", str(src), "--out", str(tmp_path / "ckpt")])
    run_env = dict(env_for_subprocess(), OCTO_SIMULATE_GPU="1")
    res = run([sys.executable, "tools/convert_to_hf.py", str(tmp_path / "ckpt"), "--out", str(tmp_path / "back")],
              timeout=180, env=run_env)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = hf_tensors(src), hf_tensors(tmp_path / "back")
    assert set(a) == set(b)
    for name, t in a.items():  # imported as bf16 (the GPU default), exported back
        assert (b[name].float() - t.float()).abs().max() <= 0.01 * t.float().abs().max() + 1e-6, name
