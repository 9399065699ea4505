"""tools/merge_checkpoints.py (weighted checkpoint merging, "model souping") on tiny trained checkpoints.

N copies of one checkpoint merge to it bit for bit; a 0.5/0.5 merge is (a+b)/2 for every tensor and a
0.2/0.3/0.5 merge the float64 weighted sum rounded once; the output loads where a trained checkpoint
does (eval, a decay stage, GRPO, the HF export; a resume from it is refused: it holds no optimizer
state); mismatched tokenizers, architectures, tensors or weights exit 2 naming the difference, and a
NaN in an input fails the merge without leaving an output. (TP=2 inputs: tests/distributed.)
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
import yaml

from megatron_octo.checkpoint.save_load import CheckpointError, load, read_trainer_state, resolve_checkpoint
from megatron_octo.cli import convert_to_hf, merge_checkpoints as mc
from megatron_octo.eval import runner as eval_runner
from megatron_octo.rl import __main__ as rl_cli
from tests.helpers import ROOT, checkpoint_tensors, run, run_train, tiny_rl_overrides
from tests.megatron_state import run_cli_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MODEL = ("embedding.", "decoder.", "output_layer.")
TOKENIZER = ROOT / "data/tokenizer/octo_sp8k.model"


def merge(*args, expect_rc=0, process=False):
    """tools/merge_checkpoints.py: in a process of its own (``process``: the fixture's merge, the CLI end to end)
    or its main in this interpreter (run_cli_in_process)."""
    if process:
        res = run([sys.executable, "tools/merge_checkpoints.py", *map(str, args)], timeout=300)
    else:
        res = run_cli_in_process(mc.main, list(args))
    assert res.returncode == expect_rc, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def model_tensors(path) -> dict:
    return checkpoint_tensors(resolve_checkpoint(str(path)), MODEL)


def text_overrides(data) -> list[str]:
    """conftest's tiny_text_checkpoint run: the tiny model on the built-in corpus, 512 tokens a step."""
    return ["model.preset=tiny", "model.seq_length=64", f"data.mixture={data}/mixture.yaml", "train.global_batch_size=8",
            "train.micro_batch_size=4", "train.eval_interval=0", "schedule.warmup_tokens=0"]


@pytest.fixture(scope="module")
def ckpts(tiny_text_checkpoint, tmp_path_factory):
    """Three checkpoints of one architecture and tokenizer: iterations 1 and 2 of a run, and conftest's
    iteration-4 checkpoint; plus the 0.5/0.5 merge of the first two."""
    tmp = tmp_path_factory.mktemp("merge")
    data = tiny_text_checkpoint / "data"
    run_train(str(ROOT / "recipes/tiny/stable.yaml"), [*text_overrides(data), "train.tokens=1024",
                                                      f"checkpoint.save={tmp}/run", "checkpoint.save_interval=1"],
              in_process=True)
    a, b, c = tmp / "run/iter_0000001", tmp / "run/iter_0000002", tiny_text_checkpoint / "ckpt"
    merge(a, b, "--weights", "0.5,0.5", "--out", tmp / "half", process=True)
    return {"tmp": tmp, "data": data, "a": a, "b": b, "c": c, "half": tmp / "half"}


def _assert_all_tensors(out, expected: dict) -> None:
    got = model_tensors(out)
    assert sorted(got) == sorted(expected) and len(got) == 9  # embedding, output, final norm, 6 stacked layer keys
    for key, want in expected.items():
        assert got[key].dtype == want.dtype and torch.equal(got[key], want), key


def test_copies_of_one_checkpoint_merge_to_it_bitwise(ckpts):
    c = ckpts["c"]
    out = ckpts["tmp"] / "copies"
    # Uniform weights (1/3 each: inexact in binary) and the three ways to name a checkpoint.
    res = merge(c, resolve_checkpoint(str(c)), str(c) + "/", "--out", out)
    assert "merged 3 checkpoint(s)" in res.stdout and "TP=1 PP=1" in res.stdout
    _assert_all_tensors(out, model_tensors(c))
    it = resolve_checkpoint(str(out))
    assert it.endswith("iter_0000004") and (out / "latest_checkpointed_iteration.txt").read_text() == "4"
    state = read_trainer_state(it)
    assert state.optimizer_state is False and state.iteration == 4 and state.tokens == read_trainer_state(
        resolve_checkpoint(str(c))).tokens
    assert [i["weight"] for i in state.merge["inputs"]] == [1 / 3] * 3 and "fresh optimizer" in state.merge["optimizer_state"]
    cfg = yaml.safe_load(open(f"{it}/config.yaml"))
    assert cfg["parallel"]["tp"] == 1 and cfg["parallel"]["pp"] == 1
    assert cfg["tokenizer"]["path"] == str(TOKENIZER)  # made absolute: the output loads from any directory
    assert not (ckpts["tmp"] / "copies.partial").exists()


def test_half_half_merge_is_the_hand_computed_average(ckpts):
    a, b = model_tensors(ckpts["a"]), model_tensors(ckpts["b"])
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two different checkpoints
    # (a + b) / 2 in float32 is the exactly rounded mean, which the float64 accumulation also gives.
    _assert_all_tensors(ckpts["half"], {k: (a[k] + b[k]) / 2 for k in a})
    state = read_trainer_state(resolve_checkpoint(str(ckpts["half"])))
    assert state.iteration == 2 and [i["iteration"] for i in state.merge["inputs"]] == [1, 2]


def test_non_uniform_weights(ckpts):
    out = ckpts["tmp"] / "w235"
    merge(ckpts["a"], ckpts["b"], ckpts["c"], "--weights", "0.2,0.3,0.5", "--out", out)
    a, b, c = (model_tensors(ckpts[n]) for n in "abc")
    expected = {k: (a[k].double() * 0.2 + b[k].double() * 0.3 + c[k].double() * 0.5).float() for k in a}
    _assert_all_tensors(out, expected)
    for k in a:  # and, to float32 rounding, what the weights say
        assert torch.allclose(expected[k], 0.2 * a[k] + 0.3 * b[k] + 0.5 * c[k], rtol=1e-6, atol=1e-7), k
    # iteration, tokens and schedule from the input with the most tokens (c, iteration 4)
    state, c_state = (read_trainer_state(resolve_checkpoint(str(p))) for p in (out, ckpts["c"]))
    assert (state.iteration, state.tokens, state.schedule) == (4, c_state.tokens, c_state.schedule)


# ----- the consumers ----------------------------------------------------------------------------

def test_merged_checkpoint_starts_a_decay_stage_with_a_fresh_optimizer(ckpts):
    half, tmp = ckpts["half"], ckpts["tmp"]
    res = run_train(str(ROOT / "recipes/tiny/stable.yaml"), [
        *text_overrides(ckpts["data"]), "schedule.stage=decay", "schedule.min_lr=1e-5", "train.tokens=512",
        f"checkpoint.init_from={half}", f"checkpoint.save={tmp}/decay"], in_process=True)
    assert f"initialised from {half}/iter_0000002" in res.stdout
    assert "holds model weights only (no optimizer state): the optimizer starts fresh" in res.stdout
    st = read_trainer_state(str(tmp / "decay/iter_0000003"))
    assert st.stage == "decay" and st.optimizer_state is True
    # A resume (checkpoint.save/load pointing at it) needs an optimizer state: refused, naming the checkpoint.
    with pytest.raises(CheckpointError, match="holds model weights only, no optimizer state"):
        load(resolve_checkpoint(str(half)), None, object(), with_optimizer=True, layout={"tp": 1, "pp": 1, "dp": 1})


def test_merged_checkpoint_runs_grpo(ckpts):
    half, tmp = ckpts["half"], ckpts["tmp"]
    res = run_cli_in_process(rl_cli.main, ["--config", ROOT / "recipes/tiny/rl_grpo.yaml", *tiny_rl_overrides(half),
                                           "rl.steps=1", f"checkpoint.save={tmp}/rl"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert f"initialised from {half}/iter_0000002" in res.stdout and "rl step     1/1" in res.stdout


def test_merged_checkpoint_evaluates_and_exports(ckpts):
    half, tmp = ckpts["half"], ckpts["tmp"]
    res = run_cli_in_process(eval_runner.main, ["--checkpoint", half, "--benchmarks", "gsm8k", "--limit", "1",
                                                "--max-new-tokens", "4", "--out", tmp / "eval"])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert json.loads((tmp / "eval/summary.json").read_text())["iteration"] == 2
    # tools/convert_to_hf.py (in process: it starts no process group)
    assert convert_to_hf.main([str(half), "--out", str(tmp / "hf")]) == 0
    assert json.loads((tmp / "hf/config.json").read_text())["num_hidden_layers"] == 4
    assert (tmp / "hf/model.safetensors").is_file() and (tmp / "hf/tokenizer.model").is_file()


# ----- refusals -----------------------------------------------------------------------------------

def _main(capsys, *args) -> str:
    """merge_checkpoints.main in this process (every refusal below comes before any process group)."""
    assert mc.main([*map(str, args)]) == 2
    return capsys.readouterr().err


def _edited_copy(src, dst, **changes):
    """A copy of an iteration directory with its config.yaml changed (config.yaml is outside the manifest)."""
    shutil.copytree(src, dst)
    cfg = yaml.safe_load(open(dst / "config.yaml"))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


@pytest.mark.timeout(300)
def test_bad_weights_and_paths_are_refused(ckpts, capsys, tmp_path):
    a, b = ckpts["a"], ckpts["b"]
    out = tmp_path / "o"
    for weights, said in (("0.5", "--weights: 1 weight(s) (0.5) for 2 checkpoint(s)"),
                          ("0.5,x", "--weights: 'x' is not a number"),
                          ("0.5,nan", "--weights: nan is not finite"),
                          ("1.5,-0.5", "--weights: -0.5 is negative"),
                          ("0.5,0.4", "--weights: they sum to 0.9, not 1")):
        assert said in _main(capsys, a, b, "--weights", weights, "--out", out)
    assert "/nope/ckpt: checkpoint directory not found" in _main(capsys, a, "/nope/ckpt", "--out", out)
    assert f"{tmp_path}: not a checkpoint" in _main(capsys, a, tmp_path, "--out", out)
    out.mkdir()
    (out / "keep").write_text("x")
    assert "already exists and is not empty (use --force" in _main(capsys, a, b, "--out", out)
    assert "is (or contains) the input" in _main(capsys, a, b, "--out", a.parent, "--force")
    assert f"is inside the input checkpoint {a}" in _main(capsys, a, b, "--out", a / "merged")
    assert (out / "keep").exists() and not (tmp_path / "o.partial").exists()


@pytest.mark.timeout(300)
def test_mismatched_architecture_and_tokenizer_are_refused(ckpts, capsys, tmp_path):
    a = ckpts["a"]
    wide = _edited_copy(a, tmp_path / "wide", model__num_layers=2)
    err = _main(capsys, a, wide, "--out", tmp_path / "o")
    assert f"architecture differs: model.num_layers is 4 (preset tiny) in {a}, 2 (preset tiny) in {wide}" in err

    import sentencepiece as spm

    lines = [f"{i} plus {i + 7} is {2 * i + 7}; the answer is {i * 3}." for i in range(400)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(tmp_path / "other"), vocab_size=64,
                                   hard_vocab_limit=False, minloglevel=2)
    n = spm.SentencePieceProcessor(model_file=str(tmp_path / "other.model")).get_piece_size()
    other = _edited_copy(a, tmp_path / "othertok", tokenizer__path=str(tmp_path / "other.model"))
    err = _main(capsys, a, other, "--out", tmp_path / "o")
    assert (f"tokenizer differs: vocab_size 8192 (tokenizer {TOKENIZER}) in {a}, {n} (tokenizer "
            f"{tmp_path / 'other.model'}) in {other}") in err

    # The same tokenizer file at another path is the same tokenizer (compared by content).
    shutil.copy(TOKENIZER, tmp_path / "copy.model")
    moved = _edited_copy(a, tmp_path / "moved", tokenizer__path=str(tmp_path / "copy.model"))
    mc.check_compatible([mc.read_source(str(a)), mc.read_source(str(moved))])
    # A tokenizer that cannot be found cannot be compared.
    gone = _edited_copy(a, tmp_path / "gone", tokenizer__path="/nope/tok.model")
    assert "its tokenizer /nope/tok.model (config.yaml tokenizer.path) is not found" in _main(
        capsys, a, gone, "--out", tmp_path / "o")


def test_mismatched_tensors_are_refused():
    f32 = torch.float32
    base = {"embedding.word_embeddings.weight": ((512, 64), f32), "decoder.final_layernorm.weight": ((64,), f32)}
    x = mc.Source(path="/x", ckpt_dir="/x", tensors=base)

    def refused(tensors) -> str:
        with pytest.raises(mc.MergeError) as e:
            mc.check_tensors(x, mc.Source(path="/y", ckpt_dir="/y", tensors=tensors))
        return str(e.value)

    assert refused({"embedding.word_embeddings.weight": base["embedding.word_embeddings.weight"]}) == (
        "tensor set differs: 'decoder.final_layernorm.weight' is in /x but not in /y")
    assert refused({**base, "output_layer.weight": ((512, 64), f32)}) == (
        "tensor set differs: 'output_layer.weight' is in /y but not in /x")
    assert refused({**base, "decoder.final_layernorm.weight": ((63,), f32)}) == (
        "shape of tensor 'decoder.final_layernorm.weight' differs: [64] in /x, [63] in /y")
    assert refused({**base, "embedding.word_embeddings.weight": ((512, 32), f32)}).startswith(
        "shape of tensor 'embedding.word_embeddings.weight' differs")
    assert refused({**base, "decoder.final_layernorm.weight": ((64,), torch.bfloat16)}) == (
        "dtype of tensor 'decoder.final_layernorm.weight' differs: torch.float32 in /x, torch.bfloat16 in /y")
    # The vocabulary's padding rows may differ (a larger TP pads further): the rows beyond TP=1's are dropped.
    mc.check_tensors(x, mc.Source(path="/y", ckpt_dir="/y",
                                  tensors={**base, "embedding.word_embeddings.weight": ((1024, 64), f32)}))


def test_a_nan_in_an_input_fails_the_merge_and_leaves_no_output(ckpts, tmp_path):
    res = run([sys.executable, str(ROOT / "tests/scripts/resave_checkpoint.py"), str(ckpts["a"]), str(tmp_path / "nan"),
               "--nan"], timeout=300)
    assert res.returncode == 0 and "RESULT" in res.stdout, res.stdout[-2000:] + res.stderr[-3000:]
    res = merge(ckpts["a"], tmp_path / "nan", "--out", tmp_path / "o", expect_rc=2)
    assert (f"error: {tmp_path}/nan/iter_0000001: tensor 'embedding.word_embeddings.weight' has non-finite values"
            in res.stderr)
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
