"""train_tokenizer in-process: digit grouping (one token per number of up to N digits) and its refusals."""

import pytest
import sentencepiece as spm

from tests.helpers import ROOT
from tokenization import train_tokenizer

QA_SHORT = str(ROOT / "data" / "corpus" / "qa_short.jsonl.gz")


@pytest.mark.timeout(120)
def test_digit_group_makes_every_number_below_100_one_token(tmp_path, capsys):
    for group in (1, 2):
        assert train_tokenizer.main(["--input-qa", f"{QA_SHORT}:short_cot", "--vocab-size", "800",
                                     "--digit-group", str(group), "--output", str(tmp_path / f"g{group}")]) == 0
    g1 = spm.SentencePieceProcessor(model_file=str(tmp_path / "g1.model"))
    g2 = spm.SentencePieceProcessor(model_file=str(tmp_path / "g2.model"))
    for n in range(100):
        assert g2.encode(str(n), out_type=str) == [str(n)]
        assert g1.encode(str(n), out_type=str) == list(str(n))  # the default splits every digit
    text = "Compute (7 * 5) + 17: 7 * 5 = 35. 35 + 17 = 52. Then 2026 and 05 and -12.\nünï\t!"
    assert g2.decode(g2.encode(text)) == text  # still lossless
    assert all(len(p.strip("▁")) <= 2 for p in g2.encode("123456 2026", out_type=str) if p.strip("▁").isdigit())
    assert g2.get_piece_size() == 800


def test_digit_group_out_of_range_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_tokenizer.main(["--input-qa", f"{QA_SHORT}:short_cot", "--digit-group", "4",
                              "--output", str(tmp_path / "x")])
    assert exc.value.code == 2 and "--digit-group must be 1, 2 or 3, got 4" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_train_refuses_a_digit_group_out_of_range(tmp_path):
    from tokenization.worker import Selection

    for bad in (0, 4):
        with pytest.raises(ValueError, match=f"--digit-group must be 1, 2 or 3, got {bad}"):
            train_tokenizer.train([(QA_SHORT, Selection(format="qa", template="short_cot"))], str(tmp_path / "x"),
                                  vocab_size=800, digit_group=bad)
    assert not list(tmp_path.iterdir())
