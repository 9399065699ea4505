"""Tokenizer loading (tokenization/tokenizer.py): every library, EOD choice, errors, and the
fast batch encoder used by the preprocessor giving exactly the megatron wrappers' ids."""

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tokenization.tokenizer import (
    EncoderSpec, FastEncoder, TokenizerError, detect_library, encoder_spec,
)
from tokenization.megatron_wrappers import load_tokenizer

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_SPM = ROOT / "data" / "tokenizer" / "octo_sp8k.model"
SHARED_TOK = ROOT.parent / "shared" / "data" / "tokenizer"
QWEN_JSON = SHARED_TOK / "qwen2.5" / "tokenizer.json"
QWEN_TIKTOKEN = SHARED_TOK / "qwen2.5" / "qwen.tiktoken"
MISTRAL_SPM = SHARED_TOK / "mistral_v1" / "tokenizer.model"

TEXTS = [
    "Hello, world!",
    "Let $f(x) = x^2 + 3x - 4$. Then $f(2) = 6$.\n\n\\boxed{6}",
    "two  spaces,   three, tab\there, trailing  ",
    "  leading spaces and\r\nCRLF",
    "ünïcødé, 数学, Ελληνικά, 🙂 emoji",
    "special token inside <|endoftext|> the text",
    "12345678901234567890 digits",
    "x",
]


def _train_hf(dir_: Path, specials=("<|endoftext|>",)) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(TEXTS * 20 + ["the theory of numbers and the integers"] * 50, trainer)
    dir_.mkdir(parents=True, exist_ok=True)
    tok.save(str(dir_ / "tokenizer.json"))
    return dir_ / "tokenizer.json"


@pytest.fixture(scope="module")
def hf_json(tmp_path_factory):
    return _train_hf(tmp_path_factory.mktemp("hf") / "tok")


def _tekken(path: Path) -> Path:
    vocab = [{"rank": i, "token_bytes": base64.b64encode(bytes([i])).decode(),
              "token_str": bytes([i]).decode("latin-1")} for i in range(256)]
    for tok in [b"th", b"he", b"the", b" t", b"in", b"ing", b" the", b"er"]:
        vocab.append({"rank": len(vocab), "token_bytes": base64.b64encode(tok).decode(),
                      "token_str": tok.decode()})
    path.write_text(json.dumps(vocab))
    return path


def _parity(path, library="auto", **kw):
    spec = encoder_spec(str(path) if path else None, library, **kw)
    tok = load_tokenizer(str(path) if path else None, library, **kw)
    fast = FastEncoder(spec, threads=1).encode_batch(TEXTS)
    threaded = FastEncoder(spec, threads=None).encode_batch(TEXTS)
    wrapper = [list(tok.tokenize(t)) for t in TEXTS]
    assert fast == wrapper
    assert threaded == wrapper
    assert spec.eod == tok.eod
    assert spec.vocab_size == tok.vocab_size
    return spec, tok


# --- detection --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,lib", [("tokenizer.json", "huggingface"), ("x.model", "sentencepiece"),
                                      ("qwen.tiktoken", "tiktoken")])
def test_detect_library_from_file_name(tmp_path, name, lib):
    (tmp_path / name).write_text("x")
    assert detect_library(str(tmp_path / name)) == lib


def test_detect_library_directory(tmp_path, hf_json):
    assert detect_library(str(hf_json.parent)) == "huggingface"
    with pytest.raises(TokenizerError, match=f"directory '{tmp_path}'.*no tokenizer.json"):
        detect_library(str(tmp_path))


