#!/usr/bin/env python
"""Render a run directory's report: ``report.md`` with one table per stage kind, and PNG plots.

    python tools/plot_run.py runs/demo               # writes runs/demo/report.md and runs/demo/plots/
    python tools/plot_run.py runs/demo --out /tmp/r  # writes them elsewhere

From Python (the demo calls this): ``render_report(run_dir, out_dir=None) -> path of report.md``.

A run directory holds any of::

    stable/  decay_long/  decay_short/  decay_hybrid/      pretraining stages (checkpoint.save dirs)
    rl_control/  rl_long/  rl_short/  rl_hybrid/          GRPO runs (control = from stable)
    eval/<model>/summary.json                             `python -m megatron_octo.eval --out ...`
    hf/                                                   exported Hugging Face model
    demo.json                                             facts from the orchestrator (below)

Other ``decay_*`` and ``rl_*`` directories are reported too. Stages that are missing are named in
the report and skipped; a directory holding none of these is not a run (exit status 2).

Scalars come from each stage's TensorBoard event files (``<stage>/tensorboard/``, the trainers'
default), read with TensorBoard's EventAccumulator: an event file left by a resumed run has its
orphaned steps dropped as TensorBoard itself does. A stage with no event files falls back to its
``metrics.jsonl``. Steps and token counts of a stage come from its latest checkpoint's
``trainer_state.json`` where there is one. Pretraining curves use the global token axis
(``lm loss vs tokens``), on which the decay branches continue from the stable stage's count.

``demo.json`` (optional, every key optional)::

    {"stages": {"stable": {"seconds": 41.0, "command": "python -m megatron_octo.train ..."}, ...},
     "synthetic": {"rl_*": "rewards and val accuracies are on the synthetic ... task", "eval/rl_*": "..."},
     "notes": ["free text shown in the report"]}

``synthetic`` maps shell patterns over stage names (and ``eval/<model>`` rows) to a note; rows
that match are marked. It may also be one string (a note on the whole run) or a list of patterns.

Exit codes: 0 report written; 2 not a run directory.
"""

import argparse
import fnmatch
import glob
import importlib.util
import json
import math
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

PRETRAIN_STAGES = ("stable", "decay_long", "decay_short", "decay_hybrid")
RL_RUNS = ("rl_control", "rl_long", "rl_short", "rl_hybrid")
# Tags MetricsWriter also writes against global tokens (its default plus the validation call).
VS_TOKENS = ("lm loss", "learning-rate", "lm loss validation")
COLORS = {"stable": "black", "control": "black", "long": "tab:blue", "short": "tab:orange", "hybrid": "tab:green",
          "merged": "tab:purple"}
LINESTYLES = {"long": "-", "short": "--", "hybrid": "-."}  # the decay branches' LR curves coincide
PLOTS = {  # plots/<name>.png -> title
    "pretrain_loss": "Pretraining loss (dots: validation)",
    "pretrain_lr": "Learning rate",
    "rl_reward": "RL reward (rollout batch mean)",
    "rl_accuracy": "RL accuracy: train (solid), held-out greedy (dashed)",
    "rl_response_length": "RL mean response length",
}


class NotARunError(ValueError):
    pass


# ----- reading ------------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    path: str
    scalars: dict = field(default_factory=dict)  # tag -> [(step, value)] in step order
    source: str = ""  # where the scalars came from, relative to the run directory
    seconds: Optional[float] = None  # TensorBoard writer's start to the last scalar
    state: Optional[dict] = None  # latest trainer_state.json
    origin: Optional[str] = None  # checkpoint.init_from of the latest checkpoint ("scratch" if none)

    def series(self, tag: str) -> list:
        return self.scalars.get(tag, [])

    def last(self, tag: str) -> Optional[float]:
        s = self.series(tag)
        return s[-1][1] if s else None


