"""Hugging Face interop cases: a tiny random Llama (transformers), the conversion CLIs, and megatron logits of a
converted checkpoint against transformers' logits of the HF model on the process group megatron is set up with
(TP = its world size, seed 0): in the distributed bucket at TP=2 (tests/distributed/bucket.py) and in the test's
own interpreter under tests/megatron_state.megatron_in_process at TP=1 (tests/e2e/test_hf_roundtrip.py), the
same code."""

from __future__ import annotations

import sys

import torch

from tests.helpers import run


VOCAB = 300


def tiny_hf_config(**changes):
    from transformers import LlamaConfig

    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-6, tie_word_embeddings=True,
              rope_theta=500000.0, initializer_range=0.1,
              rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192})
    kw.update(changes)
    return LlamaConfig(**kw)


def make_hf_model(path, seed=0, max_shard_size=None, **changes):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_hf_config(**changes))
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(path), **kw)
    return path


def hf_tensors(path) -> dict:
    from megatron_octo.models.hf_io import HFWeights

    w = HFWeights(str(path))
    return {n: w.get(n) for n in w.names()}


def from_hf(*args, timeout=180, expect_rc=0, process=True):
    """tools/convert_from_hf.py in a process of its own (with --tp/--pp > 1 it relaunches itself under
    torchrun), or without ``process`` its main in this interpreter (one process, TP = PP = 1)."""
    if process:
        res = run([sys.executable, "tools/convert_from_hf.py", *map(str, args)], timeout=timeout)
    else:
        from megatron_octo.cli import convert_from_hf
        from tests.megatron_state import run_cli_in_process

        res = run_cli_in_process(convert_from_hf.main, list(args))
    assert res.returncode == expect_rc, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def to_hf(*args, timeout=120, expect_rc=0, process=False):
    """tools/convert_to_hf.py: its main in this interpreter (tests/megatron_state.run_cli_in_process), or with
    ``process`` the script in a process of its own (the export end to end)."""
    if process:
        res = run([sys.executable, "tools/convert_to_hf.py", *map(str, args)], timeout=timeout)
    else:
        from megatron_octo.cli import convert_to_hf
        from tests.megatron_state import run_cli_in_process

        res = run_cli_in_process(convert_to_hf.main, list(args))
    assert res.returncode == expect_rc, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def hf_logits(hf_dir: str, ckpt: str, greedy_tokens: int = 0, control: bool = False) -> tuple[int, dict]:
    """``(rc, lines)``: on rank 0 the ``key: text`` lines (``max_abs_diff``, ``logits_abs_max``, ``shape``; ``control_diff_without_rope_scaling`` with ``control``;
    ``greedy_megatron``, ``greedy_hf``, ``greedy_match`` with ``greedy_tokens``) and rc 1 when the logits differ
    by more than 1e-4 or the greedy tokens do (else 0); ``(0, {})`` on the other ranks. ``control``: also the
    difference to the same HF weights without llama3 RoPE scaling (the comparison is sensitive: it must fail)."""
    from megatron_octo.models import greedy

    tp = torch.distributed.get_world_size()
    model, cfg, arch = greedy.load_model(ckpt, tp=tp)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, arch.vocab_size, (2, 24), generator=g)
    ours = greedy.logits(model, tokens)[..., : arch.vocab_size]
    ours_gen = greedy.greedy_generate(model, tokens[0, :5].tolist(), greedy_tokens, arch.vocab_size) \
        if greedy_tokens else None
    rc, lines = 0, {}
    if torch.distributed.get_rank() == 0:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        with torch.no_grad():
            ref = hf(tokens).logits.float()
        diff = (ours - ref).abs().max().item()
        lines.update(max_abs_diff=f"{diff:.3e}", logits_abs_max=f"{ref.abs().max().item():.3f}",
                     shape=f"{list(ref.shape)}")
        rc = 0 if diff <= 1e-4 else 1
        if control:
            hf_cfg = hf.config
            hf_cfg.rope_parameters = {"rope_type": "default", "rope_theta": hf_cfg.rope_parameters["rope_theta"]}
            unscaled = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.float32).eval()
            unscaled.load_state_dict(hf.state_dict())
            with torch.no_grad():
                lines["control_diff_without_rope_scaling"] = \
                    f"{(ours - unscaled(tokens).logits.float()).abs().max().item():.3e}"
        if greedy_tokens:
            hf.generation_config.eos_token_id = None  # argmax all the way, as the megatron loop does
            out = hf.generate(tokens[:1, :5], max_new_tokens=greedy_tokens, do_sample=False)
            lines.update(greedy_megatron=f"{ours_gen}".replace(" ", ""),
                         greedy_hf=f"{out[0].tolist()}".replace(" ", ""), greedy_match=f"{out[0].tolist() == ours_gen}")
            rc = rc or int(out[0].tolist() != ours_gen)
    return rc, lines
