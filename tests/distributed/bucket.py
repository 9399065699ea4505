"""The distributed bucket: every test here needs two ranks, and ONE ``torchrun --nproc-per-node 2`` runs all of
them as a pytest session on each rank (``python -m tests.distributed.bucket OUT``), as Megatron-LM's unit tests
run one torchrun per bucket. The session holds the world's process group; each test creates its own
model-parallel groups on it and destroys them after (``megatron_in_process(seed, tp, pp)``), so a test sees
megatron as a fresh process would.

Each test writes what it measured, per rank, to ``OUT/<test name>/rank<R>.json``, and each rank's pytest writes
``OUT/junit-rank<R>.xml``. The outer tests (``tests/distributed/test_*.py``, through the ``rank_bucket`` fixture
of ``tests/distributed/conftest.py``) compare those results with the single-process ones computed in their own
interpreter, and report an inner failure under their own name. Inputs: ``OUT/inputs.json`` (written by the
fixture). Not collected by the outer run: the file name is not ``test_*.py``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.megatron_state import megatron_in_process

OUT = Path(os.environ.get("OCTO_BUCKET_OUT", "."))

# The shapes whose per-rank parameter counts the planner must reproduce: the tiny presets (tiny-tied with a
# 300-token vocabulary, padded differently at TP=1 and TP=2) and the three Llama-3 presets at their real
# widths and vocabulary with 2 layers (tests/distributed/test_planner_counts.py holds the planner's side).
COUNT_SHAPES = {
    "tiny": ["model.preset=tiny"],
    "tiny-tied-v300": ["model.preset=tiny-tied", "model.vocab_size=300"],
    "llama3.2-1b-2l": ["model.preset=llama3.2-1b", "model.num_layers=2"],
    "llama3.2-3b-2l": ["model.preset=llama3.2-3b", "model.num_layers=2"],
    "llama3.1-8b-2l": ["model.preset=llama3.1-8b", "model.num_layers=2"],
}
COUNT_LAYOUTS = {"tp2pp1": (2, 1), "tp1pp2": (1, 2)}


def inputs() -> dict:
    return json.loads((OUT / "inputs.json").read_text())


def save(name: str, result) -> None:
    """This rank's result of test ``name``, written whole or not at all."""
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"rank{dist.get_rank()}.json"
    path.with_suffix(".tmp").write_text(json.dumps(result))
    os.replace(path.with_suffix(".tmp"), path)


@pytest.fixture(scope="module", autouse=True)
def world():
    """The world's process group (torchrun's rendezvous) for the whole session, one thread per rank."""
    from megatron_octo.runtime import distributed as rt

    torch.set_num_threads(1)
    rt.init_process_group()
    assert dist.get_world_size() == 2
    yield
    rt.shutdown()


def test_rollout_logprobs_tp2():
    from tests.rl_cases import rollout_logprobs

    with megatron_in_process(seed=11, tp=2):
        save("rollout_logprobs_tp2", rollout_logprobs(2))


def test_pipeline_rollout_logprobs_pp2():
    from tests.rl_cases import pipeline_rollout_logprobs

    with megatron_in_process(seed=11, pp=2):
        save("pipeline_rollout_logprobs_pp2", pipeline_rollout_logprobs(2, inputs()["ckpt"]))


def test_rl_validation_dp2():
    from megatron_octo.eval import grader
    from tests.rl_cases import rl_validation, validation_overrides

    args = inputs()
    # RLTrainer.setup initialises megatron itself at the recipe's seed (1234), as `python -m megatron_octo.rl` does
    with megatron_in_process(seed=1234):
        try:
            result = rl_validation(args["rl_recipe"], validation_overrides(args["ckpt"], OUT / "dp2", args["val"]))
        finally:
            grader.shutdown_grader()
    save("rl_validation_dp2", result)


def test_hf_logits_tp2():
    from tests.hf_cases import hf_logits

    args = inputs()
    with megatron_in_process(seed=0, tp=2):
        rc, lines = hf_logits(args["hf"], args["hf_tp2"], greedy_tokens=6)
    save("hf_logits_tp2", {"rc": rc, "lines": lines})


def _count(shape_overrides, tp, pp) -> dict:
    """Parameter elements on this rank of a real megatron-core GPTModel (bf16, allocated, not initialised)."""
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt.gpt_model import GPTModel

    from megatron_octo import config as cfgmod
    from megatron_octo.models import llama

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
    return {"params": n, "stage": ps.get_pipeline_model_parallel_rank(),
            "tp_rank": ps.get_tensor_model_parallel_rank()}


@pytest.mark.parametrize("layout", list(COUNT_LAYOUTS))
def test_parameter_counts(layout):
    tp, pp = COUNT_LAYOUTS[layout]
    with megatron_in_process(seed=1, tp=tp, pp=pp):
        save(f"parameter_counts_{layout}",
             {name: _count(overrides, tp, pp) for name, overrides in COUNT_SHAPES.items()})


if __name__ == "__main__":  # under torchrun: this file's tests on this rank, its outcomes in OUT/junit-rank<R>.xml
    OUT = Path(sys.argv[1])
    os.environ["OCTO_BUCKET_OUT"] = str(OUT)
    rank = os.environ["RANK"]
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                          f"--junitxml={OUT}/junit-rank{rank}.xml", *sys.argv[2:]]))
