"""Stop-string handling of generations (pure: no model)."""

from __future__ import annotations

import pytest

from megatron_octo.generation import cut_at_stop
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def tok():
    from tokenization.megatron_wrappers import load_tokenizer

    return load_tokenizer(str(ROOT / "data/tokenizer/octo_sp8k.model"), "sentencepiece")


def test_cut_at_first_stop_string(tok):
    ids = tok.tokenize("The answer is 42.\n\nQ: next question")
    keep, text, found = cut_at_stop(tok, ids, ["\n\nQ:", "Problem:"])
    assert found == "\n\nQ:" and text == "The answer is 42."
    # The kept tokens are the shortest prefix whose text contains the stop string.
    assert "\n\nQ:" in tok.detokenize(ids[:keep]) and "\n\nQ:" not in tok.detokenize(ids[:keep - 1])


def test_earliest_of_several_stops_wins(tok):
    ids = tok.tokenize("x = 1 User: hi Assistant: yo")
    _, text, found = cut_at_stop(tok, ids, ["Assistant:", "User:"])
    assert found == "User:" and text == "x = 1 "


def test_no_stop(tok):
    ids = tok.tokenize("just text")
    assert cut_at_stop(tok, ids, ["\n\n"]) == (len(ids), "just text", None)
    assert cut_at_stop(tok, ids, []) == (len(ids), "just text", None)
