"""Load checkpoints at TP=1 PP=1 through megatron's dist checkpointing (which reshards on load, the way
eval and RL load them) and save each again with our save: ``SRC DST [SRC DST ...]``. ``--nan`` puts a
NaN into the first element of the embedding (an input the merge must refuse). Prints one JSON line
(``RESULT {...}``) naming the written directories."""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from megatron_octo import config as cfgmod
from megatron_octo.checkpoint import save_load as ckpt
from megatron_octo.models.from_checkpoint import load_for_inference
from megatron_octo.runtime import distributed as rt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("pairs", nargs="+")
    p.add_argument("--nan", action="store_true")
    args = p.parse_args()
    assert len(args.pairs) % 2 == 0, "SRC DST pairs"
    written = []
    for src, dst in zip(args.pairs[::2], args.pairs[1::2]):
        loaded = load_for_inference(src, ["parallel.tp=1", "parallel.pp=1"])
        if args.nan:
            with torch.no_grad():
                loaded.model.embedding.word_embeddings.weight.view(-1)[0] = float("nan")
        state = dataclasses.replace(loaded.state, layout={"tp": 1, "pp": 1, "dp": 1})
        written.append(ckpt.save(dst, loaded.model, None, state, cfgmod.to_yaml(loaded.cfg)))
    print("RESULT " + json.dumps({"written": written}), flush=True)
    rt.shutdown()


if __name__ == "__main__":
    main()
