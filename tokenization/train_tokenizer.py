"""Train a small lossless SentencePiece tokenizer on JSONL/parquet corpora (the demo tokenizer).

    python -m tokenization.train_tokenizer --input data/corpus/math_web.jsonl.gz \\
        --input-qa data/corpus/qa_long.jsonl.gz:long_cot --input-qa data/corpus/qa_short.jsonl.gz:short_cot \\
        --vocab-size 8192 --output data/tokenizer/octo_sp8k

writes ``<output>.model`` and ``<output>.vocab`` (piece and score per line, for reading). Settings chosen for exact round trips
(``detokenize(tokenize(s)) == s``): identity normalization, no dummy prefix, whitespace kept as is,
byte fallback for unseen characters, and ``"\\n"`` as a user-defined piece (documents are split into
lines for training, so a newline would otherwise cost a byte token). Digits are split one by one,
as in Llama-2 and Qwen, or with ``--digit-group N`` into runs of up to N digits, each run one token, as
Llama-3's pre-tokenizer groups up to three (``\\p{N}{1,3}``). Ids: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2 (the EOD), no pad piece.
The same inputs and options give the same model bytes (single-threaded, no sampling, input fed
from memory so no temporary path is recorded in the model).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator, Optional

from tokenization.readers import ReadProblem, RecordStream, expand_inputs
from tokenization.templates import canonical_name
from tokenization.worker import Reject, Selection, decode_line, select_text


def iter_texts(path: str, sel: Selection) -> Iterator[str]:
    """Valid documents of one input file (bad records are skipped silently here)."""
    for number, payload in RecordStream(path, columns=sel.top_level_columns()):
        if isinstance(payload, ReadProblem):
            return
        try:
            rec = decode_line(payload, number) if isinstance(payload, bytes) else payload
            yield select_text(rec, sel)
        except Reject:
            continue


def train(
    sources: list[tuple[str, Selection]],
    output: str,
    vocab_size: int = 8192,
    max_lines: int = 2_000_000,
    character_coverage: float = 0.9995,
    digit_group: int = 1,
) -> str:
    import io

    import sentencepiece as spm

    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)

    def lines() -> Iterator[str]:
        n = 0
        for path, sel in sources:
            for text in iter_texts(path, sel):
                for line in text.split("\n"):
                    if line.strip():
                        if n >= max_lines:
                            return
                        n += 1
                        yield line.replace("\r", " ")

    if not 1 <= digit_group <= 3:
        raise ValueError(f"--digit-group must be 1, 2 or 3, got {digit_group}")
    it = lines()
    first = next(it, None)
    if first is None:
        raise ValueError("no training text found in the inputs")

    def all_lines():
        yield first
        yield from it

    # In-memory input and output: the model records no temporary paths, so it is reproducible.
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=all_lines(),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=digit_group == 1,
        byte_fallback=True,
        allow_whitespace_only_pieces=True,
        # A user-defined symbol is always one piece, so every number of up to digit_group digits (without a
        # leading zero) is one token and longer digit runs split into such pieces.
        user_defined_symbols=["\n", *([str(i) for i in range(10 ** digit_group)] if digit_group > 1 else [])],
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        max_sentence_length=1 << 16,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )
    model = buf.getvalue()
    sp = spm.SentencePieceProcessor(model_proto=model)
    vocab = "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size()))
    for ext, data in ((".model", model), (".vocab", vocab.encode("utf-8"))):
        tmp = output + ext + f".tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, output + ext)
    return output + ".model"


def _qa_source(spec: str) -> tuple[str, Selection]:
    path, _, template = spec.rpartition(":")
    if not path:
        raise ValueError(f"--input-qa wants PATH:TEMPLATE, got {spec!r}")
    return path, Selection(format="qa", template=canonical_name(template),
                           final_answer_key="final_answer")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tokenization.train_tokenizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", nargs="*", default=[], action="extend", help="text JSONL files/globs")
    p.add_argument("--text-key", default="text")
    p.add_argument("--input-qa", nargs="*", default=[], action="extend",
                   help="PATH:TEMPLATE QA files (question/answer/final_answer keys)")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--max-lines", type=int, default=2_000_000)
    p.add_argument("--output", required=True, help="output prefix (writes .model and .vocab)")
    p.add_argument("--digit-group", type=int, default=1,
                   help="digits per number token: 1 splits every digit (default), N > 1 makes every number of "
                        "up to N digits one token (Llama-3 groups 3)")
    args = p.parse_args(argv)
    sources = [(f, Selection(text_key=args.text_key)) for f in expand_inputs(args.input)] if args.input else []
    sources += [_qa_source(s) for s in args.input_qa]
    if not sources:
        p.error("give --input and/or --input-qa")
    try:
        model = train(sources, args.output, args.vocab_size, args.max_lines, digit_group=args.digit_group)
    except ValueError as exc:
        p.error(str(exc))
    print(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
