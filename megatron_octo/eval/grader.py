"""Answer equivalence: string normalisation, exact numbers, then math-verify, under a hard time limit.

Why a worker pool: math-verify (sympy underneath) can run forever or exhaust memory on
adversarial answers -- ``verify(1, 9^{9^{9^9}})`` never returns -- and its own timeout uses
``signal.alarm``, which only works in the main thread of the main interpreter. The RL trainer
calls the reward from wherever it likes, so every comparison runs in a separate worker
process; the parent waits with a deadline and kills a worker that overruns, then starts a
fresh one. Workers also run under ``RLIMIT_AS`` so a huge expansion fails with MemoryError
instead of taking the node down.

Why no ``ExprExtractionConfig``: it parses plain-text answers with ``sympy.parse_expr``, which
evaluates Python code built from the string. Model output is never evaluated as code here:
only math-verify's LaTeX grammar parser (ANTLR, no eval) is used, and plain numbers are
compared by :func:`_number` without eval.

Comparison order for one answer pair (first success wins):
  1. normalised strings equal (:func:`megatron_octo.eval.answer.normalize_answer`);
  2. both are plain numbers (int, decimal, a/b, \\frac{a}{b}, optional %): equal within
     relative 1e-4; a percentage also matches its value/100 ("50\\%" == "0.5");
  3. math-verify ``verify(parse(gold), parse(pred))`` on the LaTeX, raw then normalised;
  4. lists: if either side has several top-level items ("1,3,5", "(1,2),(3,4)",
     "$69$,$84$", "\\{1,2\\}"), both must have the same number of items and every gold item
     must be matched by a distinct predicted item, in any order.

The same workers also run OctoThinker's own rules (:func:`grade_octothinker`, the pure functions in
:mod:`megatron_octo.eval.octothinker_grader`), whose sympy/math-verify calls can hang just the same.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as _wait_conns
from typing import Optional, Sequence, Union

from megatron_octo.eval import octothinker_grader
from megatron_octo.eval.answer import extract_answer, normalize_answer, split_top_level, strip_math_delimiters

__all__ = [
    "GRADERS",
    "Verdict",
    "configure_grader",
    "equivalent",
    "grade",
    "grade_batch",
    "grade_detailed",
    "grade_octothinker",
    "shutdown_grader",
]

# "math_verify": this module's equivalence (the default and the RL reward); "octothinker": the paper's rules.
GRADERS = ("math_verify", "octothinker")

Gold = Union[str, int, float, Sequence[str]]

# Seconds per graded response (a worker's hard deadline): OctoThinker's harness gives each sample 15 s
# (its pebble pool in eval/eval/eval_script.py's caller), and so does every default here (eval CLI
# --grade-timeout, rl.grade_timeout, RewardConfig.timeout, tools/grader_agreement.py).
DEFAULT_TIMEOUT = 15.0
DEFAULT_MEMORY_MB = 2048


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one response.

    ``extracted`` is the predicted answer that was compared (None if nothing was found; a list of
    strings for OctoThinker's MATH rule); ``timed_out`` marks a comparison cut off by the time limit
    or a crashed worker (it then counts as incorrect). ``lenient`` (OctoThinker's rules only) marks a
    correct verdict that rests on the non-strict LaTeX parse of their symbolic fallback: with a strict
    parse the same rule says wrong (:func:`megatron_octo.eval.octothinker_grader.judge_detailed`).
    """

    correct: bool
    extracted: Union[str, list, None]
    timed_out: bool = False
    lenient: bool = False


# ---------------------------------------------------------------------------------------
# Equivalence logic (runs inside a worker; also callable in-process without a time limit)
# ---------------------------------------------------------------------------------------

_NUM_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?")
_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")
_SLASH_RE = re.compile(r"(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)")
_SCI_RE = re.compile(r"(-?\d+(?:\.\d+)?)(?:\\times|\\cdot|\*)10\^\{?(-?\d+)\}?")