def test_unknown_extension_names_the_path(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_text("a")
    with pytest.raises(TokenizerError, match=r"cannot infer the tokenizer library of '.*vocab\.txt'"):
        load_tokenizer(str(p))


def test_missing_file_is_file_not_found_naming_path(tmp_path):
    p = tmp_path / "nope.model"
    with pytest.raises(FileNotFoundError, match=r"tokenizer file not found: .*nope\.model"):
        load_tokenizer(str(p))


def test_unknown_library():
    with pytest.raises(TokenizerError, match="unknown tokenizer library 'bpe'"):
        load_tokenizer("x", "bpe")


def test_path_required(tmp_path):
    with pytest.raises(TokenizerError, match="library 'sentencepiece' needs a tokenizer path"):
        load_tokenizer(None, "sentencepiece")


def test_corrupt_sentencepiece_model(tmp_path):
    p = tmp_path / "bad.model"
    p.write_bytes(b"not a protobuf at all")
    with pytest.raises(TokenizerError, match=r"cannot load SentencePiece model .*bad\.model"):
        load_tokenizer(str(p))


def test_bad_tiktoken_line_names_file_and_line(tmp_path):
    p = tmp_path / "x.tiktoken"
    p.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(TokenizerError, match=r"x\.tiktoken:2: not a tiktoken"):
        load_tokenizer(str(p))


def test_hf_json_must_be_named_tokenizer_json(tmp_path, hf_json):
    other = tmp_path / "qwen.json"
    other.write_bytes(hf_json.read_bytes())
    with pytest.raises(TokenizerError, match="must be named tokenizer.json"):
        encoder_spec(str(other), "huggingface")


# --- null ---------------------------------------------------------------------------------------

def test_null_tokenizer_needs_vocab_size():
    with pytest.raises(TokenizerError, match="'null' needs a positive vocab_size"):
        load_tokenizer(None, "null")


def test_null_tokenizer():
    spec, tok = _parity_null()
    assert tok.eod == 100 and tok.vocab_size == 101
    assert tok.tokenize("1 2 99") == [1, 2, 99]
    assert spec.dtype_name == "uint16"


def _parity_null():
    spec = encoder_spec(None, "null", vocab_size=100)
    tok = load_tokenizer(None, "null", vocab_size=100)
    texts = ["1 2 3", "0", "99 98"]
    assert FastEncoder(spec).encode_batch(texts) == [tok.tokenize(t) for t in texts]
    assert (spec.eod, spec.vocab_size) == (tok.eod, tok.vocab_size)
    return spec, tok


def test_null_fast_encoder_rejects_out_of_range_ids():
    enc = FastEncoder(encoder_spec(None, "null", vocab_size=10))
    with pytest.raises(ValueError, match="outside"):
        enc.encode("3 11")


# --- sentencepiece (bundled) ---------------------------------------------------------------------

def test_bundled_sentencepiece_round_trip_and_eod():
    spec, tok = _parity(BUNDLED_SPM)
    assert spec.library == "sentencepiece"
    assert tok.eod == 2 and spec.eod_token == "</s>"
    assert tok.vocab_size == 8192 and spec.dtype_name == "uint16"
    for t in TEXTS:
        assert tok.detokenize(tok.tokenize(t)) == t


@pytest.mark.skipif(not MISTRAL_SPM.exists(), reason="../shared tokenizer files not present")
def test_mistral_sentencepiece_parity():
    spec, tok = _parity(MISTRAL_SPM)
    assert spec.eod == 2 and spec.vocab_size == 32000


# --- huggingface ---------------------------------------------------------------------------------

def test_hf_tokenizer_json_file_and_directory(hf_json):
    spec, tok = _parity(hf_json)
    assert spec.eod_token == "<|endoftext|>"
    assert tok.eod == spec.eod == 0  # first special token of the trained vocab
    for t in TEXTS:
        if "<|endoftext|>" not in t:
            assert tok.detokenize(tok.tokenize(t)) == t
    spec_dir = encoder_spec(str(hf_json.parent))
    assert (spec_dir.eod, spec_dir.vocab_size) == (spec.eod, spec.vocab_size)


def test_hf_eod_from_tokenizer_config(tmp_path):
    jf = _train_hf(tmp_path / "t", specials=("<unk>", "<my_eos>"))
    with pytest.raises(TokenizerError, match=r"no end-of-document token in .*tokenizer\.json"):
        encoder_spec(str(jf))
    (tmp_path / "t" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<my_eos>"}))
    spec = encoder_spec(str(jf))
    assert spec.eod_token == "<my_eos>" and spec.eod == 1
    tok = load_tokenizer(str(jf))
    assert tok.eod == 1


def test_hf_eod_override(hf_json):
    with pytest.raises(TokenizerError, match="eod_token '<nope>' is not in the vocabulary"):
        encoder_spec(str(hf_json), eod_token="<nope>")


@pytest.mark.skipif(not QWEN_JSON.exists(), reason="../shared tokenizer files not present")
def test_qwen_tokenizer_json():
    spec, tok = _parity(QWEN_JSON)
    assert tok.eod == 151643 and tok.vocab_size == 151665 and spec.dtype_name == "int32"
    assert tok.tokenize("Hello, world!") == [9707, 11, 1879, 0]


# --- tiktoken ------------------------------------------------------------------------------------

@pytest.mark.skipif(not QWEN_TIKTOKEN.exists(), reason="../shared tokenizer files not present")
def test_qwen_tiktoken_matches_qwen_ids_and_round_trips():
    spec, tok = _parity(QWEN_TIKTOKEN)
    assert tok.eod == 151643 and tok.vocab_size == 151665
    assert tok.tokenize("<|im_start|>user\nWhat is 2+2?<|im_end|>") == [
        151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645]
    for t in TEXTS:
        assert tok.detokenize(tok.tokenize(t)) == t
    if QWEN_JSON.exists():
        hf = FastEncoder(encoder_spec(str(QWEN_JSON)))
        assert hf.encode_batch(TEXTS) == FastEncoder(spec).encode_batch(TEXTS)


def test_small_tiktoken_file_gets_endoftext(tmp_path):
    p = tmp_path / "small.tiktoken"
    lines = [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]
    lines.append(f"{base64.b64encode(b'ab').decode()} 256")
    p.write_text("\n".join(lines) + "\n")
    spec, tok = _parity(p)
    assert spec.eod == 257 and spec.vocab_size == 258 and spec.eod_token == "<|endoftext|>"
    assert tok.tokenize("abab") == [256, 256]
    assert tok.detokenize(tok.tokenize("ünï ab")) == "ünï ab"


def test_tekken_json_through_megatron_wrapper(tmp_path):
    p = _tekken(tmp_path / "tekken.json")
    spec, tok = _parity(p, "tiktoken")
    assert spec.eod == 2 and spec.vocab_size == 264 + 1000
    assert tok.tokenize("the") == [1000 + 258]  # b"the" has rank 258, after 1000 reserved ids


def test_tekken_json_wrong_layout(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"model": {}}))
    with pytest.raises(TokenizerError, match=r"t\.json: tiktoken JSON must be a list"):
        encoder_spec(str(p), "tiktoken")


