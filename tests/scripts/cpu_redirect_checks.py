"""Checks of megatron_octo.runtime.cpu in a fresh interpreter (the redirect is process-wide)."""
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

mode = sys.argv[1]

if mode == "inactive-with-gpu":
    from megatron_octo.runtime import cpu
    torch.cuda.is_available = lambda: True
    assert cpu.install() is False and not cpu.is_active()
    print("OK")
    sys.exit(0)

if mode == "version-pin":
    import megatron.core
    from megatron_octo.runtime import cpu
    megatron.core.__version__ = "0.17.0"
    try:
        cpu.install()
    except RuntimeError as exc:
        assert "0.16.1" in str(exc) and "0.17.0" in str(exc), exc
        print("OK")
        sys.exit(0)
    raise AssertionError("install() accepted an unchecked megatron-core version")

assert not torch.cuda.is_available()
try:
    torch.zeros(2, device="cuda")
    raise AssertionError("expected a CUDA error before the redirect")
except (RuntimeError, AssertionError) as exc:
    assert "expected a CUDA error" not in str(exc)

from megatron_octo.runtime import cpu  # noqa: E402

assert cpu.install() is True and cpu.is_active()
assert torch.zeros(2, device="cuda").device.type == "cpu"
assert torch.empty(3, device=torch.device("cuda", 0)).device.type == "cpu"
assert torch.ones(2, device=0).device.type == "cpu"
x = torch.ones(2)
assert x.cuda() is x and x.pin_memory() is x
assert x.to("cuda").device.type == "cpu" and x.to(torch.device("cuda")).device.type == "cpu"
assert x.type() == "torch.cuda.FloatTensor"
assert torch.ones(2, dtype=torch.float64).type() == "torch.cuda.DoubleTensor"
assert torch.cuda.current_device() == "cpu"
assert torch.Generator(device=torch.cuda.current_device()).device.type == "cpu"
with torch.cuda.stream(torch.cuda.Stream()):
    ev = torch.cuda.Event(enable_timing=True)
    ev.record()
    assert ev.elapsed_time(ev) == 0.0
torch.cuda.synchronize()

# megatron's RNG tracker: distinct seeded streams, restorable state, CPU generator untouched by fork.
from megatron.core.tensor_parallel import random as mrandom  # noqa: E402

torch.manual_seed(7)
tracker = mrandom.get_cuda_rng_tracker()
tracker.reset()
tracker.add("a", 1)
tracker.add("b", 2)
before = torch.get_rng_state()
with tracker.fork("a"):
    a1 = torch.rand(3)
with tracker.fork("b"):
    b1 = torch.rand(3)
assert torch.equal(torch.get_rng_state(), before), "fork changed the default generator"
assert not torch.equal(a1, b1)
states = tracker.get_states()
with tracker.fork("a"):
    a2 = torch.rand(3)
tracker.set_states(states)
with tracker.fork("a"):
    a3 = torch.rand(3)
assert torch.equal(a2, a3) and not torch.equal(a1, a2)
torch.manual_seed(7)
tracker.reset()
tracker.add("a", 1)
with tracker.fork("a"):
    assert torch.equal(torch.rand(3), a1), "the same seed must give the same stream"
print("OK")