def _number(norm: str) -> Optional[tuple[float, bool]]:
    """(value, had_percent) for a normalised plain number, else None. No eval."""
    s = norm
    pct = s.endswith("%")
    if pct:
        s = s[:-1]
    if _NUM_RE.fullmatch(s):
        try:
            return float(s), pct
        except ValueError:
            return None
    m = _FRAC_RE.fullmatch(s)
    if m:
        den = float(m.group(3))
        if den == 0:
            return None
        v = float(m.group(2)) / den
        return (-v if m.group(1) else v), pct
    m = _SCI_RE.fullmatch(s)
    if m:
        try:
            return float(m.group(1)) * 10.0 ** int(m.group(2)), pct
        except OverflowError:
            return None
    m = _SLASH_RE.fullmatch(s)
    if m:
        den = float(m.group(2))
        if den == 0:
            return None
        return float(m.group(1)) / den, pct
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-12)


def _numbers_equal(p: tuple[float, bool], g: tuple[float, bool]) -> bool:
    (pv, pp), (gv, gp) = p, g
    if _close(pv, gv):
        return True
    if pp or gp:
        # "50%" vs "0.5" and "0.5" vs "50%": one side written as a percentage.
        return _close(pv / 100 if pp else pv, gv / 100 if gp else gv) or _close(pv, gv * 100) or _close(pv * 100, gv)
    return False


_MV = None


def _math_verify():
    global _MV
    if _MV is None:
        import math_verify

        _MV = (math_verify.parse, math_verify.verify, [math_verify.LatexExtractionConfig()])
    return _MV


def _mv_equal(pred: str, gold: str, inner_timeout: Optional[int]) -> Optional[bool]:
    """math-verify verdict, or None if either side did not parse (so a caller can retry)."""
    parse, verify, cfg = _math_verify()
    g = parse("$" + gold + "$", extraction_config=cfg, parsing_timeout=inner_timeout)
    if not g:
        return None
    p = parse("$" + pred + "$", extraction_config=cfg, parsing_timeout=inner_timeout)
    if not p:
        return None
    return bool(verify(g, p, timeout_seconds=inner_timeout))


def _single_equal(pred: str, gold: str, inner_timeout: Optional[int]) -> bool:
    np_, ng = normalize_answer(pred), normalize_answer(gold)
    if not np_ or not ng:
        return False
    if np_ == ng:
        return True
    if np_.isalpha() and ng.isalpha():
        return np_.lower() == ng.lower()
    pn, gn = _number(np_), _number(ng)
    if pn is not None and gn is not None:
        return _numbers_equal(pn, gn)
    raw_p, raw_g = strip_math_delimiters(pred).replace("$", ""), strip_math_delimiters(gold).replace("$", "")
    try:
        r = _mv_equal(raw_p, raw_g, inner_timeout)
        if r is None and (np_, ng) != (raw_p, raw_g):
            # The raw LaTeX did not parse (units, \text, stray markup): try the normalised form.
            r = _mv_equal(np_, ng, inner_timeout)
        return bool(r)
    except Exception:  # noqa: BLE001 - any parser/sympy failure means "not shown equal"
        return False


def _match_all(preds: list[str], golds: list[str], inner_timeout: Optional[int]) -> bool:
    """Perfect bipartite matching between predicted and gold items (order-insensitive)."""
    if len(preds) != len(golds):
        return False
    cache: dict[tuple[int, int], bool] = {}

    def ok(i: int, j: int) -> bool:
        if (i, j) not in cache:
            cache[(i, j)] = _single_equal(preds[i], golds[j], inner_timeout)
        return cache[(i, j)]

    owner: dict[int, int] = {}  # gold index -> pred index

    def augment(i: int, seen: set[int]) -> bool:
        # Cheap exact matches first so the common "same list, other order" case avoids sympy.
        order = sorted(range(len(golds)), key=lambda j: normalize_answer(golds[j]) != normalize_answer(preds[i]))
        for j in order:
            if j in seen or not ok(i, j):
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    return all(augment(i, set()) for i in range(len(preds)))


def equivalent(pred: str, gold: str, *, inner_timeout: Optional[int] = None) -> bool:
    """True if the predicted answer equals the gold answer. No time limit: call via
    :func:`grade` unless the inputs are trusted. ``inner_timeout`` is passed to math-verify's
    own (signal based, main-thread only) timeout."""
    if pred is None or gold is None:
        return False
    pred, gold = str(pred), str(gold)
    if not pred.strip() or not gold.strip():
        return False
    if pred.strip() == gold.strip() or _single_equal(pred, gold, inner_timeout):
        return True
    gp, pp = split_top_level(gold), split_top_level(pred)
    if len(gp) > 1 or len(pp) > 1:
        return _match_all(pp, gp, inner_timeout)
    return False