def test_spec_is_picklable_and_describes_file():
    import pickle

    spec = encoder_spec(str(BUNDLED_SPM))
    assert pickle.loads(pickle.dumps(spec)) == spec
    d = spec.describe()
    assert d["library"] == "sentencepiece" and len(d["sha256"]) == 64
    assert isinstance(spec, EncoderSpec) and os.path.isabs(spec.path)


# --- ids of the model's padded vocabulary ---------------------------------------------------------

def _small_tiktoken(path: Path) -> Path:
    lines = [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["sentencepiece", "huggingface", "tiktoken", "tekken", "null"])
def test_detokenize_skips_ids_beyond_the_vocabulary(kind, hf_json, tmp_path):
    """An early or random checkpoint samples the output layer's padded rows (vocab rounded up to 128 x TP,
    or a larger checkpoint vocabulary): the text leaves them out, as Hugging Face's tokenizers do, instead
    of sentencepiece's IndexError / tiktoken's KeyError in the middle of an eval."""
    path, library = {"sentencepiece": (BUNDLED_SPM, "auto"), "huggingface": (hf_json, "auto"),
                     "tiktoken": (_small_tiktoken(tmp_path / "small.tiktoken"), "auto"),
                     "tekken": (_tekken(tmp_path / "tekken.json"), "tiktoken"), "null": (None, "null")}[kind]
    kw = {"vocab_size": 100} if kind == "null" else {}
    tok = load_tokenizer(str(path) if path else None, library, **kw)
    ids = tok.tokenize("1 2 3" if kind == "null" else "the theory of numbers")
    text = tok.detokenize(ids)
    assert text
    beyond = [tok.vocab_size, tok.vocab_size + 61, 10**6]
    mixed = [beyond[0]] + ids[:1] + beyond[1:] + ids[1:] + [beyond[0]]
    assert tok.detokenize(mixed) == text
    assert tok.detokenize(np.array(mixed)) == text  # arrays and tensors too, as megatron's accept them
