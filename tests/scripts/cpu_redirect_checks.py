"""Observations of megatron_octo.runtime.cpu in a fresh interpreter (the redirect is process-wide).

Prints one JSON object of what was observed; tests/process/test_cpu_redirect.py asserts the values."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

mode = sys.argv[1]
seen: dict = {}


def error_of(fn) -> str | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the observation is the error text, whatever its type
        return f"{type(exc).__name__}: {exc}"
    return None


if mode == "inactive-with-gpu":
    from megatron_octo.runtime import cpu
    torch.cuda.is_available = lambda: True
    seen["installed"] = cpu.install()
    seen["active"] = cpu.is_active()
elif mode == "version-pin":
    import megatron.core
    from megatron_octo.runtime import cpu
    megatron.core.__version__ = "0.17.0"
    seen["install_error"] = error_of(cpu.install)
else:
    seen["cuda_available"] = torch.cuda.is_available()
    seen["cuda_tensor_before"] = error_of(lambda: torch.zeros(2, device="cuda"))

    from megatron_octo.runtime import cpu

    seen["installed"] = cpu.install()
    seen["active"] = cpu.is_active()
    seen["devices"] = {
        "zeros('cuda')": torch.zeros(2, device="cuda").device.type,
        "empty(device('cuda', 0))": torch.empty(3, device=torch.device("cuda", 0)).device.type,
        "ones(device=0)": torch.ones(2, device=0).device.type,
        "x.to('cuda')": torch.ones(2).to("cuda").device.type,
        "x.to(device('cuda'))": torch.ones(2).to(torch.device("cuda")).device.type,
        "Generator(current_device())": torch.Generator(device=torch.cuda.current_device()).device.type,
    }
    x = torch.ones(2)
    seen["cuda_is_identity"] = x.cuda() is x
    seen["pin_memory_is_identity"] = x.pin_memory() is x
    seen["type_float"] = x.type()
    seen["type_double"] = torch.ones(2, dtype=torch.float64).type()
    seen["current_device"] = torch.cuda.current_device()
    with torch.cuda.stream(torch.cuda.Stream()):
        ev = torch.cuda.Event(enable_timing=True)
        ev.record()
        seen["event_elapsed"] = ev.elapsed_time(ev)
    seen["synchronize"] = error_of(torch.cuda.synchronize)

    # megatron's RNG tracker: distinct seeded streams, restorable state, CPU generator untouched by fork.
    from megatron.core.tensor_parallel import random as mrandom

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
    seen["fork_kept_default_generator"] = torch.equal(torch.get_rng_state(), before)
    seen["streams_a_b_differ"] = not torch.equal(a1, b1)
    states = tracker.get_states()
    with tracker.fork("a"):
        a2 = torch.rand(3)
    tracker.set_states(states)
    with tracker.fork("a"):
        a3 = torch.rand(3)
    seen["restored_state_repeats"] = torch.equal(a2, a3)
    seen["stream_advances"] = not torch.equal(a1, a2)
    torch.manual_seed(7)
    tracker.reset()
    tracker.add("a", 1)
    with tracker.fork("a"):
        seen["same_seed_same_stream"] = torch.equal(torch.rand(3), a1)
print(json.dumps(seen))
