"""The paper-scale RL recipes (recipes/octothinker/llama3.2-3b/rl_grpo*.yaml): they load, pass the RL
trainer's own validation at the world sizes they are meant for, and carry the OctoThinker GRPO settings
(/work/shared/notes/octothinker-recipe.md). No GPU needed: only the config is checked."""

from __future__ import annotations

import pytest

from megatron_octo import config as cfgmod
from megatron_octo.rl.checks import validate_rl
from tests.helpers import ROOT

PAPER = ROOT / "recipes/octothinker/llama3.2-3b"


def _load(tmp_path, name: str, *overrides: str):
    ckpt = tmp_path / "decay"
    ckpt.mkdir(exist_ok=True)
    return cfgmod.load(str(PAPER / name), [f"checkpoint.init_from={ckpt}", f"checkpoint.save={tmp_path / 'rl'}",
                                           f"rl.prompts={ROOT / 'data/rl/math8k.jsonl.gz'}", *overrides])


@pytest.mark.parametrize("name,world,overrides", [
    ("rl_grpo.yaml", 8, ()),            # launch_slurm/rl_grpo.sh: 1 node x 8 GPUs
    ("rl_grpo.yaml", 64, ()),           # 8 nodes: DP 64 divides the 64-prompt mini-batch
    ("rl_grpo_hybrid.yaml", 8, ()),
    ("rl_grpo_hybrid.yaml", 64, ()),
    ("rl_grpo_256x16.yaml", 8, ()),     # the released script: 8 GPUs per node
    ("rl_grpo_256x16.yaml", 64, ("parallel.tp=4",)),  # DP must divide its 16-prompt mini-batch
    ("rl_dapo.yaml", 8, ()),            # DP 8 divides DAPO's 8-prompt mini-batch
])
def test_paper_rl_recipe_validates(tmp_path, name, world, overrides):
    cfg = _load(tmp_path, name, *overrides)
    validate_rl(cfg, world, have_gpu=True, have_te=True)


def test_paper_rl_recipe_at_64_gpus_with_too_small_minibatch_names_the_key(tmp_path):
    cfg = _load(tmp_path, "rl_grpo_256x16.yaml")
    with pytest.raises(cfgmod.ConfigError, match="rl.mini_batch_prompts"):
        validate_rl(cfg, 64, have_gpu=True, have_te=True)


def test_paper_rl_recipe_settings(tmp_path):
    r = _load(tmp_path, "rl_grpo.yaml").rl
    assert (r.algorithm, r.template, r.reward_variant) == ("grpo", "orz_base", "default")
    assert (r.prompts_per_step, r.samples_per_prompt, r.mini_batch_prompts, r.ppo_epochs) == (128, 16, 64, 1)
    assert (r.lr, r.clip_low, r.clip_high, r.kl_coef, r.entropy_coef) == (1e-6, 0.2, 0.2, 0.0, 0.0)
    assert (r.temperature, r.top_p, r.max_prompt_length) == (1.0, 1.0, 400)
    assert dict(r.max_response_length) == {0: 2048, 100: 4096, 160: 8192}
    hybrid = _load(tmp_path, "rl_grpo_hybrid.yaml")
    assert dict(hybrid.rl.max_response_length) == {0: 4096}
    assert hybrid.checkpoint.init_from == str(tmp_path / "decay")  # overridden; the recipe names decay_hybrid
    released = _load(tmp_path, "rl_grpo_256x16.yaml").rl
    assert (released.prompts_per_step, released.samples_per_prompt, released.mini_batch_prompts) == (256, 16, 16)
    assert dict(released.max_response_length) == dict(r.max_response_length)


def test_mapping_override_replaces_the_recipes_stairs(tmp_path):
    # merged, {0: 4096} over the Long stairs would keep steps 100 and 160
    cfg = _load(tmp_path, "rl_grpo.yaml", "rl.max_response_length={0: 4096}")
    assert dict(cfg.rl.max_response_length) == {0: 4096}
    with pytest.raises(cfgmod.ConfigError, match="rl.max_response_length"):
        _load(tmp_path, "rl_grpo.yaml", "rl.max_response_length={first: 4096}")


def test_dapo_recipe_settings(tmp_path):
    """DAPO's published settings (arXiv 2503.14476), the response cap and overlong buffer scaled to 8192."""
    r = _load(tmp_path, "rl_dapo.yaml").rl
    assert (r.clip_low, r.clip_high, r.loss_agg_mode, r.policy_loss) == (0.2, 0.28, "token-mean", "ppo")
    assert (r.dynamic_sampling, r.max_sampling_rounds, r.remove_uniform_groups) == (True, 10, False)
    assert (r.dynamic_sampling_metric, r.clip_ratio_c) == ("acc", 10.0)  # verl recipe/dapo: metric=acc, c=10
    assert (r.overlong_buffer, r.overlong_penalty, r.overlong_filter) == (1638, 1.0, False)
    assert dict(r.max_response_length) == {0: 8192} and r.overlong_buffer == round(8192 * 4096 / 20480)
    assert (r.kl_coef, r.entropy_coef, r.lr, r.samples_per_prompt) == (0.0, 0.0, 1e-6, 16)
    assert r.prompts_per_step // r.mini_batch_prompts == 16  # DAPO's 16 updates per rollout step


@pytest.mark.parametrize("overrides,key", [
    (("rl.policy_loss=gspo",), "rl.loss_agg_mode"),  # GSPO aggregates per sequence
    (("rl.loss_agg_mode=seq-mean",), "rl.loss_agg_mode"),
    (("rl.rollout_is=clip",), "rl.rollout_is"),
    (("rl.rollout_is=tis", "rl.rollout_is_threshold=1"), "rl.rollout_is_threshold"),
    (("rl.overlong_buffer=-1",), "rl.overlong_buffer"),
    (("rl.clip_ratio_c=1",), "rl.clip_ratio_c"),  # dual clip: a bound > 1 on the ratio (verl asserts it)
    (("rl.clip_ratio_c=0.5",), "rl.clip_ratio_c"),
    (("rl.dynamic_sampling_metric=accuracy",), "rl.dynamic_sampling_metric"),
    (("rl.dynamic_sampling=true",), "rl.remove_uniform_groups"),  # rl_grpo.yaml removes them already
    (("rl.dynamic_sampling=true", "rl.remove_uniform_groups=false", "rl.algorithm=ppo"), "rl.dynamic_sampling"),
    (("rl.dynamic_sampling=true", "rl.remove_uniform_groups=false", "rl.max_sampling_rounds=0"),
     "rl.max_sampling_rounds"),
])
def test_new_rl_keys_are_validated_naming_the_key(tmp_path, overrides, key):
    cfg = _load(tmp_path, "rl_grpo.yaml", *overrides)
    with pytest.raises(cfgmod.ConfigError, match=key.replace(".", r"\.")):
        validate_rl(cfg, 8, have_gpu=True, have_te=True)


def test_gspo_with_seq_mean_token_mean_validates(tmp_path):
    cfg = _load(tmp_path, "rl_grpo.yaml", "rl.policy_loss=gspo", "rl.loss_agg_mode=seq-mean-token-mean",
                "rl.rollout_is=mis")
    validate_rl(cfg, 8, have_gpu=True, have_te=True)

