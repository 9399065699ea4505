"""Both directions between megatron's local and TE layer specs through our checkpoint save/load, one
process: (1) a checkpoint whose linears carry Transformer Engine's ``_extra_state`` payload (TE
stores its FP8 metadata as a uint8 tensor of a pickle) loads into the local-spec model; (2) a local
checkpoint hands a TE-style module exactly the keys it asks for, its ``_extra_state`` being None
(TE's ``set_extra_state`` returns on None). Prints one JSON line."""

from __future__ import annotations

import json
import pickle
import sys

import torch
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

from megatron_octo import config as cfgmod
from megatron_octo.models import llama
from megatron_octo.runtime import distributed as rt
from megatron_octo.checkpoint import save_load as ckpt

ANY_LAYOUT = {"tp": None, "pp": None, "dp": None}


def main(out_dir: str) -> None:
    rt.initialize(1, 1)
    cfg = cfgmod.load(None, ["model.preset=tiny", "model.num_layers=2", "train.tokens=0"])
    arch = llama.resolve_architecture(cfg.model)
    build = lambda: llama.build_gpt_model(cfg, arch, pre_process=True, post_process=True)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    # The decoder's linears are TE modules under the TE spec; the output layer is megatron's in both.
    linears = lambda m: [x for x in m.decoder.modules() if isinstance(x, (ColumnParallelLinear, RowParallelLinear))]

    te_like = build()
    payload = torch.frombuffer(bytearray(pickle.dumps({"scale_fwd": [1.0, 2.0], "recipe": "delayed"})),
                               dtype=torch.uint8)
    for mod in linears(te_like):
        mod.get_extra_state = lambda p=payload: p.clone()
    te_path = ckpt.save(f"{out_dir}/te", te_like, None, ckpt.TrainerState(layout={"tp": 1, "pp": 1, "dp": 1}), "{}")
    local = build()
    fresh = not same(te_like, local)  # a fresh model differs: equality after the load means it loaded
    ckpt.load(te_path, local, None, with_optimizer=False, layout=ANY_LAYOUT, verify="off")
    te_into_local = same(te_like, local)

    local_path = ckpt.save(f"{out_dir}/local", local, None, ckpt.TrainerState(layout={"tp": 1, "pp": 1, "dp": 1}),
                           "{}")
    te_model = build()
    fresh = fresh and not same(local, te_model)
    received = []
    for mod in linears(te_model):
        mod.set_extra_state = lambda state, r=received: r.append(state)
    ckpt.load(local_path, te_model, None, with_optimizer=False, layout=ANY_LAYOUT, verify="off")
    print("RESULT " + json.dumps({"fresh_models_differ": fresh, "te_into_local": te_into_local,
                                  "local_into_te": same(local, te_model), "extra_states_received": len(received),
                                  "linears": len(linears(te_model)), "all_none": all(s is None for s in received)}),
          flush=True)
    rt.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
