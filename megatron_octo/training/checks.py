"""Everything a pretraining run can check before a process group exists, each part by the module that
owns the knowledge: the config alone (``config.validate``), the model layout (``models.llama``), the
data (``data.mixture``), and whether a decay stage has a checkpoint to start from."""

from __future__ import annotations

from typing import Optional

from megatron_octo import config as cfgmod
from megatron_octo.data.mixture import check_data
from megatron_octo.models.llama import check_layout
from megatron_octo.checkpoint.layout import resume_dir


def validate(cfg, world_size: int, *, have_gpu: bool, have_te: bool, capability: Optional[tuple] = None) -> None:
    """Raises ConfigError naming the key (and the file or directory) that is wrong."""
    check_layout(cfg)  # first: a layout error is more telling than the world size it then fails
    cfgmod.validate(cfg, world_size, have_gpu=have_gpu, have_te=have_te, capability=capability)
    if cfg.schedule.stage == "decay" and cfg.checkpoint.init_from is None and resume_dir(cfg) is None:
        cfgmod.fail("checkpoint.init_from", "a decay stage starts from a stable checkpoint: set "
                    "checkpoint.init_from to the stable run's checkpoint directory")
    check_data(cfg)
