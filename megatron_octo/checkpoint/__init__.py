"""Checkpoints on disk: ``layout`` (directory layout, tracker, trainer state; a leaf), ``integrity``
(manifests, safe unpickling), ``save_load`` (megatron dist-checkpointing save and load)."""
