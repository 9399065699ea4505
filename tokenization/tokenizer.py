"""Tokenizer kinds and fast encoding, without importing megatron-core.

``tokenization.megatron_wrappers.load_tokenizer(path, library="auto", vocab_size=None)`` returns a megatron-core
``MegatronTokenizerBase`` object (``.tokenize``, ``.detokenize``, ``.eod``, ``.vocab_size``):

=============  ==========================================  ===============================  =======================
library        file                                        wrapper                          EOD id
=============  ==========================================  ===============================  =======================
huggingface    ``tokenizer.json`` or a directory with one  megatron ``HuggingFaceTokenizer``  first present of
                                                                                            ``<|endoftext|>`` (Qwen,
                                                                                            GPT-2), ``<|end_of_text|>``
                                                                                            (Llama-3), the
                                                                                            ``eos_token`` of a sibling
                                                                                            ``tokenizer_config.json``,
                                                                                            ``</s>``, ``<eos>``
sentencepiece  ``*.model``                                 megatron ``SentencePieceTokenizer``  the model's ``eos_id``
tiktoken       ``*.tiktoken`` (base64 ``token rank`` lines,  ``TiktokenBPETokenizer`` (this     ``<|endoftext|>``
               e.g. Qwen's ``qwen.tiktoken``)               package; megatron's wrapper
                                                            reads only the JSON format)
tiktoken       ``*.json`` list of ``{rank, token_bytes,     megatron ``TikTokenTokenizer``     ``</s>`` (id 2)
               token_str}`` (Mistral "tekken" layout)
null           none; needs ``vocab_size``                   megatron ``NullTokenizer``         ``vocab_size``
=============  ==========================================  ===============================  =======================

``auto`` picks the library from the path as in the table. ``eod_token=`` overrides the EOD choice
for huggingface and tiktoken files.

The preprocessor does not call the wrappers in its workers: importing them pulls in megatron-core,
torch and transformers (several seconds and a few hundred MB per process), and they encode one
document at a time (the HF wrapper maps token strings back to ids in Python, ~1.3x slower than
``encode_batch_fast`` on one core). Instead :class:`EncoderSpec` (a small picklable description, computed without importing
megatron) and :class:`FastEncoder` (batch encoding with the underlying library) produce the same ids
as ``load_tokenizer(...).tokenize`` — ``tests/unit/test_tokenization_tokenizer.py`` checks that for
every library. Special-token strings that occur in the text (``<|endoftext|>``) are encoded as the
special token, as megatron's wrappers do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = [
    "LIBRARIES",
    "EncoderSpec",
    "FastEncoder",
    "TokenizerError",
    "detect_library",
    "encoder_spec",
    "QWEN2_PATTERN",
    "QWEN2_SPECIAL_TOKENS",
]

LIBRARIES = ("auto", "huggingface", "sentencepiece", "tiktoken", "null")

# The Qwen2 / Qwen2.5 pre-tokenizer (single digits), see ../shared/data/SOURCES.md.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]
QWEN2_NUM_RANKS = 151643

HF_EOD_CANDIDATES = ("<|endoftext|>", "<|end_of_text|>")
HF_EOD_FALLBACKS = ("</s>", "<eos>")

# megatron-core TikTokenTokenizer defaults (tekken JSON layout)
MEGATRON_TIKTOKEN_SPECIALS = ["<unk>", "<s>", "</s>", "<mask>", "<pad>", "<cls>", "<sep>"]
MEGATRON_TIKTOKEN_NUM_SPECIAL = 1000
MEGATRON_TIKTOKEN_MAX_VOCAB = 2**17
MEGATRON_TIKTOKEN_PATTERN_V2 = (
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used (unknown kind, no EOD token, bad arguments)."""


# Library objects loaded by encoder_spec, reused by FastEncoder in the same process and in forked
# preprocess workers (loading Qwen's tokenizer.json takes ~1.5 s of CPU; a fork inherits it).
_LOADED: dict[tuple, Any] = {}


