"""RL with pipeline parallelism: which configs validate (GRPO on the static engine) and which fail
naming the key (PPO's critic, the dynamic engine)."""

from __future__ import annotations

import pytest

from megatron_octo import config as cfgmod
from megatron_octo.rl.checks import validate_rl
from tests.helpers import ROOT


def _cfg(tmp_path, *overrides):
    return cfgmod.load(str(ROOT / "recipes/tiny/rl_grpo.yaml"), [
        "model.preset=tiny", f"checkpoint.init_from={tmp_path}", f"rl.prompts={ROOT}/data/rl/math8k.jsonl.gz",
        "parallel.pp=2", *overrides])


def test_grpo_with_pipeline_stages_validates(tmp_path):
    validate_rl(_cfg(tmp_path), 2, have_gpu=False, have_te=False)
    validate_rl(_cfg(tmp_path, "rl.micro_batch_tokens=256"), 2, have_gpu=False, have_te=False)
    validate_rl(_cfg(tmp_path, "rl.rollout_engine=static"), 4, have_gpu=True, have_te=True, have_flash_attn=True)


@pytest.mark.parametrize("overrides,key,gpu", [
    (("rl.algorithm=ppo",), "parallel.pp", False),
    (("rl.rollout_engine=auto",), "rl.rollout_engine", True),  # auto = dynamic on a GPU with flash-attn
])
def test_pipeline_limits_name_the_key(tmp_path, overrides, key, gpu):
    with pytest.raises(cfgmod.ConfigError, match=f"'{key}'"):
        validate_rl(_cfg(tmp_path, *overrides), 2, have_gpu=gpu, have_te=gpu, have_flash_attn=gpu)