def _read_events(tb_dir: str) -> tuple:
    """(scalars, seconds from the writer's first event to the last scalar) of a TensorBoard directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(tb_dir, size_guidance={"scalars": 0})
    acc.Reload()
    events = {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}
    walls = [e.wall_time for evs in events.values() for e in evs]
    seconds = max(walls) - acc.FirstEventTimestamp() if walls else None
    return {tag: [(e.step, e.value) for e in evs] for tag, evs in events.items()}, seconds


def _read_jsonl(path: str) -> dict:
    """metrics.jsonl as MetricsWriter's TensorBoard tags; a step logged twice (resume) keeps its last value."""
    by_tag: dict = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            it, tokens = rec.pop("iteration"), rec.pop("tokens")
            for k, v in rec.items():
                if not isinstance(v, (int, float)) or math.isnan(v):
                    continue
                by_tag.setdefault(k, {})[it] = v
                if k in VS_TOKENS:
                    by_tag.setdefault(f"{k} vs tokens", {})[tokens] = v
    return {tag: sorted(d.items()) for tag, d in by_tag.items()}


def _latest_state(save_dir: str) -> tuple:
    """trainer_state.json and checkpoint.init_from of the checkpoint latest_checkpointed_iteration.txt
    names, else of the newest iter_NNNNNNN directory holding a trainer_state.json."""
    dirs = sorted(d for d in os.listdir(save_dir) if re.fullmatch(r"iter_\d{7}", d)
                  and os.path.isfile(os.path.join(save_dir, d, "trainer_state.json")))
    tracker = os.path.join(save_dir, "latest_checkpointed_iteration.txt")
    if os.path.isfile(tracker):
        with open(tracker) as f:
            named = f"iter_{f.read().strip():0>7}"
        dirs = [named] if named in dirs else dirs
    if not dirs:
        return None, None
    ckpt = os.path.join(save_dir, dirs[-1])
    with open(os.path.join(ckpt, "trainer_state.json")) as f:
        state = json.load(f)
    init_from = None
    cfg_path = os.path.join(ckpt, "config.yaml")
    if os.path.isfile(cfg_path):
        import yaml

        with open(cfg_path) as f:
            cfg = yaml.safe_load(f) or {}
        init_from = (cfg.get("checkpoint") or {}).get("init_from")
    return state, init_from


def _display_path(run_dir: str, path: str) -> str:
    """A path inside run_dir relative to it; any other path as written."""
    if os.path.isabs(path) and os.path.commonpath([run_dir, os.path.abspath(path)]) == run_dir:
        return os.path.relpath(path, run_dir)
    return path


def read_stage(run_dir: str, name: str) -> Stage:
    path = os.path.join(run_dir, name)
    st = Stage(name, path)
    tb = os.path.join(path, "tensorboard")
    if glob.glob(os.path.join(tb, "events.out.tfevents*")):
        (st.scalars, st.seconds), st.source = _read_events(tb), f"{name}/tensorboard/"
    else:
        for jl in (os.path.join(tb, "metrics.jsonl"), os.path.join(path, "metrics.jsonl")):
            if os.path.isfile(jl):
                st.scalars, st.source = _read_jsonl(jl), os.path.relpath(jl, run_dir)
                break
    st.state, init_from = _latest_state(path)
    if st.state is not None:
        st.origin = _display_path(run_dir, init_from) if init_from else "scratch"
    return st


def _find_stage_names(run_dir: str, prefix: str, canonical: tuple) -> list[str]:
    extra = sorted(d for d in os.listdir(run_dir)
                   if d.startswith(prefix) and d not in canonical and os.path.isdir(os.path.join(run_dir, d)))
    return [n for n in canonical if os.path.isdir(os.path.join(run_dir, n))] + extra


def read_evals(run_dir: str) -> dict:
    """model -> summary.json (eval/<model>/summary.json, else the newest eval/<model>/*/summary.json)."""
    out = {}
    root = os.path.join(run_dir, "eval")
    if not os.path.isdir(root):
        return out
    for model in sorted(os.listdir(root)):
        path = os.path.join(root, model, "summary.json")
        if not os.path.isfile(path):
            nested = sorted(glob.glob(os.path.join(root, model, "*", "summary.json")))
            if not nested:
                continue
            path = nested[-1]
        with open(path) as f:
            out[model] = dict(json.load(f), _path=os.path.relpath(path, run_dir))
    return out


