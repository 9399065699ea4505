from megatron_octo.runtime import lazy_jit

# Before these modules import megatron.core (megatron_octo/runtime/lazy_jit.py).
lazy_jit.install()
