"""A SentencePiece unigram model as a Hugging Face ``tokenizer.json`` (tokenizers library).

transformers 5 no longer ships the slow SentencePiece tokenizer: ``LlamaTokenizer`` rebuilds a *BPE*
tokenizer from a ``tokenizer.model``, which encodes a unigram model (such as the project's
``octo_sp8k.model``) differently. The export therefore writes a ``tokenizer.json`` that reproduces
``SentencePieceProcessor.encode`` for unigram models with the normalisation sentencepiece applies
(whitespace escaped to U+2581, optional dummy prefix, identity or NFKC rules, byte fallback).
Models it cannot reproduce return None and the caller ships only ``tokenizer.model``.
"""

from __future__ import annotations

from typing import Optional

UNIGRAM = 1
# sentencepiece piece types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def sentencepiece_to_tokenizer(model_path: str) -> Optional[object]:
    """A ``tokenizers.Tokenizer`` equivalent to the SentencePiece model, or None if unsupported."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

    m = pb.ModelProto()
    with open(model_path, "rb") as f:
        m.ParseFromString(f.read())
    ns = m.normalizer_spec
    if m.trainer_spec.model_type != UNIGRAM or ns.remove_extra_whitespaces or ns.name not in ("identity", "nfkc"):
        return None
    tok = Tokenizer(models.Unigram([(p.piece, p.score) for p in m.pieces], unk_id=m.trainer_spec.unk_id,
                                   byte_fallback=m.trainer_spec.byte_fallback))
    norm = [normalizers.Replace(" ", "\u2581")]
    if ns.name == "nfkc":
        norm.insert(0, normalizers.NFKC())
    tok.normalizer = normalizers.Sequence(norm)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", split=False,
                                                 prepend_scheme="first" if ns.add_dummy_prefix else "never")
    steps = [decoders.Replace("\u2581", " ")]
    if m.trainer_spec.byte_fallback:
        steps.append(decoders.ByteFallback())
    steps.append(decoders.Fuse())
    if ns.add_dummy_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    tok.add_special_tokens([AddedToken(p.piece, special=True, normalized=False)
                            for p in m.pieces if p.type in (UNKNOWN, CONTROL)])
    tok.add_tokens([AddedToken(p.piece, special=False, normalized=False)
                    for p in m.pieces if p.type == USER_DEFINED])
    return tok
