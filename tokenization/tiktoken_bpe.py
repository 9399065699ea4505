"""A megatron-core tokenizer for plain tiktoken ``*.tiktoken`` BPE files (e.g. Qwen's ``qwen.tiktoken``).

megatron-core's own ``TikTokenTokenizer`` reads only the JSON "tekken" layout and shifts every id
by 1000 reserved special tokens, so it cannot reproduce Qwen's ids. This class keeps the file's
ranks as ids and appends the special tokens after them: for a 151643-rank file (Qwen2/Qwen2.5) the
22 Qwen special tokens (``<|endoftext|>`` = 151643, ``<|im_start|>`` = 151644, ...), for any other
file a single ``<|endoftext|>``. The pre-tokenizer is the Qwen2 pattern. Decoding joins token
bytes before decoding UTF-8, so ``detokenize(tokenize(s)) == s`` for every string.

Used by :func:`tokenization.megatron_wrappers.load_tokenizer` (it pulls in megatron-core).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

from megatron.core.tokenizers import MegatronTokenizerBase

from tokenization.tokenizer import EncoderSpec, build_tiktoken_encoding


class TiktokenBPETokenizer(MegatronTokenizerBase):
    """``MegatronTokenizerBase`` over a ``tiktoken.Encoding`` built from a ``*.tiktoken`` file."""

    def __init__(self, spec: EncoderSpec):
        super().__init__(spec.path, {"library": "tiktoken", "model_type": "default",
                                     "chat_template": None})
        self.spec = spec
        self._enc = build_tiktoken_encoding(spec)
        self._special_ids = set(self._enc._special_tokens.values())

    def tokenize(self, text: str) -> list[int]:
        return self._enc.encode(text, allowed_special="all")

    def detokenize(self, ids, remove_special_tokens: bool = False) -> str:
        ids = [int(i) for i in ids]
        if remove_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self._enc.decode_bytes(ids).decode("utf-8", errors="replace")

    def offsets(self, ids: list[int], text: str) -> list[int]:
        # character offset of every token, as megatron's tokenizers provide for GPTDataset users
        _, offs = self._enc.decode_with_offsets([int(i) for i in ids])
        return offs

    @property
    def vocab(self) -> dict[str, Any]:
        out = {}
        for tok_bytes, rank in self._enc._mergeable_ranks.items():
            out[tok_bytes.decode("utf-8", errors="replace")] = rank
        out.update(self._enc._special_tokens)
        return out

    @property
    def inv_vocab(self) -> dict[int, str]:
        return {v: k for k, v in self.vocab.items()}

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    @property
    def eod(self) -> int:
        return self.spec.eod

    @property
    def eos_id(self) -> int:
        return self.spec.eod

    eos = eod

    @property
    def bos(self) -> Optional[int]:
        return None

    bos_id = bos

    @property
    def pad(self) -> int:
        return self.spec.eod

    pad_id = pad

    @property
    def unique_identifiers(self) -> OrderedDict:
        out = OrderedDict()
        out["class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        out["tokenizer_path"] = self.spec.path
        return out

    def apply_chat_template(self, *args, **kwargs):
        raise NotImplementedError(
            "TiktokenBPETokenizer has no chat template; render prompts with tokenization.templates"
        )