def _cache_key(kind: str, path: str) -> tuple:
    st = os.stat(path)
    return (kind, path, st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------------------------
# Detection and the light-weight spec
# --------------------------------------------------------------------------------------------


def detect_library(path: str) -> str:
    """Infer the tokenizer library from a path (see the module table)."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return "huggingface"
        raise TokenizerError(
            f"cannot infer the tokenizer library of directory {path!r}: it has no tokenizer.json "
            "(pass a tokenizer.json, a SentencePiece *.model or a *.tiktoken file)"
        )
    name = os.path.basename(path)
    if name == "tokenizer.json":
        return "huggingface"
    if name.endswith(".model"):
        return "sentencepiece"
    if name.endswith(".tiktoken"):
        return "tiktoken"
    raise TokenizerError(
        f"cannot infer the tokenizer library of {path!r}: expected tokenizer.json (or a directory "
        "holding one), *.model (SentencePiece) or *.tiktoken; pass library= explicitly"
    )


@dataclass(frozen=True)
class EncoderSpec:
    """Everything a worker needs to rebuild the encoder; cheap to pickle."""

    library: str
    path: Optional[str]
    eod: int
    vocab_size: int
    eod_token: Optional[str] = None
    extra: dict = field(default_factory=dict)

    @property
    def dtype_name(self) -> str:
        """``uint16`` when every id fits (megatron's DType.optimal_dtype rule), else ``int32``."""
        return "uint16" if self.vocab_size < 65500 else "int32"

    def describe(self) -> dict[str, Any]:
        out = {"library": self.library, "path": self.path, "vocab_size": self.vocab_size,
               "eod": self.eod, "eod_token": self.eod_token}
        if self.path and os.path.isfile(self._file()):
            out["sha256"] = sha256_file(self._file())
        return out

    def _file(self) -> str:
        if self.path and os.path.isdir(self.path):
            return os.path.join(self.path, "tokenizer.json")
        return self.path or ""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_path(path: Optional[str], library: str) -> str:
    if not path:
        raise TokenizerError(f"library {library!r} needs a tokenizer path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    return path


def _hf_json_file(path: str) -> str:
    if os.path.isdir(path):
        f = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(f):
            raise FileNotFoundError(f"no tokenizer.json in tokenizer directory {path}")
        return f
    if os.path.basename(path) != "tokenizer.json":
        raise TokenizerError(
            f"huggingface tokenizer file must be named tokenizer.json (got {path!r}); "
            "put it in its own directory under that name"
        )
    return path


def _hf_config_eos(json_file: str) -> Optional[str]:
    cfg = os.path.join(os.path.dirname(json_file), "tokenizer_config.json")
    if not os.path.isfile(cfg):
        return None
    try:
        with open(cfg, encoding="utf-8") as f:
            eos = json.load(f).get("eos_token")
    except (OSError, ValueError):
        return None
    if isinstance(eos, dict):
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None


def _hf_pick_eod(json_file: str, vocab: dict[str, int], eod_token: Optional[str]) -> str:
    if eod_token is not None:
        if eod_token not in vocab:
            raise TokenizerError(f"eod_token {eod_token!r} is not in the vocabulary of {json_file}")
        return eod_token
    candidates = list(HF_EOD_CANDIDATES)
    cfg_eos = _hf_config_eos(json_file)
    if cfg_eos:
        candidates.append(cfg_eos)
    candidates.extend(HF_EOD_FALLBACKS)
    for tok in candidates:
        if tok in vocab:
            return tok
    raise TokenizerError(
        f"no end-of-document token in {json_file}: none of {candidates} is in the vocabulary; "
        "pass eod_token="
    )


def _read_tiktoken_ranks(path: str) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                tok, rank = line.split()
                ranks[base64.b64decode(tok, validate=True)] = int(rank)
            except ValueError as e:
                raise TokenizerError(f"{path}:{n}: not a tiktoken 'base64 rank' line ({e})") from None
    if not ranks:
        raise TokenizerError(f"tiktoken file {path} holds no ranks")
    return ranks


def _tiktoken_specials(n_ranks: int) -> dict[str, int]:
    if n_ranks == QWEN2_NUM_RANKS:
        names = QWEN2_SPECIAL_TOKENS
    else:
        names = ["<|endoftext|>"]
    return {tok: n_ranks + i for i, tok in enumerate(names)}


def _read_tekken_vocab(path: str) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            vocab = json.load(f)
    except ValueError as e:
        raise TokenizerError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(vocab, list) or not vocab or not isinstance(vocab[0], dict):
        raise TokenizerError(
            f"{path}: tiktoken JSON must be a list of {{rank, token_bytes, token_str}} entries "
            "(megatron/Mistral tekken layout)"
        )
    return vocab


def _tekken_vocab_size(n_entries: int, vocab_size: Optional[int]) -> int:
    if vocab_size is not None:
        return int(vocab_size)
    return min(MEGATRON_TIKTOKEN_MAX_VOCAB, n_entries + MEGATRON_TIKTOKEN_NUM_SPECIAL)


def encoder_spec(
    path: Optional[str],
    library: str = "auto",
    vocab_size: Optional[int] = None,
    eod_token: Optional[str] = None,
) -> EncoderSpec:
    """Describe a tokenizer without importing megatron (fast; used by the preprocessor)."""
    if library not in LIBRARIES:
        raise TokenizerError(f"unknown tokenizer library {library!r}; choose one of {LIBRARIES}")
    if library == "null":
        if vocab_size is None or int(vocab_size) <= 0:
            raise TokenizerError("library 'null' needs a positive vocab_size")
        v = int(vocab_size)
        return EncoderSpec("null", None, eod=v, vocab_size=v + 1)
    path = _check_path(path, library)
    if library == "auto":
        library = detect_library(path)
    path = os.path.abspath(path)

    if library == "huggingface":
        from tokenizers import Tokenizer

        jf = _hf_json_file(path)
        try:
            tok = Tokenizer.from_file(jf)
        except Exception as e:  # tokenizers raises its own Exception type
            raise TokenizerError(f"cannot load huggingface tokenizer {jf}: {e}") from None
        _LOADED[_cache_key("hf", jf)] = tok
        vocab = tok.get_vocab(with_added_tokens=True)
        eod_tok = _hf_pick_eod(jf, vocab, eod_token)
        return EncoderSpec("huggingface", path, eod=vocab[eod_tok],
                           vocab_size=tok.get_vocab_size(with_added_tokens=True), eod_token=eod_tok)

    if library == "sentencepiece":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        try:
            sp.Load(path)
        except Exception as e:
            raise TokenizerError(f"cannot load SentencePiece model {path}: {e}") from None
        if sp.eos_id() < 0:
            raise TokenizerError(f"SentencePiece model {path} has no eos piece (train with eos_id>=0)")
        removed = sp.encode_as_pieces("x  y") == sp.encode_as_pieces("x y")
        return EncoderSpec("sentencepiece", path, eod=sp.eos_id(), vocab_size=sp.get_piece_size(),
                           eod_token=sp.id_to_piece(sp.eos_id()),
                           extra={"removed_extra_spaces": removed})

    if library == "tiktoken":
        if path.endswith(".json"):
            vocab = _read_tekken_vocab(path)
            vs = _tekken_vocab_size(len(vocab), vocab_size)
            eod_tok = eod_token or "</s>"
            if eod_tok not in MEGATRON_TIKTOKEN_SPECIALS:
                raise TokenizerError(f"eod_token {eod_tok!r} is not a special token of {path}")
            return EncoderSpec("tiktoken", path, eod=MEGATRON_TIKTOKEN_SPECIALS.index(eod_tok),
                               vocab_size=vs, eod_token=eod_tok, extra={"layout": "tekken"})
        ranks = _read_tiktoken_ranks(path)
        specials = _tiktoken_specials(len(ranks))
        eod_tok = eod_token or "<|endoftext|>"
        if eod_tok not in specials:
            raise TokenizerError(f"eod_token {eod_tok!r} is not a special token of {path}")
        return EncoderSpec("tiktoken", path, eod=specials[eod_tok],
                           vocab_size=len(ranks) + len(specials), eod_token=eod_tok,
                           extra={"layout": "ranks"})

    raise TokenizerError(f"unknown tokenizer library {library!r}; choose one of {LIBRARIES}")


# --------------------------------------------------------------------------------------------
# Fast batch encoder (used by preprocess workers; imports only the tokenizer library)
# --------------------------------------------------------------------------------------------


def build_tiktoken_encoding(spec: EncoderSpec):
    """The ``tiktoken.Encoding`` for a ``.tiktoken`` ranks file or a tekken JSON file."""
    import tiktoken

    if spec.extra.get("layout") == "tekken":
        vocab = _read_tekken_vocab(spec.path)
        n_special = MEGATRON_TIKTOKEN_NUM_SPECIAL
        inner = spec.vocab_size - n_special
        ranks = {}
        for i, x in enumerate(vocab[:inner]):
            ranks[base64.b64decode(x["token_bytes"])] = x["rank"] + n_special
        fillers = [f"<SPECIAL_{i}>" for i in range(len(MEGATRON_TIKTOKEN_SPECIALS), n_special)]
        specials = {t: i for i, t in enumerate(MEGATRON_TIKTOKEN_SPECIALS + fillers)}
        name = os.path.basename(os.path.dirname(spec.path))
        return tiktoken.Encoding(name=name, pat_str=MEGATRON_TIKTOKEN_PATTERN_V2,
                                 mergeable_ranks=ranks, special_tokens=specials)
    ranks = _read_tiktoken_ranks(spec.path)
    return tiktoken.Encoding(
        name=os.path.basename(spec.path), pat_str=QWEN2_PATTERN, mergeable_ranks=ranks,
        special_tokens=_tiktoken_specials(len(ranks)),
    )


_EXTRA_SPACE = "☯"


class FastEncoder:
    """Batch encoder that yields exactly ``load_tokenizer(...).tokenize`` ids.

    ``threads``: 1 inside worker processes (parallelism comes from the processes); ``None`` lets
    the library use its own thread pool (single-process mode).
    """

    def __init__(self, spec: EncoderSpec, threads: Optional[int] = 1):
        self.spec = spec
        self.threads = threads
        lib = spec.library
        if lib == "huggingface":
            if threads == 1:
                os.environ["TOKENIZERS_PARALLELISM"] = "false"
            from tokenizers import Tokenizer

            jf = _hf_json_file(spec.path)
            self._tok = _LOADED.get(_cache_key("hf", jf))
            if self._tok is None:
                self._tok = Tokenizer.from_file(jf)
            self._fast = hasattr(self._tok, "encode_batch_fast")
        elif lib == "sentencepiece":
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor()
            self._sp.Load(spec.path)
        elif lib == "tiktoken":
            key = _cache_key("tiktoken", spec.path)
            self._enc = _LOADED.get(key)
            if self._enc is None:
                self._enc = _LOADED[key] = build_tiktoken_encoding(spec)
        elif lib != "null":
            raise TokenizerError(f"unknown tokenizer library {lib!r}")

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        lib = self.spec.library
        if not texts:
            return []
        if lib == "huggingface":
            # encode_batch_fast (tokenizers >= 0.20) skips offset tracking; the ids are the same
            enc = self._tok.encode_batch_fast if self._fast else self._tok.encode_batch
            return [e.ids for e in enc(texts, add_special_tokens=False)]
        if lib == "sentencepiece":
            if self.spec.extra.get("removed_extra_spaces"):
                return [self._sp_extra_space(t) for t in texts]
            nt = self.threads if self.threads is not None else -1
            return self._sp.encode(texts, num_threads=nt)
        if lib == "tiktoken":
            if self.threads == 1:
                return [self._enc.encode(t, allowed_special="all") for t in texts]
            return self._enc.encode_batch(texts, allowed_special="all")
        return [self._null(t) for t in texts]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def _sp_extra_space(self, text: str) -> list[int]:
        # megatron SentencePieceTokenizer._text_to_ids for models that drop repeated spaces
        import re

        text = re.sub(r"(?<= )(?= )|^ | $", f" {_EXTRA_SPACE} ", text).rstrip()
        ids: list[int] = []
        for part in text.split(_EXTRA_SPACE):
            if not part:
                continue
            ids.extend(self._sp.encode_as_ids(part + _EXTRA_SPACE)[:-1])
        return ids

    def _null(self, text: str) -> list[int]:
        ids = [int(x) for x in text.split(" ")]
        v = self.spec.vocab_size
        for i in ids:
            if not 0 <= i < v:
                raise ValueError(f"null-tokenizer id {i} outside [0, {v})")
        return ids