def _model_order(name: str) -> tuple:
    known = PRETRAIN_STAGES + RL_RUNS
    return (known.index(name) if name in known else len(known), name)


# ----- demo.json ------------------------------------------------------------------------------------
@dataclass
class DemoFacts:
    seconds: dict = field(default_factory=dict)  # stage -> wall seconds
    commands: dict = field(default_factory=dict)  # stage -> command line
    synthetic: dict = field(default_factory=dict)  # pattern -> note
    run_note: Optional[str] = None  # synthetic note on the whole run
    notes: list = field(default_factory=list)
    total_seconds: Optional[float] = None

    def synthetic_note(self, row: str) -> Optional[str]:
        for pattern, note in self.synthetic.items():
            if fnmatch.fnmatchcase(row, pattern):
                return note
        return None


def read_demo(run_dir: str) -> DemoFacts:
    facts = DemoFacts()
    path = os.path.join(run_dir, "demo.json")
    if not os.path.isfile(path):
        return facts
    with open(path) as f:
        d = json.load(f)
    stages = d.get("stages") or {}
    if isinstance(stages, list):  # [{"name": ..., "seconds": ..., "command": ...}]
        stages = {s.get("name"): s for s in stages if isinstance(s, dict)}
    for name, s in stages.items():
        if isinstance(s, (int, float)):
            s = {"seconds": s}
        secs = next((s[k] for k in ("seconds", "wall_s", "elapsed_s", "time_s") if isinstance(s.get(k), (int, float))),
                    None)
        if secs is not None:
            facts.seconds[name] = float(secs)
        cmd = s.get("command", s.get("cmd"))
        if cmd:
            facts.commands[name] = cmd if isinstance(cmd, str) else shlex.join(str(c) for c in cmd)
    syn = d.get("synthetic")
    if isinstance(syn, str):
        facts.run_note = syn
    elif isinstance(syn, list):
        facts.synthetic = {str(p): "synthetic" for p in syn}
    elif isinstance(syn, dict):
        facts.synthetic = {str(p): str(n) for p, n in syn.items()}
    notes = d.get("notes") or []
    facts.notes = [notes] if isinstance(notes, str) else [str(n) for n in notes]
    if isinstance(d.get("total_seconds"), (int, float)):
        facts.total_seconds = float(d["total_seconds"])
    return facts


