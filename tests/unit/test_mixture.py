"""Mixture YAML (megatron_octo/data/mixture.py) and tools/data_stats.py."""

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

from megatron_octo.cli import data_stats
from megatron_octo.data.mixture import (
    KNOWN_STAGES, MixtureError, Source, load_mixture, load_mixture_file, normalized_weights,
    to_megatron_blend,
)
from tokenization.indexed import index_bytes

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def make_dataset(prefix: Path, lengths) -> Path:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.asarray(lengths, dtype=np.int32)
    Path(str(prefix) + ".bin").write_bytes(np.zeros(int(lengths.sum()), np.uint16).tobytes())
    Path(str(prefix) + ".idx").write_bytes(index_bytes(np.dtype(np.uint16), lengths))
    return prefix


def write_yaml(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


GOOD = """\
stages:
  stable:
    - {name: web, prefix: tok/math_web, weight: 1.0}
  decay_long:
    - {name: web, prefix: tok/math_web, weight: 0.7}
    - {name: qa_long, prefix: tok/qa_long, weight: 0.3}
  decay_qa20:
    - {name: web, prefix: /abs/web, weight: 8}
    - {name: qa, prefix: $OCTO_TEST_DATA/qa, weight: 2}
"""


@pytest.fixture
def mix(tmp_path, monkeypatch):
    make_dataset(tmp_path / "tok" / "math_web", [10, 20, 30])
    make_dataset(tmp_path / "tok" / "qa_long", [5, 5])
    monkeypatch.setenv("OCTO_TEST_DATA", "/env/data")
    return write_yaml(tmp_path / "mix.yaml", GOOD)


def test_load_stage_resolves_relative_prefixes_against_file(mix, tmp_path):
    sources = load_mixture(mix, "decay_long")
    assert sources == [Source("web", str(tmp_path / "tok" / "math_web"), 0.7),
                       Source("qa_long", str(tmp_path / "tok" / "qa_long"), 0.3)]
    assert to_megatron_blend(sources) == ([str(tmp_path / "tok" / "math_web"),
                                           str(tmp_path / "tok" / "qa_long")], [0.7, 0.3])


def test_relative_resolution_is_independent_of_cwd(mix, tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    assert load_mixture(mix, "stable")[0].prefix == str(tmp_path / "tok" / "math_web")


def test_absolute_and_env_prefixes_and_custom_stage(mix):
    sources = load_mixture(mix, "decay_qa20", check_files=False)
    assert [s.prefix for s in sources] == ["/abs/web", "/env/data/qa"]
    assert normalized_weights(sources) == [0.8, 0.2]
    assert set(KNOWN_STAGES) == {"stable", "decay_long", "decay_short", "decay_hybrid"}


def test_unknown_stage_lists_available(mix):
    with pytest.raises(MixtureError, match=r"mix\.yaml: stage 'decay_short': unknown stage; the file "
                                           r"defines: stable, decay_long, decay_qa20"):
        load_mixture(mix, "decay_short")


def test_missing_files_named(mix, tmp_path):
    with pytest.raises(MixtureError, match=r"mix\.yaml: stages\.decay_qa20 \(web\)\.prefix: missing "
                                           r"/abs/web\.bin"):
        load_mixture(mix, "decay_qa20")
    os.remove(tmp_path / "tok" / "qa_long.idx")
    with pytest.raises(MixtureError, match=r"stages\.decay_long \(qa_long\)\.prefix: missing .*qa_long\.idx"):
        load_mixture(mix, "decay_long")
    load_mixture(mix, "decay_long", check_files=False)
    load_mixture(mix, "stable")  # other stages unaffected


@pytest.mark.parametrize("body,match", [
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: 0}\n",
     r"stages\.stable\[0\] \(w\)\.weight: must be positive and finite, got 0\.0"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: -1}\n", r"\.weight: must be positive"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: .inf}\n", r"\.weight: must be positive and finite"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: heavy}\n", r"\.weight: must be a number, got 'heavy'"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: true}\n", r"\.weight: must be a number"),
    ("stages:\n  stable: []\n", r"stages\.stable: empty stage"),
    ("stages:\n  stable:\n", r"stages\.stable: empty stage"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: 1, epochs: 2}\n",
     r"stages\.stable\[0\]: unknown key\(s\) \['epochs'\]; allowed: \['name', 'prefix', 'weight'\]"),
    ("stages:\n  stable:\n    - {name: w, weight: 1}\n", r"stages\.stable\[0\]: missing key\(s\) \['prefix'\]"),
    ("stages:\n  stable:\n    - {name: w, prefix: p.bin, weight: 1}\n", r"is a file name; give the prefix without"),
    ("stages:\n  stable:\n    - {name: '', prefix: p, weight: 1}\n", r"stages\.stable\[0\]\.name: must be a non-empty string"),
    ("stages:\n  stable:\n    - {name: w, prefix: 3, weight: 1}\n", r"\(w\)\.prefix: must be a non-empty string"),
    ("stages:\n  stable:\n    - web\n", r"stages\.stable\[0\]: expected a mapping"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: 1}\n    - {name: w, prefix: q, weight: 1}\n",
     r"stages\.stable: source name 'w' appears twice"),
    ("stages:\n  stable:\n    - {name: w, prefix: p, weight: 1}\nseed: 3\n",
     r"top level: unknown key\(s\) \['seed'\]; allowed: \['stages'\]"),
    ("stable:\n  - {name: w, prefix: p, weight: 1}\n", r"top level: unknown key\(s\) \['stable'\]"),
    ("stages: {}\n", r"stages: expected a non-empty mapping"),
    ("- 1\n", r"top level: expected a mapping"),
    ("stages: [\n", r"not valid YAML"),
    ("stages:\n  'bad stage':\n    - {name: w, prefix: p, weight: 1}\n", r"stage names must be identifiers"),
])
def test_bad_files_name_file_key_and_problem(tmp_path, body, match):
    path = write_yaml(tmp_path / "bad.yaml", body)
    with pytest.raises(MixtureError, match=r"bad\.yaml: .*" + match):
        load_mixture(path, "stable", check_files=False)
    assert issubclass(MixtureError, ValueError)


