"""Per-rank parameter elements of real megatron-core GPTModels at TP=2 and at PP=2 (run under
torchrun with 2 gloo processes). Rank 0 prints one JSON line:
{"<shape>|tp<T>pp<P>|rank<R>": {"params": n, "stage": s, "tp_rank": t}, ...}.

Shapes: the tiny presets (tiny-tied with a 300-token vocabulary, padded differently at TP=1 and TP=2)
and the three Llama-3 presets at their real widths and vocabulary with 2 layers. Weights are
allocated (bf16, CPU) but not initialised."""
import json
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from megatron_octo import config as cfgmod  # noqa: E402
from megatron_octo.models import llama  # noqa: E402
from megatron_octo.runtime import distributed as rt  # noqa: E402

SHAPES = {
    "tiny": ["model.preset=tiny"],
    "tiny-tied-v300": ["model.preset=tiny-tied", "model.vocab_size=300"],
    "llama3.2-1b-2l": ["model.preset=llama3.2-1b", "model.num_layers=2"],
    "llama3.2-3b-2l": ["model.preset=llama3.2-3b", "model.num_layers=2"],
    "llama3.1-8b-2l": ["model.preset=llama3.1-8b", "model.num_layers=2"],
}


def count(shape_overrides, tp, pp):
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt.gpt_model import GPTModel

    cfg = cfgmod.load(None, ["train.tokens=0", "model.params_dtype=bf16", f"parallel.tp={tp}",
                             f"parallel.pp={pp}", *shape_overrides])
    arch = llama.resolve_architecture(cfg.model)
    tc = llama.transformer_config(cfg, arch)
    tc.perform_initialization = False  # sizes only
    model = GPTModel(config=tc, transformer_layer_spec=llama.layer_spec(cfg.model),
                     vocab_size=llama.padded_vocab_size(arch.vocab_size, cfg.model.make_vocab_size_divisible_by, tp),
                     max_sequence_length=arch.max_position_embeddings,
                     pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage(),
                     share_embeddings_and_output_weights=arch.tie_embeddings,
                     position_embedding_type="rope", rotary_base=arch.rotary_base,
                     rope_scaling=arch.rope_scaling_factor > 0,
                     rope_scaling_factor=arch.rope_scaling_factor or 8.0)
    n = sum(p.numel() for p in model.parameters())
    del model
    return {"params": n, "stage": ps.get_pipeline_model_parallel_rank(),
            "tp_rank": ps.get_tensor_model_parallel_rank()}


def main():
    out = {}
    rt.initialize(2, 1, seed=1)
    for layout, (tp, pp) in (("tp2pp1", (2, 1)), ("tp1pp2", (1, 2))):
        rt.init_model_parallel(tp, pp)
        rt.set_seed(1)
        for name, overrides in SHAPES.items():
            out[f"{name}|{layout}|rank{dist.get_rank()}"] = count(overrides, tp, pp)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, out)
    if dist.get_rank() == 0:
        merged = {}
        for g in gathered:
            merged.update(g)
        print(json.dumps(merged), flush=True)
    rt.shutdown()


if __name__ == "__main__":
    main()
