"""megatron-octo: OctoThinker-style mid-training and RL on megatron-core."""

from megatron_octo.runtime import lazy_jit

# Before anything of ours imports megatron.core: its torch.compile decorators stop importing dynamo and
# inductor at start-up on machines without a GPU (runtime/lazy_jit.py).
lazy_jit.install()
