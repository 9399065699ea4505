"""The simulated-GPU mode itself (in-process, undone after each test), and the device fixes of the RL
helpers it found: each test below fails under the mode without its fix."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from megatron_octo.rl.advantages import gae, outcome_to_last_token
from megatron_octo.rl.logprobs import position_ids
from megatron_octo.rl.ppo import gae_advantages
from megatron_octo.rl.trainer import build_batch
from megatron_octo.runtime import simulated_gpu as sg
from megatron_octo.runtime.distributed import device

pytestmark = pytest.mark.gpu_sim


@pytest.fixture
def gpu():
    with sg.simulated_gpu():
        yield


def test_cpu_tokens_into_a_cuda_module_raise_as_cuda_does(gpu):
    emb = torch.nn.Embedding(16, 4).cuda()
    tokens = torch.tensor([[1, 2, 3]])
    with pytest.raises(sg.SimulatedDeviceError, match="cuda:0 and cpu"):
        emb(tokens)
    out = emb(tokens.to(device()))
    assert out.device == torch.device("cuda", 0) and out.is_cuda and sg.device_of(out) == "cuda"
    out.sum().backward()
    assert emb.weight.grad.is_cuda  # read through .grad: its parameter's device


def test_device_rules(gpu):
    x = torch.zeros(3, device="cuda")
    assert torch.cuda.is_available() and x.type() == "torch.cuda.FloatTensor"
    assert (x + torch.tensor(2.0)).is_cuda  # a 0-dim CPU tensor is a scalar operand
    with pytest.raises(sg.SimulatedDeviceError):
        x + torch.ones(3)
    with pytest.raises(sg.SimulatedDeviceError):  # but not in cat/stack
        torch.stack([x.sum(), torch.tensor(1.0)])
    with pytest.raises(sg.SimulatedDeviceError, match="numpy"):
        x.numpy()
    x[torch.tensor([0, 1])] = 1.0  # CPU indices are fine
    x.copy_(torch.ones(3))  # so is a copy across
    assert not x.cpu().is_cuda and not x.to("cpu").is_cuda and torch.ones(2).to(x).is_cuda
    assert torch.zeros(2, device=torch.cuda.current_device()).is_cuda
    assert torch.empty(2).new_zeros(3).device.type == "cpu" and x.new_zeros(3).is_cuda


def test_host_traffic_is_counted(gpu):
    x = torch.arange(4.0, device="cuda")
    sg.reset_counts()
    x.sum().item()
    x.tolist()
    float(x[0])
    x.cpu()
    torch.ones(4).cuda()
    assert sg.counts() == {"sync": 3, "d2h": 1, "h2d": 1}
    assert sg.step_counts(steps=1) == {"sim/sync": 3, "sim/h2d": 1, "sim/d2h": 1}
    assert sg.counts() == {}


def test_uninstall_restores_torch():
    before = (torch.cuda.is_available, torch.nn.Module.cuda, dist.all_reduce, dist.get_backend)
    with sg.simulated_gpu(capability=(10, 0)):
        assert torch.cuda.get_device_capability() == (10, 0) and sg.is_active()
    assert (torch.cuda.is_available, torch.nn.Module.cuda, dist.all_reduce, dist.get_backend) == before
    assert not sg.is_active() and not torch.cuda.is_available()
    assert torch.ones(2).device.type == "cpu"


def test_requested_reads_the_environment():
    assert sg.requested({"OCTO_SIMULATE_GPU": "1"}) and not sg.requested({}) and not sg.requested(
        {"OCTO_SIMULATE_GPU": "0"})


# --- fixes found by the mode -------------------------------------------------------------------

def test_rl_batch_is_built_on_the_model_device(gpu):
    adv = torch.tensor([1.0, -1.0], device=device())
    batch = build_batch([[1, 2], [5]], [[3], [6, 7]], adv)  # raised: CPU mask x CUDA advantages
    assert all(t.is_cuda for t in (batch.tokens, batch.mask, batch.advantages))
    assert position_ids(batch.tokens).is_cuda


def test_gae_runs_on_the_values_device(gpu):
    values = torch.randn(2, 5, device=device())
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.float32, device=device())
    scores = torch.tensor([1.0, 0.0], device=device())
    assert outcome_to_last_token(scores, mask).is_cuda  # raised: CPU positions in where() with a CUDA mask
    adv, ret = gae(outcome_to_last_token(scores, mask), values, mask)  # raised: CPU running state
    assert adv.is_cuda and ret.is_cuda
    adv, ret = gae_advantages(scores, values, mask, gamma=1.0, lam=0.95)
    assert adv.is_cuda