# ---------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------


def _judge_math_verify(pred: str, gold: str, inner_timeout: Optional[int]) -> bool:
    try:
        return equivalent(pred, gold, inner_timeout=inner_timeout)
    except Exception:  # noqa: BLE001 - a grading failure (MemoryError included) is a wrong answer
        return False


def _judge_octothinker(response: str, gold: Gold, rule: str, question: str,
                       inner_timeout: Optional[int]) -> tuple[bool, object, bool]:
    try:
        return octothinker_grader.judge_detailed(response, gold, rule, question, inner_timeout)
    except Exception:  # noqa: BLE001 - as OctoThinker's harness: an error is a wrong answer
        return False, None, False


# A worker task names its judge; the arguments follow, then math-verify's inner time limit.
_JUDGES = {"math_verify": _judge_math_verify, "octothinker": _judge_octothinker}


def worker_main(read_fd: int, write_fd: int, memory_mb: int) -> None:
    """Loop of a worker process: receive (judge, args, inner_timeout), send back the judge's result.
    Started by ``python -m megatron_octo.eval._grader_worker``."""
    from multiprocessing.connection import Connection

    rconn, wconn = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    if memory_mb and memory_mb > 0:
        try:
            import resource

            lim = int(memory_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        except (ImportError, ValueError, OSError):
            pass  # not fatal: the time limit still bounds the damage
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _math_verify()
    octothinker_grader.load_parsers()  # seconds of imports, paid before the first deadline starts
    wconn.send("ready")
    while True:
        try:
            msg = rconn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        judge, args, inner_timeout = msg
        result = _JUDGES[judge](*args, inner_timeout)
        try:
            wconn.send(result)
        except (EOFError, OSError):
            return


class _Worker:
    __slots__ = ("proc", "send", "conn", "deadline", "task")

    def __init__(self, proc, send, conn):
        self.proc, self.send, self.conn, self.deadline, self.task = proc, send, conn, None, None


@dataclass
class _Settings:
    workers: int
    memory_mb: int
    startup_timeout: float = 120.0


def _default_settings() -> _Settings:
    n = int(os.environ.get("OCTO_GRADER_WORKERS", "0")) or max(1, min(16, (os.cpu_count() or 2) // 2))
    return _Settings(workers=n, memory_mb=int(os.environ.get("OCTO_GRADER_MEMORY_MB", DEFAULT_MEMORY_MB)))


_LOCK = threading.RLock()
_SETTINGS = _default_settings()
_WORKERS: list[_Worker] = []


def configure_grader(*, workers: Optional[int] = None, memory_mb: Optional[int] = None) -> None:
    """Set the worker count and the per-worker address-space limit (MB, 0 = none).
    Running workers are stopped and restarted lazily with the new settings.
    Environment defaults: OCTO_GRADER_WORKERS, OCTO_GRADER_MEMORY_MB."""
    with _LOCK:
        shutdown_grader()
        if workers is not None:
            if workers < 1:
                raise ValueError(f"workers must be >= 1, got {workers}")
            _SETTINGS.workers = workers
        if memory_mb is not None:
            _SETTINGS.memory_mb = memory_mb


def _inner_timeout(timeout: float) -> Optional[int]:
    # math-verify's own alarm (whole seconds) lets a worker give up gracefully, without being
    # killed and restarted, when a sub-step is slow; it is set a second before the parent's
    # hard deadline, and disabled when the limit is under 2 s (the hard limit then acts alone).
    return int(timeout) - 1 if timeout >= 2 else None


def _start_worker() -> _Worker:
    # A fresh interpreter rather than multiprocessing: fork of a parent holding torch/OpenMP
    # threads can deadlock, and spawn/forkserver re-import the caller's __main__, which breaks
    # scripts without an `if __name__ == "__main__"` guard.
    from multiprocessing.connection import Connection

    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "-m", "megatron_octo.eval._grader_worker",
        str(to_child_r), str(to_parent_w), str(_SETTINGS.memory_mb),
    ]
    try:
        proc = subprocess.Popen(cmd, pass_fds=(to_child_r, to_parent_w), stdin=subprocess.DEVNULL, env=env)
    finally:
        os.close(to_child_r)
        os.close(to_parent_w)
    send = Connection(to_child_w, readable=False)
    conn = Connection(to_parent_r, writable=False)
    w = _Worker(proc, send, conn)
    if not conn.poll(_SETTINGS.startup_timeout):
        _kill(w)
        raise RuntimeError(f"grader worker did not start within {_SETTINGS.startup_timeout}s")
    try:
        msg = conn.recv()
    except EOFError as e:
        code = proc.wait(5)
        _kill(w)
        raise RuntimeError(
            f"grader worker exited during start-up (exit code {code}); if the memory limit "
            f"({_SETTINGS.memory_mb} MB) is too low raise it with configure_grader(memory_mb=...)"
        ) from e
    if msg != "ready":
        _kill(w)
        raise RuntimeError(f"unexpected message from grader worker: {msg!r}")
    return w


def _kill(w: _Worker) -> None:
    try:
        w.proc.kill()
    except Exception:  # noqa: BLE001
        pass
    try:
        w.proc.wait(5)
    except Exception:  # noqa: BLE001
        pass
    for c in (w.send, w.conn):
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


def shutdown_grader() -> None:
    """Stop all grader workers (they are restarted on the next call)."""
    with _LOCK:
        for w in _WORKERS:
            try:
                w.send.send(None)
            except Exception:  # noqa: BLE001
                pass
        for w in _WORKERS:
            try:
                w.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
            _kill(w)
        _WORKERS.clear()


atexit.register(shutdown_grader)


def _run_tasks(judge: str, tasks: list[tuple], timeout: float) -> list[tuple[object, bool]]:
    """(result, timed_out) for each argument tuple of ``judge``, each under its own deadline; a task
    cut off (or whose worker died) gets result None."""
    results: list[Optional[tuple[object, bool]]] = [None] * len(tasks)
    if not tasks:
        return []
    with _LOCK:
        want = min(_SETTINGS.workers, len(tasks))
        while len(_WORKERS) < want:
            _WORKERS.append(_start_worker())
        inner = _inner_timeout(timeout)
        pool = _WORKERS[:want]
        next_task = 0

        def assign(w: _Worker) -> None:
            nonlocal next_task
            if next_task >= len(tasks):
                w.task = None
                return
            w.task = next_task
            next_task += 1
            w.send.send((judge, tasks[w.task], inner))
            w.deadline = time.monotonic() + timeout

        def replace(w: _Worker) -> None:
            _kill(w)
            nw = _start_worker()
            i = _WORKERS.index(w)
            _WORKERS[i] = nw
            pool[pool.index(w)] = nw
            assign(nw)

        try:
            for w in pool:
                assign(w)
            while any(w.task is not None for w in pool):
                busy = [w for w in pool if w.task is not None]
                now = time.monotonic()
                wait_for = max(0.0, min(w.deadline for w in busy) - now)
                ready = _wait_conns([w.conn for w in busy], timeout=wait_for)
                for w in list(busy):
                    if w.conn in ready:
                        try:
                            results[w.task] = (w.conn.recv(), False)
                            assign(w)
                        except (EOFError, OSError):
                            # Worker died (e.g. killed by the OOM killer): count as a timeout.
                            results[w.task] = (None, True)
                            replace(w)
                    elif time.monotonic() >= w.deadline:
                        results[w.task] = (None, True)
                        replace(w)
        except BaseException:
            # Interrupted (Ctrl-C, a caller's timeout): a worker still busy would hand its stale
            # answer to the next call's task, so every busy or broken worker goes.
            for w in list(pool):
                if w.task is not None or w.send.closed or w.conn.closed:
                    _kill(w)
                    if w in _WORKERS:
                        _WORKERS.remove(w)
            raise
    return [r if r is not None else (None, True) for r in results]


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def _gold_str(gold: Gold) -> str:
    if isinstance(gold, (list, tuple)):
        items = [str(g) for g in gold]
        return items[0] if len(items) == 1 else ", ".join(items)
    if isinstance(gold, float):
        return repr(int(gold)) if gold.is_integer() else repr(gold)
    return str(gold)


def grade_detailed(
    responses: Sequence[str],
    golds: Sequence[Gold],
    *,
    extracted: bool = False,
    style: str = "auto",
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> list[Verdict]:
    """Grade responses against gold answers; one :class:`Verdict` per pair.

    ``extracted=False``: the answer is first extracted from each response with
    :func:`~megatron_octo.eval.answer.extract_answer` (``style``). ``extracted=True``: the
    responses already are answers. A gold may be a string, a number (AMC's ``27.0``) or a list
    of strings (OlympiadBench ``final_answer``). ``timeout`` (seconds) bounds each comparison;
    None or <= 0 compares in-process with no limit (trusted inputs only).
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    preds = [r if extracted else extract_answer(r, style) for r in responses]
    pairs: list[tuple[str, str]] = []
    index: list[int] = []
    out: list[Optional[Verdict]] = [None] * len(preds)
    for i, (p, g) in enumerate(zip(preds, golds)):
        gs = _gold_str(g)
        if p is None or not str(p).strip():
            out[i] = Verdict(False, p)
        elif str(p).strip() == gs.strip():
            out[i] = Verdict(True, p)  # identical strings need no worker round trip
        else:
            pairs.append((str(p), gs))
            index.append(i)
    if timeout is None or timeout <= 0:
        res = [(equivalent(p, g), False) for p, g in pairs]
    else:
        res = _run_tasks("math_verify", pairs, float(timeout))
    for i, (ok, to) in zip(index, res):
        out[i] = Verdict(bool(ok), preds[i], to)
    return out  # type: ignore[return-value]


def grade_octothinker(
    responses: Sequence[str],
    golds: Sequence[Gold],
    rules: Union[str, Sequence[str]],
    *,
    questions: Optional[Sequence[str]] = None,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> list[Verdict]:
    """Grade responses with OctoThinker's own extraction and equivalence; one :class:`Verdict` each.

    ``rules`` is one rule name for all, or one per response (see
    :func:`megatron_octo.eval.octothinker_grader.rule_for`). ``questions`` feeds the MATH rule's
    "separated by commas" split. Each response is extracted and judged in a worker under ``timeout``
    seconds (the extraction regexes backtrack too); None or <= 0 runs in-process without a limit
    (trusted inputs only).
    """
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    rule_list = [rules] * len(responses) if isinstance(rules, str) else list(rules)
    question_list = list(questions) if questions is not None else [""] * len(responses)
    if len(rule_list) != len(responses) or len(question_list) != len(responses):
        raise ValueError("rules and questions must have one entry per response")
    unknown = sorted(set(rule_list) - set(octothinker_grader.RULES))
    if unknown:
        raise ValueError(f"unknown OctoThinker rule(s) {unknown}; expected one of {sorted(octothinker_grader.RULES)}")
    tasks = [(str(r), g, rule, q or "") for r, g, rule, q in zip(responses, golds, rule_list, question_list)]
    if timeout is None or timeout <= 0:
        res = [(_judge_octothinker(*task, None), False) for task in tasks]
    else:
        res = _run_tasks("octothinker", tasks, float(timeout))
    return [Verdict(False, None, True) if to or value is None
            else Verdict(bool(value[0]), value[1], lenient=bool(value[2])) for value, to in res]


def grade_batch(
    responses: Sequence[str],
    golds: Sequence[Gold],
    *,
    extracted: bool = False,
    style: str = "auto",
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> list[bool]:
    """Batch form of :func:`grade`: list of correctness flags."""
    return [v.correct for v in grade_detailed(responses, golds, extracted=extracted, style=style, timeout=timeout)]


def grade(
    response_or_answer: str,
    gold: Gold,
    *,
    extracted: bool = False,
    style: str = "auto",
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> bool:
    """True if the response (or already-extracted answer) matches the gold answer."""
    return grade_detailed([response_or_answer], [gold], extracted=extracted, style=style, timeout=timeout)[0].correct
