"""Everything an RL run can check before a process group exists: the config alone
(``config.validate_rl``), the model layout (``models.llama``), the reward function, the response-length
stairs against the model's positions, and which rollout engine can run here."""

from __future__ import annotations

from typing import Optional

from megatron_octo import config as cfgmod
from megatron_octo.generation_dynamic import flash_attn_for_dynamic_engine
from megatron_octo.models.llama import check_layout, resolve_architecture
from megatron_octo.rl.custom_reward import load_reward_fn
from megatron_octo.rl.length_schedule import parse_stairs


def validate_rl(cfg, world_size: int, *, have_gpu: bool, have_te: bool, have_flash_attn: Optional[bool] = None,
                capability: Optional[tuple] = None) -> None:
    """Raises ConfigError naming the key. ``have_flash_attn``: None = look (megatron's own test)."""
    if have_flash_attn is None:
        have_flash_attn = have_gpu and flash_attn_for_dynamic_engine()
    check_layout(cfg)  # first: a layout error is more telling than the world size it then fails
    cfgmod.validate_rl(cfg, world_size, have_gpu=have_gpu, have_te=have_te, have_flash_attn=have_flash_attn,
                       capability=capability)
    r = cfg.rl
    if r.reward_fn is not None:
        try:
            load_reward_fn(r.reward_fn)
        except ValueError as exc:
            cfgmod.fail("rl.reward_fn", str(exc))
    try:
        stairs = parse_stairs(dict(r.max_response_length))
    except ValueError as exc:
        cfgmod.fail("rl.max_response_length", str(exc).split(": ", 1)[-1])
    arch = resolve_architecture(cfg.model)
    longest = max(v for _, v in stairs) + r.max_prompt_length
    if longest > arch.max_position_embeddings:
        cfgmod.fail("rl.max_response_length", f"max_prompt_length + the largest response cap = {longest} exceeds "
                    f"model.max_position_embeddings={arch.max_position_embeddings}")
