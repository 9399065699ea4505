import gzip
import hashlib
import json
import os
import re

import pytest

from megatron_octo.eval.benchmarks import BENCHMARKS, BenchmarkError, data_root, load_benchmark, parse_field_mapping
from megatron_octo.eval.prompts import PROTOCOLS

pytestmark = pytest.mark.timeout(60)

EXPECTED_ROWS = {"gsm8k": 1319, "math500": 500, "olympiadbench": 675, "amc23": 40, "aime24": 30, "minerva_math": 272, "college_math": 2818}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_bundled_sets_load(name):
    ex = load_benchmark(name)
    assert len(ex) == EXPECTED_ROWS[name]
    assert all(e.question.strip() and e.answer.strip() for e in ex)
    assert len({e.id for e in ex}) == len(ex)
    spec = BENCHMARKS[name]
    assert spec.base_protocol in PROTOCOLS and spec.rl_protocol in PROTOCOLS


def test_answer_post_processing():
    g = load_benchmark("gsm8k", limit=3)
    assert [e.answer for e in g] == ["18", "3", "70000"]  # "#### 18" split; "70,000"-style commas dropped
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", e.answer) for e in load_benchmark("gsm8k"))
    amc = load_benchmark("amc23")
    assert amc[0].answer == "27"  # float 27.0 -> "27"
    ob = load_benchmark("olympiadbench")
    assert sum(e.multiple for e in ob) == 94
    assert any(e.answer == "$(1,8,19), (2,7,13), (4,5,7)$" and e.multiple for e in ob)
    mm = load_benchmark("minerva_math", limit=1)
    assert mm[0].answer and "boxed" not in mm[0].answer  # last \boxed{} of the solution
    assert load_benchmark("math500", limit=1)[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_sources_md_checksums():
    # data/eval/SOURCES.md lists the sha256 of every bundled file; keep them in sync.
    root = data_root()
    text = open(os.path.join(root, "SOURCES.md"), encoding="utf-8").read()
    for name in EXPECTED_ROWS:
        gz = open(os.path.join(root, name, "test.jsonl.gz"), "rb").read()
        assert hashlib.sha256(gz).hexdigest() in text, name
        assert hashlib.sha256(gzip.decompress(gz)).hexdigest() in text, name


def _write(tmp_path, rows, name="set.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(p)


def test_custom_file_with_mapping(tmp_path):
    path = _write(tmp_path, [{"q": "1+1?", "sol": "so \\boxed{2}", "meta": {"k": 1}}, {"q": "2+2?", "sol": "\\boxed{4}", "meta": {"k": 2}}])
    ex = load_benchmark(path, fields="question=q,answer=sol,extract=boxed,id=meta.k")
    assert [(e.id, e.question, e.answer) for e in ex] == [("1", "1+1?", "2"), ("2", "2+2?", "4")]
    assert ex[0].source == f"{path}:1"
    gz = tmp_path / "set.jsonl.gz"
    gz.write_bytes(gzip.compress(open(path, "rb").read()))
    assert len(load_benchmark(str(gz), fields={"question": "q", "answer": "sol", "extract": "boxed"})) == 2
    # Override one key of a registered benchmark.
    assert load_benchmark("math500", fields="question=solution", limit=1)[0].question.startswith("We have that")


def test_missing_file_names_path(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(BenchmarkError, match=re.escape(missing)):
        load_benchmark(missing, fields="question=q,answer=a")
    with pytest.raises(BenchmarkError, match="unknown benchmark 'gsm9k'"):
        load_benchmark("gsm9k")
    with pytest.raises(BenchmarkError, match="data file not found: .*gsm8k"):
        load_benchmark("gsm8k", root=str(tmp_path))


def test_wrong_field_names_file_line_and_key(tmp_path):
    path = _write(tmp_path, [{"q": "1+1?", "a": "2"}, {"q": "2+2?", "answer": "4"}])
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}:2") + r": record has no key 'a'"):
        load_benchmark(path, fields="question=q,answer=a")
    with pytest.raises(BenchmarkError, match=re.escape(f"{path}:1") + r": record has no key 'problem'"):
        load_benchmark(path, fields="question=problem,answer=a")
    with pytest.raises(BenchmarkError, match="must name \\['answer'\\]"):
        load_benchmark(path, fields="question=q")
    with pytest.raises(BenchmarkError, match="unknown field mapping key"):
        parse_field_mapping("question=q,anwser=a")
    with pytest.raises(BenchmarkError, match="expected key=value"):
        parse_field_mapping("question")
    with pytest.raises(BenchmarkError, match="extract='xml'"):
        parse_field_mapping("question=q,answer=a,extract=xml")
    bad = _write(tmp_path, [{"q": "x", "a": "no marker"}], "g.jsonl")
    with pytest.raises(BenchmarkError, match=re.escape(f"{bad}:1") + ".*####"):
        load_benchmark(bad, fields="question=q,answer=a,extract=gsm8k")


def test_empty_and_malformed(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(BenchmarkError, match=re.escape(str(empty)) + ": no examples"):
        load_benchmark(str(empty), fields="question=q,answer=a")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"q": "1", "a": "2"}\n{"q": \n')
    with pytest.raises(BenchmarkError, match=re.escape(f"{broken}:2") + ": not valid JSON"):
        load_benchmark(str(broken), fields="question=q,answer=a")
