"""The planner's per-rank parameter counts equal real megatron-core GPTModels at TP=2 and PP=2."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_octo import planner as pl
from megatron_octo.models.llama import PRESETS
from tests.distributed.bucket import COUNT_LAYOUTS, COUNT_SHAPES

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]

# The shapes the distributed bucket counts (tests/distributed/bucket.py: COUNT_SHAPES).
SHAPES = {
    "tiny": PRESETS["tiny"],
    "tiny-tied-v300": dataclasses.replace(PRESETS["tiny-tied"], vocab_size=300),
    "llama3.2-1b-2l": dataclasses.replace(PRESETS["llama3.2-1b"], num_layers=2),
    "llama3.2-3b-2l": dataclasses.replace(PRESETS["llama3.2-3b"], num_layers=2),
    "llama3.1-8b-2l": dataclasses.replace(PRESETS["llama3.1-8b"], num_layers=2),
}
LAYOUTS = {"tp2pp1": (2, 1), "tp1pp2": (1, 2)}


@pytest.fixture(scope="module")
def megatron_counts(rank_bucket):
    """``"<shape>|<layout>|rank<R>" -> {"params", "stage", "tp_rank"}`` of real megatron-core GPTModels."""
    assert set(COUNT_SHAPES) == set(SHAPES) and COUNT_LAYOUTS == LAYOUTS
    counts = {}
    for layout in LAYOUTS:
        for rank, rows in enumerate(rank_bucket.result(f"test_parameter_counts[{layout}]", f"parameter_counts_{layout}")):
            counts.update({f"{shape}|{layout}|rank{rank}": row for shape, row in rows.items()})
    return counts


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_rank_parameters_equal_megatron(megatron_counts, shape, layout):
    tp, pp = LAYOUTS[layout]
    w = pl.Workload(SHAPES[shape], seq_length=128, global_batch=8)
    for rank in range(2):
        row = megatron_counts[f"{shape}|{layout}|rank{rank}"]
        ours = pl.rank_parameters(w, tp, pp, row["stage"])
        assert ours.total == row["params"], (shape, layout, rank, row, ours)
    # Both ranks of the layout were counted (one per TP rank, or one per stage).
    stages = {megatron_counts[f"{shape}|{layout}|rank{r}"]["stage"] for r in range(2)}
    assert stages == ({0} if pp == 1 else {0, 1})


def test_tied_last_stage_holds_an_embedding_copy(megatron_counts):
    # PP=2, tied: the last stage's extra parameters are exactly one padded embedding (V_pad x h),
    # which the planner's memory model charges to that stage.
    arch = SHAPES["llama3.2-3b-2l"]
    first = megatron_counts["llama3.2-3b-2l|tp1pp2|rank0"]["params"]
    last = megatron_counts["llama3.2-3b-2l|tp1pp2|rank1"]["params"]
    assert last - first == arch.hidden_size  # the final norm; both hold V_pad x h
    w = pl.Workload(arch, 128, 8)
    assert pl.rank_parameters(w, 1, 2, 1).output_layer == 128256 * 3072
