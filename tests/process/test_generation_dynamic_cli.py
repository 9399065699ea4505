"""The RL CLI (a process) refuses rl.rollout_engine=dynamic without a GPU, exiting 2 before it writes anything."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.helpers import ROOT, run


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine dynamic may be valid")
def test_rl_cli_refuses_dynamic_without_gpu_with_exit_2(tmp_path):
    res = run([sys.executable, "-m", "megatron_octo.rl", "--config", str(ROOT / "recipes/tiny/rl_grpo.yaml"),
               f"checkpoint.init_from={tmp_path}", f"checkpoint.save={tmp_path}/rl", "rl.rollout_engine=dynamic"],
              timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "config key 'rl.rollout_engine': 'dynamic' needs a CUDA GPU" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "rl").exists()
