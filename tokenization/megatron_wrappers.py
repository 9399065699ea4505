"""The one entry point that loads any tokenizer kind of the project as a megatron-core tokenizer
(the table is in ``tokenization/tokenizer.py``, which describes and encodes without megatron)."""

from __future__ import annotations

import functools
import os
from typing import Optional

from megatron.core.tokenizers import MegatronTokenizer

from tokenization.tiktoken_bpe import TiktokenBPETokenizer
from tokenization.tokenizer import encoder_spec


def load_tokenizer(
    path: Optional[str],
    library: str = "auto",
    vocab_size: Optional[int] = None,
    *,
    eod_token: Optional[str] = None,
):
    """Load a tokenizer as a megatron-core ``MegatronTokenizerBase`` (see the module table).

    Its ``detokenize`` skips ids outside the tokenizer's vocabulary, as Hugging Face's fast tokenizers
    do: the model's output layer is padded (to a multiple of 128 x TP, or a checkpoint's larger
    vocabulary), an early or random checkpoint samples those rows, and sentencepiece and tiktoken
    raise on them (``IndexError: piece id is out of range``) in the middle of an eval or a rollout.

    Raises ``FileNotFoundError`` for a missing path and ``TokenizerError`` (a ``ValueError``) for an
    unknown kind, a missing EOD token or a ``null`` tokenizer without ``vocab_size``.
    """
    tok = _load(path, library, vocab_size, eod_token)
    decode, size = tok.detokenize, tok.vocab_size

    # wraps: inspect.signature (which megatron's controller reads to decide whether to pass
    # skip_special_tokens) sees the wrapped tokenizer's own parameters, not *args/**kwargs
    @functools.wraps(decode)
    def detokenize(ids, *args, **kwargs) -> str:
        if hasattr(ids, "tolist"):  # a tensor or an array, as megatron's tokenizers accept
            ids = ids.tolist()
        return decode([i for i in ids if 0 <= i < size], *args, **kwargs)

    tok.detokenize = detokenize
    return tok


def _load(path, library, vocab_size, eod_token):
    spec = encoder_spec(path, library, vocab_size, eod_token)
    if spec.library == "tiktoken" and spec.extra.get("layout") == "ranks":
        return TiktokenBPETokenizer(spec)

    if spec.library == "null":
        return MegatronTokenizer.from_pretrained(
            metadata_path={"library": "null"}, vocab_size=spec.vocab_size - 1
        )
    if spec.library == "huggingface":
        d = spec.path if os.path.isdir(spec.path) else os.path.dirname(spec.path)
        return MegatronTokenizer.from_pretrained(
            d, metadata_path={"library": "huggingface"}, eos_token=spec.eod_token, use_fast=True
        )
    if spec.library == "sentencepiece":
        return MegatronTokenizer.from_pretrained(spec.path, metadata_path={"library": "sentencepiece"})
    # tiktoken, tekken JSON layout: megatron's own wrapper
    return MegatronTokenizer.from_pretrained(
        spec.path, metadata_path={"library": "tiktoken"}, vocab_size=spec.vocab_size
    )