# ----- formatting -----------------------------------------------------------------------------------
def _f(x, spec: str = ".4f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _tokens(n) -> str:
    if n is None:
        return "—"
    n = int(n)
    if n < 10_000_000:
        return f"{n:,}"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _secs(s: Optional[float]) -> str:
    if s is None:
        return "—"
    return f"{s:.0f} s" if s < 600 else f"{s / 60:.1f} min"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


class _Marks:
    """Footnote markers for rows demo.json calls synthetic: one symbol per distinct note."""

    SYMBOLS = ("†", "‡", "§", "¶")

    def __init__(self, facts: DemoFacts):
        self.facts, self.used = facts, {}  # note -> (symbol, rows)

    def __call__(self, row: str, label: str) -> str:
        note = self.facts.synthetic_note(row)
        if note is None:
            return label
        n = len(self.used)
        sym, rows = self.used.setdefault(note, (self.SYMBOLS[n] if n < len(self.SYMBOLS) else f"†{n + 1}", []))
        if row not in rows:
            rows.append(row)
        return f"{label} {sym}"

    def footnotes(self) -> list:
        return [f"{sym} {', '.join(rows)}: {note}  " for note, (sym, rows) in self.used.items()]


# ----- sections ------------------------------------------------------------------------------------
def _wall_time(stage: Stage, facts: DemoFacts) -> str:
    if stage.name in facts.seconds:
        return _secs(facts.seconds[stage.name])
    return "—" if stage.seconds is None else f"≈{_secs(stage.seconds)}"


def pretrain_section(stages: list, facts: DemoFacts, mark: _Marks) -> list:
    rows = []
    for st in stages:
        losses = [v for _, v in st.series("lm loss")]
        state, tok = st.state or {}, st.series("lm loss vs tokens")
        end_tokens = state.get("tokens", tok[-1][0] if tok else None)
        end_lr = (state.get("schedule") or {}).get("lr", st.last("learning-rate"))
        rows.append([
            mark(st.name, st.name), st.origin or "—",
            _f(state.get("stage_iteration"), "d"), _tokens(state.get("stage_tokens")), _tokens(end_tokens),
            _f(losses[-1] if losses else None), _f(min(losses) if losses else None),
            _f(st.last("lm loss validation")), _f(end_lr, ".3E"), _wall_time(st, facts),
        ])
    header = ["stage", "from", "steps", "tokens", "global tokens at end", "final loss", "min loss",
              "final validation loss", "LR at end", "wall time"]
    notes = ["Steps, tokens, origin (`checkpoint.init_from`) and LR at end (the LR the optimizer's param groups "
             "hold after the last "
             "step, where a following stage starts) come from the latest checkpoint; without one, LR at end is "
             "the last logged LR and the rest is \"—\". Losses are the logged values (every `train.log_interval` "
             "steps). Wall time is demo.json's, else ≈ from the TensorBoard writer's start (after the model is "
             "built) to the last logged point."]
    return _table(header, rows) + [""] + notes


def _first_last(series: list) -> tuple:
    return (series[0], series[-1]) if series else (None, None)


def _arrow(series: list, fmt) -> str:
    first, last = _first_last(series)
    if first is None:
        return "—"
    return f"{fmt(first[1])} → {fmt(last[1])}"


def val_tags(st: Stage) -> list[str]:
    return sorted(t for t in st.scalars if t.startswith("val/") and t.endswith("/accuracy") and t.count("/") == 2)


def _val_cell(st: Stage) -> str:
    parts = []
    for tag in val_tags(st):
        s = st.series(tag)
        first, last = _first_last(s)
        cell = f"{tag.split('/')[1]} {_pct(first[1])} → {_pct(last[1])}"
        if first[0] != 0:
            cell += f" (from step {first[0]})"
        parts.append(cell)
    return "; ".join(parts) or "—"


def rl_section(runs: list, facts: DemoFacts, mark: _Marks) -> list:
    rows = []
    for st in runs:
        score = st.series("critic/score/mean")
        steps = (st.state or {}).get("stage_iteration", score[-1][0] if score else None)
        rows.append([
            mark(st.name, st.name), st.origin or "—", _f(steps, "d"),
            _arrow(score, lambda v: f"{v:.3f}"), _arrow(st.series("critic/accuracy"), _pct), _val_cell(st),
            _arrow(st.series("response_length/mean"), lambda v: f"{v:.1f}"), _wall_time(st, facts),
        ])
    header = ["run", "from", "steps", "reward first → last", "train accuracy % first → last",
              "held-out accuracy % step 0 → last", "mean response length first → last", "wall time"]
    return _table(header, rows) + ["", "Reward and train accuracy are the rollout batch means of the first "
                                   "and last RL step (`critic/score/mean`, `critic/accuracy`); held-out accuracy "
                                   "is greedy on the `val/<set>` sets before the first update and at the last "
                                   "validation."]


def eval_section(evals: dict, mark: _Marks) -> list[str]:
    benches = sorted({b for s in evals.values() for b in (s.get("benchmarks") or {})})
    rows = []
    for model in sorted(evals, key=_model_order):
        s = evals[model]
        b = s.get("benchmarks") or {}
        cells = []
        for name in benches:
            r = b.get(name)
            cells.append("—" if r is None else f"{_pct(r.get('accuracy'))} ({r.get('num_examples', '?')})")
        proto = s.get("protocol", "?")
        if s.get("n", 1) > 1:
            proto += f", {s['n']} samples, T={s.get('temperature')}"
        rows.append([mark(f"eval/{model}", model), proto, *cells])
    return _table(["model", "protocol", *[f"{b} acc % (problems)" for b in benches]], rows) + [
        "", "Accuracy is greedy accuracy, or mean@n when sampled. Sources: "
        + ", ".join(f"`{evals[m]['_path']}`" for m in sorted(evals, key=_model_order)) + "."]


def _signed(d: float) -> str:
    return f"{d:+.1f}"


def midtraining_section(runs: dict, evals: dict, mark: _Marks) -> list[str]:
    """Each decay branch's RL result against the control's, as numbers."""
    control = runs.get("rl_control")
    branches = [n for n in runs if n != "rl_control"]
    if not branches:
        return ["No RL run from a decay branch: nothing to compare."]
    if control is None:
        return ["No `rl_control` run (RL from the stable checkpoint): the comparison needs it."]
    lines = []
    for name in branches:
        st, facts = runs[name], []
        for tag in val_tags(st):
            if control.series(tag):
                (a0, a), (c0, c) = ((r.series(tag)[0][1], r.last(tag)) for r in (st, control))
                facts.append(f"held-out {tag.split('/')[1]} {_pct(a0)} → {_pct(a)}% vs {_pct(c0)} → {_pct(c)}% "
                             f"(after RL {_signed(100 * (a - c))} points)")
        a, c = st.last("critic/accuracy"), control.last("critic/accuracy")
        if a is not None and c is not None:
            facts.append(f"train accuracy at the last step {_pct(a)}% vs {_pct(c)}% "
                         f"({_signed(100 * (a - c))} points)")
        ea, ec = ((evals.get(m) or {}).get("benchmarks") or {} for m in (name, "rl_control"))
        for bench in sorted(set(ea) & set(ec)):
            a, c = ea[bench]["accuracy"], ec[bench]["accuracy"]
            na, nc = ea[bench].get("num_examples"), ec[bench].get("num_examples")
            se = (f", s.e. of the difference {100 * math.sqrt(a * (1 - a) / na + c * (1 - c) / nc):.1f}"
                  if na and nc else "")
            facts.append(f"eval {bench} {_pct(a)}% vs {_pct(c)}% ({_signed(100 * (a - c))} points, "
                         f"{na} vs {nc} problems{se})")
        lines.append(f"- {mark(name, f'**{name}**')} (RL from `{st.origin or '?'}`) vs "
                     f"{mark('rl_control', '**rl_control**')} (RL from `{control.origin or '?'}`): "
                     + ("; ".join(facts) if facts else "no metric both runs recorded") + ".")
    return lines + ["", "Each line compares single runs: the standard errors cover the sampling of evaluation "
                        "problems only, not run-to-run variation."]


# ----- plots ---------------------------------------------------------------------------------------
def _style(name: str, linestyles: bool = False) -> dict:
    key = name.split("_", 1)[-1]
    return {"color": COLORS.get(key), "linestyle": LINESTYLES.get(key, "-") if linestyles else "-"}


def _plot(path: str, title: str, xlabel: str, ylabel: str, lines: list, vlines: tuple = ()) -> bool:
    """lines: [(label, xs, ys, plot kwargs)]. Returns False (and draws nothing) without data."""
    lines = [ln for ln in lines if ln[1]]
    if not lines:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, xs, ys, style in lines:
        ax.plot(xs, ys, label=label, **style)
    for x, label in vlines:
        ax.axvline(x, color="gray", linestyle=":", linewidth=1)
        ax.annotate(label, (x, 1), xycoords=("data", "axes fraction"), xytext=(-3, -3), textcoords="offset points",
                    fontsize=8, color="gray", ha="right", va="top", rotation=90)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _xy(series: list) -> tuple:
    return [s for s, _ in series], [v for _, v in series]


def render_plots(plot_dir: str, pretrain: list, runs: list) -> dict:
    """Draw every plot of PLOTS that has data into plot_dir; return {name: path}."""
    os.makedirs(plot_dir, exist_ok=True)
    stable = next((s for s in pretrain if s.name == "stable"), None)
    stable_end = stable.series("lm loss vs tokens")[-1][0] if stable and stable.series("lm loss vs tokens") else None
    branch_start = ((stable_end, "decay branches start"),) if stable_end is not None else ()

    def pre_lines(tag: str, val_tag: Optional[str] = None) -> list:
        lines = []
        for st in pretrain:
            xs, ys = _xy(st.series(tag))
            if st is not stable and stable and stable.series(tag) and xs and xs[0] > stable.series(tag)[-1][0]:
                # a branch continues from the stable checkpoint: start its line at the stable's last point
                last = stable.series(tag)[-1]
                xs, ys = [last[0], *xs], [last[1], *ys]
            style = _style(st.name, linestyles=True)
            lines.append((st.name, xs, ys, dict(style, linewidth=1.4)))
            if val_tag:
                lines.append((f"{st.name} validation", *_xy(st.series(val_tag)),
                              {"color": style["color"], "marker": "o", "linestyle": "none", "markersize": 4}))
        return lines

    def rl_lines(tag: str) -> list:
        return [(st.name, *_xy(st.series(tag)), dict(_style(st.name), marker=".", linewidth=1.4)) for st in runs]

    val_lines = [(f"{st.name} {tag.split('/')[1]}", *_xy(st.series(tag)),
                  dict(_style(st.name), linestyle="--", marker="s", markersize=4))
                 for st in runs for tag in val_tags(st)]
    data = {
        "pretrain_loss": ("global tokens", "lm loss", pre_lines("lm loss vs tokens", "lm loss validation vs tokens"),
                          branch_start),
        "pretrain_lr": ("global tokens", "learning rate", pre_lines("learning-rate vs tokens"), branch_start),
        "rl_reward": ("RL step", "critic/score/mean", rl_lines("critic/score/mean"), ()),
        "rl_accuracy": ("RL step", "accuracy", rl_lines("critic/accuracy") + val_lines, ()),
        "rl_response_length": ("RL step", "tokens", rl_lines("response_length/mean"), ()),
    }
    done = {}
    for name, (xlabel, ylabel, lines, vlines) in data.items():
        path = os.path.join(plot_dir, f"{name}.png")
        if _plot(path, PLOTS[name], xlabel, ylabel, lines, vlines):
            done[name] = path
        elif os.path.exists(path):
            os.remove(path)  # left by an earlier render
    return done


# ----- headline (result.json of `make demo`) ---------------------------------------------------------
HEADLINE_MEASURES = (("fewshot", "few-shot probe"), ("before", "before RL"), ("after", "after RL"))


def headline_bars(models: dict) -> list:
    """[(model, [(measure label, value, error bar)])] from a demo result's ``models``: one run's rows
    (error bar: the binomial s.e. over its problems) or ``--seeds`` statistics (error bar: the sd over seeds)."""
    bars = []
    for model, row in models.items():
        cells = []
        for key, label in HEADLINE_MEASURES:
            v = row.get(key)
            if isinstance(v, dict):  # {"mean", "sd", "values"}
                cells.append((label, v["mean"], v["sd"]))
            elif isinstance(v, (int, float)):
                n = row.get("n" if key != "fewshot" else "fewshot_n") or 0
                cells.append((label, v, math.sqrt(v * (1 - v) / n) if n else 0.0))
        if cells:
            bars.append((model, cells))
    return bars


def plot_headline(path: str, bars: list, subtitle: str) -> bool:
    """Grouped bars per model (few-shot probe, before RL, after RL) with error bars; False without data."""
    if not bars or importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    width = 0.8 / len(HEADLINE_MEASURES)
    shades = {"few-shot probe": 0.35, "before RL": 0.6, "after RL": 1.0}
    for j, (_, label) in enumerate(HEADLINE_MEASURES):
        xs, ys, es, cs = [], [], [], []
        for i, (model, cells) in enumerate(bars):
            cell = next((c for c in cells if c[0] == label), None)
            if cell is None:
                continue
            xs.append(i + (j - 1) * width)
            ys.append(100 * cell[1])
            es.append(100 * cell[2])
            cs.append(COLORS.get(model) or "tab:purple")
        if xs:
            ax.bar(xs, ys, width, yerr=es, capsize=3, color=cs, alpha=shades[label], label=label,
                   edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(bars)), [m for m, _ in bars])
    ax.set(title=f"Greedy held-out accuracy ({subtitle})", ylabel="accuracy %", ylim=(0, 100))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def read_result(run_dir: str) -> Optional[dict]:
    path = os.path.join(run_dir, "result.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def headline_section(result: dict, plots: dict, out_dir: str) -> list:
    """The demo's answer at a glance: the sentence, the figure beside the response-length curves, the
    numbers and each claim with whether it holds."""
    L = [result.get("sentence", ""), ""]
    figs = [f"![{PLOTS[k] if k in PLOTS else 'accuracy before and after RL'}]({os.path.relpath(plots[k], out_dir)})"
            for k in ("headline", "rl_response_length") if k in plots]
    if figs:
        L += [" ".join(figs), ""]
    rows = []
    for model, row in result.get("models", {}).items():
        n = row.get("n")
        se = lambda v: f" ± {100 * math.sqrt(v * (1 - v) / n):.1f}" if n else ""  # noqa: E731
        cells = [f"{_pct(row[k])}{se(row[k])}" if k in row else "—" for k in ("fewshot", "before", "after")]
        gain = f"{100 * (row['after'] - row['before']):+.1f}" if "after" in row and "before" in row else "—"
        lens = " → ".join(f"{row[k]:.0f}" for k in ("length_before", "length_after") if row.get(k) is not None) or "—"
        rows.append([model, *cells, gain, lens])
    L += _table(["model", "few-shot probe %", "before RL % (zero-shot)", "after RL %", "RL gain (points)",
                 "greedy response length before → after"], rows)
    L += ["", "Greedy accuracy on the held-out problems ± its binomial standard error (one run: the s.e. covers "
          "the sampling of problems, not run-to-run variation; `--seeds` measures that)."]
    claims = result.get("conclusions", {})
    if claims:
        L += [""] + [f"- [{'x' if v['holds'] else ' '}] {v['claim']}" + (" (not measured)" if v["holds"] is None else "")
                     for v in claims.values()]
    return L


# ----- report ---------------------------------------------------------------------------------------
def _overview(run_dir: str, stages: list, evals: dict, facts: DemoFacts) -> list:
    names = [st.name for st in stages]
    missing = [n for n in PRETRAIN_STAGES + RL_RUNS if n not in names]
    empty = [st.name for st in stages if not st.scalars]
    sources = sorted({st.source for st in stages if st.source})
    L = [f"# Run report: `{os.path.basename(run_dir)}`", "",
         f"Run directory `{run_dir}`; written by `tools/plot_run.py` on {time.strftime('%Y-%m-%d %H:%M')}.",
         "Scalars are read from " + (", ".join(f"`{s}`" for s in sources) if sources else "no stage") + "."]
    if facts.total_seconds is not None:
        L.append(f"Whole run: {_secs(facts.total_seconds)} (demo.json).")
    evaluated = f"eval of {', '.join(sorted(evals, key=_model_order))}" if evals else "no eval"
    L += ["", f"Found: {', '.join(names) or 'no stage'}; {evaluated}."]
    if missing:
        L.append(f"Missing: {', '.join(missing)} (no directory).")
    if empty:
        L.append(f"No metrics recorded (no TensorBoard events or metrics.jsonl): {', '.join(empty)}.")
    if facts.run_note:
        L += ["", f"**Synthetic:** {facts.run_note}"]
    return L


def _plots_section(plots: dict, out_dir: str, error: Optional[str]) -> list:
    L = [error, ""] if error else []
    for name, title in PLOTS.items():
        if name in plots:
            L += [f"![{title}]({os.path.relpath(plots[name], out_dir)})", ""]
        else:
            L += [f"`plots/{name}.png`: not drawn ({'see above' if error else 'no data'}).", ""]
    if "pretrain_loss" in plots:
        L += ["Pretraining curves are on the global token axis; each decay branch's line starts at the stable "
              "stage's last logged point, the checkpoint it branched from."]
    return L


def _hf_section(run_dir: str) -> list:
    hf = os.path.join(run_dir, "hf")
    if not os.path.isdir(hf):
        return ["Not exported (no `hf/`)."]
    files = sorted(os.listdir(hf))
    size = sum(os.path.getsize(os.path.join(hf, f)) for f in files if os.path.isfile(os.path.join(hf, f)))
    shown = ", ".join(files[:8]) + (", ..." if len(files) > 8 else "")
    return [f"`hf/`: {len(files)} files, {size / 2**20:.1f} MiB ({shown})."]


def render_report(run_dir: str, out_dir: Optional[str] = None) -> str:
    """Write ``report.md`` (and ``plots/*.png``) for run_dir into out_dir (default run_dir); return its path.

    Raises NotARunError when run_dir does not exist or holds no stage, eval or demo.json.
    """
    run_dir = os.path.abspath(run_dir)
    out_dir = os.path.abspath(out_dir or run_dir)
    if not os.path.isdir(run_dir):
        raise NotARunError(f"{run_dir}: no such directory")
    pre_names = _find_stage_names(run_dir, "decay_", PRETRAIN_STAGES)
    rl_names = _find_stage_names(run_dir, "rl_", RL_RUNS)
    evals = read_evals(run_dir)
    if not (pre_names or rl_names or evals or os.path.isfile(os.path.join(run_dir, "demo.json"))):
        raise NotARunError(f"{run_dir}: not a run directory (none of {', '.join(PRETRAIN_STAGES + RL_RUNS)}, "
                           "eval/*/summary.json or demo.json is there)")
    facts = read_demo(run_dir)
    mark = _Marks(facts)
    pretrain = [read_stage(run_dir, n) for n in pre_names]
    runs = [read_stage(run_dir, n) for n in rl_names]

    os.makedirs(out_dir, exist_ok=True)
    if importlib.util.find_spec("matplotlib") is None:
        plots, plot_error = {}, "Plots not drawn: matplotlib is not installed (it is in the `dev` extra)."
    else:
        plots, plot_error = render_plots(os.path.join(out_dir, "plots"), pretrain, runs), None
    result = read_result(run_dir)
    if result and plot_error is None:
        headline = os.path.join(out_dir, "plots", "headline.png")
        seed = f"seed {result['seed']}, " if "seed" in result else ""
        if plot_headline(headline, headline_bars(result.get("models", {})), f"{seed}error bars: s.e."):
            plots["headline"] = headline

    L = _overview(run_dir, pretrain + runs, evals, facts)
    if result:
        L[1:1] = ["", "## The answer", ""] + headline_section(result, plots, out_dir)
    L += ["", "## Pretraining (stable, then decay branches)", ""]
    L += pretrain_section(pretrain, facts, mark) if pretrain else ["No pretraining stage."]
    L += ["", "## RL (GRPO)", ""]
    L += rl_section(runs, facts, mark) if runs else ["No RL run."]
    L += ["", "## Evaluation", ""]
    L += eval_section(evals, mark) if evals else ["No `eval/<model>/summary.json`."]
    L += ["", "## Does mid-training help RL?", ""]
    L += midtraining_section({st.name: st for st in runs}, evals, mark)
    if mark.used:
        L += ["", "## Synthetic numbers (from demo.json)", ""] + mark.footnotes()
    L += ["", "## Plots", ""] + _plots_section(plots, out_dir, plot_error)
    L += ["", "## Hugging Face export", ""] + _hf_section(run_dir)
    if facts.notes:
        L += ["", "## Notes (from demo.json)", ""] + [f"- {n}" for n in facts.notes]
    if facts.commands:
        L += ["", "## Commands (from demo.json)", "", "```"]
        L += [f"# {name}\n{cmd}" for name, cmd in facts.commands.items()] + ["```"]

    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L).rstrip() + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python tools/plot_run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="the run directory (e.g. runs/demo)")
    p.add_argument("--out", default=None, help="where report.md and plots/ go (default: RUN_DIR)")
    args = p.parse_args(argv)
    try:
        path = render_report(args.run_dir, args.out)
    except NotARunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
