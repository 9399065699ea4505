"""Megatron logits of a converted checkpoint against transformers' logits of the HF model.

    [torchrun --nproc-per-node TP] python tests/scripts/hf_logits.py HF_DIR CKPT [--greedy N]

Prints ``max_abs_diff=<x>`` (and ``greedy_match=<bool>`` with --greedy) on rank 0; exit 1 when the
difference exceeds 1e-4.
"""
import argparse
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from megatron_octo.models import greedy  # noqa: E402
from megatron_octo.runtime import distributed as rt  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hf_dir")
    p.add_argument("ckpt")
    p.add_argument("--greedy", type=int, default=0)
    p.add_argument("--control", action="store_true",
                   help="also print the difference to the same HF weights without llama3 RoPE scaling")
    args = p.parse_args()
    tp = int(os.environ.get("WORLD_SIZE", "1"))
    rt.initialize(tp, 1, seed=0)
    model, cfg, arch = greedy.load_model(args.ckpt, tp=tp)
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, arch.vocab_size, (2, 24), generator=g)
    ours = greedy.logits(model, tokens)[..., : arch.vocab_size]
    ours_gen = greedy.greedy_generate(model, tokens[0, :5].tolist(), args.greedy, arch.vocab_size) if args.greedy else None
    rc = 0
    if torch.distributed.get_rank() == 0:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32).eval()
        with torch.no_grad():
            ref = hf(tokens).logits.float()
        diff = (ours - ref).abs().max().item()
        print(f"max_abs_diff={diff:.3e}\nlogits_abs_max={ref.abs().max().item():.3f}\nshape={list(ref.shape)}")
        rc = 0 if diff <= 1e-4 else 1
        if args.control:  # the comparison is sensitive: drop the rope scaling and it must fail
            cfg = hf.config
            cfg.rope_parameters = {"rope_type": "default", "rope_theta": cfg.rope_parameters["rope_theta"]}
            unscaled = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
            unscaled.load_state_dict(hf.state_dict())
            with torch.no_grad():
                control = (ours - unscaled(tokens).logits.float()).abs().max().item()
            print(f"control_diff_without_rope_scaling={control:.3e}")
        if args.greedy:
            hf.generation_config.eos_token_id = None  # argmax all the way, as the megatron loop does
            out = hf.generate(tokens[:1, :5], max_new_tokens=args.greedy, do_sample=False)
            print(f"greedy_megatron={ours_gen}\ngreedy_hf={out[0].tolist()}".replace(" ", ""))
            print(f"greedy_match={out[0].tolist() == ours_gen}")
            rc = rc or int(out[0].tolist() != ours_gen)
    rt.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
