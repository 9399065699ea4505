"""Print megatron-core's parameter count of each preset at 1 and 2 layers (JSON), single process."""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402

from megatron_octo import config as cfgmod  # noqa: E402
from megatron_octo.models import llama  # noqa: E402
from megatron_octo.runtime import distributed as rt  # noqa: E402


def main():
    rt.initialize(1, 1, seed=1)
    out = {}
    for preset in sys.argv[1:]:
        for layers in (1, 2):
            cfg = cfgmod.load(None, ["train.tokens=0", f"model.preset={preset}", f"model.num_layers={layers}"])
            arch = llama.resolve_architecture(cfg.model)
            tc = llama.transformer_config(cfg, arch)
            tc.perform_initialization = False  # sizes only: skip random init of 0.5B-entry embeddings
            from megatron.core.models.gpt.gpt_model import GPTModel
            model = GPTModel(config=tc, transformer_layer_spec=llama.layer_spec(cfg.model),
                             vocab_size=llama.padded_vocab_size(arch.vocab_size, 128, 1),
                             max_sequence_length=arch.max_position_embeddings,
                             share_embeddings_and_output_weights=arch.tie_embeddings,
                             position_embedding_type="rope", rotary_base=arch.rotary_base,
                             rope_scaling=arch.rope_scaling_factor > 0,
                             rope_scaling_factor=arch.rope_scaling_factor or 8.0)
            n = sum(p.numel() for p in model.parameters())
            out[f"{preset}:{layers}"] = {"megatron": n, "ours": llama.num_parameters(arch, llama.padded_vocab_size(arch.vocab_size, 128, 1)),
                                         "qkv": list(model.decoder.layers[0].self_attention.linear_qkv.weight.shape),
                                         "fc1": list(model.decoder.layers[0].mlp.linear_fc1.weight.shape),
                                         "rope_base": model.rotary_pos_emb.inv_freq.numel() if hasattr(model, "rotary_pos_emb") else None,
                                         "inv_freq_last": float(model.rotary_pos_emb.inv_freq[-1])}
            del model
    print(json.dumps(out))
    rt.shutdown()


if __name__ == "__main__":
    main()