def test_missing_mixture_file(tmp_path):
    with pytest.raises(MixtureError, match=r"nope\.yaml: mixture file not found"):
        load_mixture(str(tmp_path / "nope.yaml"), "stable")


def test_load_all_stages(mix):
    stages = load_mixture_file(mix, check_files=False)
    assert list(stages) == ["stable", "decay_long", "decay_qa20"]


def test_blend_needs_sources():
    with pytest.raises(MixtureError, match="no sources"):
        to_megatron_blend([])


# --- tools/data_stats.py ------------------------------------------------------------------------

def _data_stats():
    return data_stats


def test_parse_tokens():
    ds = _data_stats()
    assert ds.parse_tokens("20B") == 20e9
    assert ds.parse_tokens("1.5t") == 1.5e12
    assert ds.parse_tokens("500M") == 5e8
    assert ds.parse_tokens("2e10") == 2e10
    assert ds.parse_tokens("4096") == 4096
    for bad in ("abc", "20X", "-3B", "0"):
        with pytest.raises(Exception, match="token count"):
            ds.parse_tokens(bad)


def test_epochs_for_a_20b_decay_with_30pct_qa(tmp_path, capsys):
    ds = _data_stats()
    make_dataset(tmp_path / "web", [1000] * 10_000)       # 10M tokens
    make_dataset(tmp_path / "qa", [500] * 2_000)          # 1M tokens
    path = write_yaml(tmp_path / "m.yaml", """\
        stages:
          decay_long:
            - {name: web, prefix: web, weight: 0.7}
            - {name: qa, prefix: qa, weight: 0.3}
    """)
    rep = ds.stage_report("decay_long", load_mixture(path, "decay_long"), 20e9, max_epochs=4)
    web, qa = rep["sources"]
    assert (web["tokens"], web["documents"]) == (10_000_000, 10_000)
    assert web["drawn_tokens"] == pytest.approx(14e9) and web["epochs"] == pytest.approx(1400)
    assert qa["drawn_tokens"] == pytest.approx(6e9) and qa["epochs"] == pytest.approx(6000)
    assert len(rep["warnings"]) == 2 and "decay_long/qa: 6.00B tokens drawn from 1.00M" in rep["warnings"][1]

    assert ds.main(["--mixture", path, "--tokens", "20M"]) == 0
    out = capsys.readouterr().out
    assert "stage decay_long: budget 20.00M tokens" in out
    assert "WARNING decay_long/qa: 6.00M tokens drawn from 1.00M available = 6.0 epochs" in out
    assert "WARNING decay_long/web" not in out  # 1.4 epochs
    assert ds.main(["--mixture", path, "--budget", "decay_long=20M", "--fail-on-warning"]) == 1
    assert ds.main(["--mixture", path, "--tokens", "20M", "--max-epochs", "10",
                    "--fail-on-warning"]) == 0
    capsys.readouterr()
    assert ds.main(["--mixture", path, "--stage", "stable"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_default_budgets_and_prefix_mode(tmp_path, capsys):
    ds = _data_stats()
    make_dataset(tmp_path / "web", [100, 200])
    path = write_yaml(tmp_path / "m.yaml", "stages:\n  stable:\n    - {name: web, prefix: web, weight: 1}\n")
    assert ds.main(["--mixture", path, "--json"]) == 0
    import json

    rep = json.loads(capsys.readouterr().out)
    assert rep[0]["budget"] == 200e9 and rep[0]["sources"][0]["tokens"] == 300
    assert ds.main(["--prefix", str(tmp_path / "web")]) == 0
    assert "2 documents, 300 tokens" in capsys.readouterr().out
