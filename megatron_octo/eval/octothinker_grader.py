"""OctoThinker's own answer extraction and equivalence, reimplemented so our numbers can sit next to the paper's.

The paper's base-model numbers come from OctoThinker's ``eval/`` harness (a fork of DeepSeekMath's
``evaluation/``); its RL-model numbers come from the verl fork's validation reward. Each benchmark has
its own pair of functions, named in ``eval/configs/en_math_cot_few_shot_test_configs.json``:

  rule        benchmarks (protocol)                 extraction                           equivalence
  gsm         GSM8K 8-shot, AMC23 0-shot            extract_gsm_few_shot_cot_answer      eval_last_single_answer
  math        MATH500 (Minerva 4-shot)              extract_math_few_shot_cot_answer     eval_math
  olympiad    OlympiadBench (Minerva 4-shot)        extract_olympiad_math_answer         eval_olympiad_math
  rl_boxed    every set, RL zero-shot templates     math_verifier.py boxed_pattern       math_verifier.py is_equiv

Sources read (public code; the behaviour is reimplemented here, not copied):
  * ``eval/data_processing/answer_extraction.py``, ``eval/eval/eval_script.py``, ``eval/eval/eval_utils.py``,
    ``eval/data_processing/process_utils.py`` of OctoThinker (the copy in the index is the fork
    marvinfli/OctoThinker; GAIR-NLP/OctoThinker's own ``eval/`` is not in the index). The extraction and
    ``math_equal`` are line for line DeepSeekMath's (deepseek-ai/DeepSeek-Math ``evaluation/``);
    ``extract_olympiad_math_answer`` and ``eval_olympiad_math`` are OctoThinker's additions.
  * ``rl/verl/utils/reward_score/math_verifier.py`` of GAIR-NLP/OctoThinker (the RL reward and validation).
    It imports ``normalize_final_answer`` from ``verl/utils/reward_score/eval.py``, which is not in the
    index for OctoThinker; the version here follows that file in GAIR-NLP's ToRL verl fork (unconfirmed
    to be identical).

Deliberate differences (the first two in the symbolic fallback of ``math_equal``, ``symbolic_equal``):
  * ``parse_latex`` is sympy's own ANTLR LaTeX parser, called without sympy's check that the ANTLR
    runtime is exactly 4.11 (OctoThinker pins 4.11.1; math-verify here needs 4.13). sympy here is 1.14,
    OctoThinker's eval pins 1.12. tests/process/test_octothinker_compat_env.py runs the rules in that pinned
    environment (installed apart from the venv) and finds the same verdicts.
    The parse is non-strict, as theirs: a parsable prefix is enough, so "The answer is $144$. I hope it is
    correct." is credited for a gold of 4 (1*4). Such verdicts are kept and flagged
    (:func:`judge_detailed`, ``Verdict.lenient``, ``lenient_correct`` in the eval summary).
  * ``parse_expr`` (Python ``eval`` underneath) only sees strings made of digits, letters, arithmetic
    operators and calls of a few named functions (sqrt, log, ...); anything else counts as "did not
    parse", as if both parsers had failed. Model output is never evaluated as code.
  * Time limits: OctoThinker gives each sample 15 s in a pebble process pool (0 on time-out); here the
    caller's worker time limit applies (megatron_octo.eval.grader, ``--grade-timeout``, 15 s by default).
math-verify is the installed version (OctoThinker's requirements do not pin it).

Gold answers: GSM8K and AMC23 golds are compared as the strings ``process_gsm8k_test``/``process_amc``
produce (commas removed); a MATH-style gold is turned into the list ``process_math_test`` would extract
from a solution whose only box is that answer (``strip_string`` applied, split at commas when the
question asks for a comma-separated list; the config names ``process_math_test``, which reads the gold
from the solution's boxes, so using the MATH500 ``answer`` field is unconfirmed); an OlympiadBench gold
is ``final_answer[0]``.

Everything here is a pure function of strings. The sympy and math-verify calls can run for a very
long time on adversarial input: call :func:`judge` through ``megatron_octo.eval.grader.grade_octothinker``,
which runs it in the time-limited worker processes.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import threading
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from megatron_octo.eval.prompts import rl_template_of

__all__ = [
    "RULES",
    "Rule",
    "correctness_rl_boxed",
    "eval_last_single_answer",
    "eval_math",
    "eval_olympiad_math",
    "extract_answer",
    "extract_boxed_answers",
    "extract_gsm_few_shot_cot_answer",
    "extract_math_answer",
    "extract_math_few_shot_cot_answer",
    "extract_olympiad_math_answer",
    "gold_for_rule",
    "hendrycks_strip_string",
    "is_correct",
    "is_equiv_rl",
    "judge",
    "judge_detailed",
    "load_parsers",
    "math_equal",
    "normalize_final_answer",
    "rule_for",
    "strip_string",
    "symbolic_equal",
]

Prediction = Union[str, list]


@dataclass(frozen=True)
class Rule:
    """One benchmark's extraction/equivalence pair, named as OctoThinker's config names it."""

    name: str
    extraction: str
    equivalence: str
    source: str


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("gsm", "extract_gsm_few_shot_cot_answer", "eval_last_single_answer",
             "eval/configs/en_math_cot_few_shot_test_configs.json: gsm8k-cot, amc-cot"),
        Rule("math", "extract_math_few_shot_cot_answer", "eval_math",
             "eval/configs/en_math_cot_few_shot_test_configs.json: math-cot"),
        Rule("olympiad", "extract_olympiad_math_answer", "eval_olympiad_math",
             "eval/configs/en_math_cot_few_shot_test_configs.json: olympiad-bench-cot"),
        Rule("rl_boxed", "math_verifier.boxed_pattern (last match)", "math_verifier.is_equiv",
             "rl/verl/utils/reward_score/math_verifier.py: correctness_score_default"),
    )
}


def rule_for(benchmark: str, protocol: str) -> str:
    """The OctoThinker rule for a benchmark evaluated with a prompt protocol.

    RL templates are graded as the RL validation grades them, whatever the set. Few-shot sets follow
    the config; sets the paper does not evaluate follow their prompt's rule (AIME24 like AMC23,
    minerva_math and college_math like MATH).
    """
    if rl_template_of(protocol) is not None:  # an RL template, or one after exemplars (`simple+4shot`)
        return "rl_boxed"
    if benchmark == "olympiadbench":
        return "olympiad"
    if protocol in ("gsm8k_8shot", "amc_0shot"):
        return "gsm"
    return "math"


# ---------------------------------------------------------------------------------------
# answer_extraction.py (DeepSeekMath, kept by OctoThinker)
# ---------------------------------------------------------------------------------------


def _fix_fracs(string: str, bare_frac_raises: bool = False) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{72} -> \frac{1}{72}; gives up (returns the input) on "\frac" + 1 char.
    # The Hendrycks copy in math_verifier.py indexes the first character unguarded, so a "\frac" at the
    # very end raises there (its caller falls back to plain string equality).
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if bare_frac_raises and not substr:
            raise IndexError("\\frac at the end of the answer")
        if substr[:1] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        new_str += ("{" + a + "}{" + b + "}" if b != "{" else "{" + a + "}" + b) + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    # "3/4" -> "\frac{3}{4}" only when both sides are canonical integers (or contain "sqrt").
    parts = string.split("/")
    if len(parts) != 2:
        return string
    a, b = parts
    try:
        a_val = a if "sqrt" in a else int(a)
        b_val = b if "sqrt" in b else int(b)
    except ValueError:
        return string
    if string != f"{a_val}/{b_val}":
        return string
    return "\\frac{" + str(a_val) + "}{" + str(b_val) + "}"


def _fix_sqrt(string: str) -> str:
    string = re.sub(r"\\sqrt(-?[0-9.a-zA-Z]+)", r"\\sqrt{\1}", string)
    return re.sub(r"\\sqrt\s+(\w+)$", r"\\sqrt{\1}", string)


def _fix_tan(string: str) -> str:
    string = re.sub(r"\\tan(-?[0-9.a-zA-Z]+)", r"\\tan{\1}", string)
    return re.sub(r"\\tan\s+(\w+)$", r"\\tan{\1}", string)


def strip_string(string) -> str:
    """DeepSeekMath's answer normalisation (``answer_extraction.strip_string``), step for step.

    Its quirks are kept because they decide verdicts: ``\\cdot`` is deleted ("2\\cdot3" becomes "23"),
    only a trailing ``\\text{...}`` is dropped as a unit, "j" becomes "i" when there is no "i",
    "27.0" becomes "27" but "2.50" stays, and a trailing comma, period or backslash goes.
    """
    string = str(string).strip().replace("\n", "").rstrip(".")
    string = string.replace("\\!", "")
    if string.startswith("\\text{") and string.endswith("}"):
        string = string.split("{", 1)[1][:-1]
    for frac in ("tfrac", "dfrac", "cfrac"):
        string = string.replace(frac, "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    unitless = re.sub(r"\\text\{.*?\}$", "", string).strip()
    if unitless and unitless != string:
        string = unitless
    string = string.replace("^{\\circ}", "").strip().replace("^\\circ", "").strip()
    string = re.sub(r"\{(c|m)?m\}(\^(2|3))?", "", string).strip()
    string = re.sub(r"p\.m\.$", "", string).strip()
    string = re.sub(r"(\d)\s*t$", r"\1", string).strip()
    string = string.replace("\\$", "").replace("$", "")
    string = string.replace("x\\in", "")
    string = string.replace("\\%", "%")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    string = string.replace("\\cdot", "")
    string = string.replace("infinity", "\\infty")
    if "\\infty" not in string:
        string = string.replace("inf", "\\infty")
    string = string.replace("+\\inity", "\\infty")
    string = string.replace("\\mathbf", "").replace("\\mathrm", "")
    string = re.sub(r"\\mbox\{.*?\}", "", string)
    if "j" in string and "i" not in string:
        string = string.replace("j", "i")
    string = re.sub(r"(\d+)\.0+([^\d])", r"\1\2", string)
    string = re.sub(r"(\d+)\.0+$", r"\1", string)
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    string = _fix_tan(_fix_sqrt(string)).replace(" ", "")
    string = _fix_a_slash_b(_fix_fracs(string))
    return re.sub(r"(\\|,|\.)+$", "", string)


def extract_boxed_answers(text: str) -> list[str]:
    """Every ``boxed{...}`` in order; braces counted naively (``\\{`` counts), an unclosed box is skipped,
    a "%" right after the closing brace is kept. ``\\boxed 5`` and ``\\fbox`` are not boxes here."""
    answers = []
    for piece in text.split("boxed{")[1:]:
        depth = 0
        for i, ch in enumerate(piece):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth < 0:
                    answers.append(piece[: i + 1] if piece[i + 1 : i + 2] == "%" else piece[:i])
                    break
    return answers


def _program_output(text: str) -> str:
    if "```output" not in text:
        return ""
    return text.split("```output")[-1].split("```")[0].strip()


def extract_answer(pred_str: str, exhaust: bool = False) -> Union[str, list[str]]:
    """DeepSeekMath ``extract_answer``: the first "final answer is $X$. I hope" if present, else every box,
    else the text after the last "he answer is", else a program output, else the last number.

    The branches are exclusive: a response containing "boxed" without any ``boxed{...}`` yields nothing,
    even if it also says "The answer is 5".
    """
    pred: list[str] = []
    if "final answer is $" in pred_str and "$. I hope" in pred_str:
        pred = [pred_str.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()]
    elif "boxed" in pred_str:
        pred = extract_boxed_answers(pred_str)
    elif "he answer is" in pred_str:
        pred = [pred_str.split("he answer is")[-1].strip()]
    else:
        program_output = _program_output(pred_str)
        if program_output:
            pred = [program_output]
        else:
            numbers = re.findall(r"-?\d*\.?\d+", pred_str.replace(",", ""))
            pred = numbers[-1:]
    cleaned = [_clean_extracted(p) for p in pred]
    if exhaust:
        return cleaned
    return cleaned[-1] if cleaned else ""


def _clean_extracted(answer: str) -> str:
    # First line only, leading ":" and trailing "." and "/" off, then strip_string.
    return strip_string(answer.strip().split("\n")[0].lstrip(":").rstrip(".").rstrip("/"))


_TEXT_AND_RE = re.compile(r"\\text\{\s*and\s*\}")


def _split_answers(question: str, extracted: Sequence[str]) -> list[str]:
    answers: list[str] = []
    for ans in extracted:
        if "separated by commas" in question and all(ch not in ans for ch in "()[]"):
            answers.extend(a.strip() for a in ans.split(","))
        elif _TEXT_AND_RE.search(ans):
            answers.extend(a.strip() for a in _TEXT_AND_RE.sub("[SEP]", ans).split("[SEP]"))
        else:
            answers.append(ans.strip())
    return answers


def extract_math_answer(question: str, reasoning: str) -> list[str]:
    """Every extracted answer; split at commas when the question asks for a comma-separated list (and the
    answer has no brackets), or at ``\\text{and}``."""
    return _split_answers(question, extract_answer(reasoning, exhaust=True))


def extract_math_few_shot_cot_answer(question: str, reasoning: str) -> list[str]:
    """MATH few-shot: the text before the first "Problem:" (the model starting a new exemplar), then
    :func:`extract_math_answer`."""
    if "Problem:" in reasoning:
        reasoning = reasoning.split("Problem:", 1)[0]
    return extract_math_answer(question, reasoning)


def extract_olympiad_math_answer(question: str, reasoning: str) -> list[str]:
    """OctoThinker's OlympiadBench rule: the text after the *last* "Final Answer:", without "The final
    answer is " and whatever follows "I hope it is correct.", newlines removed, wrapped in ``\\boxed{}``.
    With no "Final Answer:" the whole response is wrapped."""
    reasoning = reasoning.split("Final Answer:")[-1]
    reasoning = reasoning.replace("The final answer is ", "")
    reasoning = reasoning.split("I hope it is correct.")[0].replace("\n", "")
    return ["\\boxed{" + reasoning.strip() + "}"]


_GSM_NUMBER_RE = re.compile(r"-?\d+\.?\d*")


def extract_gsm_few_shot_cot_answer(question: str, reasoning: str) -> str:
    """GSM8K/AMC few-shot: the last ``-?\\d+\\.?\\d*`` before the first "Q: ", else "[invalid]".

    No clean-up at all: "1,234" ends in "234", "3/4" in "4", "5-3" in "-3"; "The answer is" is not looked for.
    """
    if "Q: " in reasoning:
        reasoning = reasoning.split("Q: ", 1)[0]
    numbers = _GSM_NUMBER_RE.findall(reasoning)
    return numbers[-1] if numbers else "[invalid]"


# ---------------------------------------------------------------------------------------
# eval_utils.py: math_equal and symbolic_equal (DeepSeekMath)
# ---------------------------------------------------------------------------------------


def _parse_digits(num) -> Optional[float]:
    num = str(num).replace(",", "")
    try:
        return float(num)
    except ValueError:
        if num.endswith("%"):
            num = num[:-1]
            if num.endswith("\\"):
                num = num[:-1]
            try:
                return float(num) / 100
            except ValueError:
                pass
    return None


_BRACKETED_RE = re.compile(r"(\(|\[).+(\)|\])")
_MATRIX_OPEN = ("\\begin{pmatrix}", "\\begin{bmatrix}")
_MATRIX_CLOSE = ("\\end{pmatrix}", "\\end{bmatrix}")


def _is_matrix(s: str) -> bool:
    return s.startswith(_MATRIX_OPEN) and s.endswith(_MATRIX_CLOSE)


def _matrices_equal(prediction: str, reference: str) -> bool:
    # Rows split at "\\", cells at "&"; the slice assumes pmatrix-length delimiters, as the original does.
    def rows(s: str) -> list[str]:
        body = s[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")]
        return [line.strip() for line in body.split("\\\\") if line.strip()]

    pred_rows, ref_rows = rows(prediction), rows(reference)
    if len(pred_rows) != len(ref_rows):
        return False
    for pred_row, ref_row in zip(pred_rows, ref_rows):
        pred_cells, ref_cells = pred_row.split("&"), ref_row.split("&")
        if len(pred_cells) != len(ref_cells):
            return False
        if not all(math_equal(p, r) for p, r in zip(pred_cells, ref_cells)):
            return False
    return True


def math_equal(prediction, reference, include_percentage: bool = True, is_close: bool = True) -> bool:
    """DeepSeekMath ``math_equal``: string equality; numbers (commas dropped, "%" read as /100) within an
    absolute 1e-3 of the reference, or of reference/100 or reference*100; bracketed tuples element-wise
    (same length, same order, after cutting the first and last character); matrices cell-wise; equations
    as lhs-(rhs) up to sign; "x = 5" against "5" when the left side has at most 2 characters; finally
    :func:`symbolic_equal`."""
    if str(prediction) == str(reference):
        return True
    pred_num, ref_num = _parse_digits(prediction), _parse_digits(reference)
    if pred_num is not None and ref_num is not None:
        candidates = [ref_num / 100, ref_num, ref_num * 100] if include_percentage else [ref_num]
        for item in candidates:
            if (math.isclose(item, pred_num, abs_tol=1e-3) if is_close else item == pred_num):
                return True
        return False
    if not prediction and prediction not in (0, False):
        return False
    reference, prediction = str(reference).strip(), str(prediction).strip()

    if _BRACKETED_RE.match(prediction) and _BRACKETED_RE.match(reference):
        pred_parts, ref_parts = prediction[1:-1].split(","), reference[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and all(
                math_equal(p, r, include_percentage, is_close) for p, r in zip(pred_parts, ref_parts)):
            return True
    if _is_matrix(prediction) and _is_matrix(reference) and _matrices_equal(prediction, reference):
        return True

    if prediction.count("=") == 1 and reference.count("=") == 1:
        pl, pr = prediction.split("=")
        rl, rr = reference.split("=")
        pred_zero, ref_zero = f"{pl.strip()} - ({pr.strip()})", f"{rl.strip()} - ({rr.strip()})"
        if symbolic_equal(pred_zero, ref_zero) or symbolic_equal(f"-({pred_zero})", ref_zero):
            return True
    elif prediction.count("=") == 1 and len(prediction.split("=")[0].strip()) <= 2 and "=" not in reference:
        if math_equal(prediction.split("=")[1], reference, include_percentage, is_close):
            return True
    elif reference.count("=") == 1 and len(reference.split("=")[0].strip()) <= 2 and "=" not in prediction:
        if math_equal(prediction, reference.split("=")[1], include_percentage, is_close):
            return True
    return symbolic_equal(prediction, reference)


_ANTLR = None


def _antlr_modules():
    """antlr4 and sympy's generated LaTeX parser, or (None, None) when they cannot be imported.

    Loaded on first use: sympy and the ANTLR runtime take seconds to import and only the symbolic
    fallback needs them.
    """
    global _ANTLR
    if _ANTLR is None:
        try:
            import antlr4
            from sympy.parsing.latex import _parse_latex_antlr as latex_antlr

            _ANTLR = (antlr4, latex_antlr) if latex_antlr.LaTeXParser is not None else (None, None)
        except ImportError:
            _ANTLR = (None, None)
    return _ANTLR


def load_parsers() -> None:
    """Import sympy's LaTeX parser, sympy and math-verify now rather than inside the first timed call."""
    _antlr_modules()
    _math_verify()


def _latex_relation(s: str):
    """sympy's ``parse_latex`` up to the grammar's ``relation``: (sympy expression, whether it read the
    whole string). Non-strict, as the original calls it: the grammar's top rule has no end-of-input, so a
    parsable prefix is enough ("1,2" parses as 1, "144.Ihopeitiscorrect" as 1*4); the second value is the
    check sympy's ``parse_latex(strict=True)`` makes. Called without sympy's refusal to run on an ANTLR
    runtime other than 4.11."""
    antlr4, latex_antlr = _antlr_modules()
    if latex_antlr is None:
        raise ImportError("sympy's ANTLR LaTeX parser is not available")
    s = s.strip()
    listener = latex_antlr.MathErrorListener(s)
    # The 4.11-generated lexer/parser print a version warning on construction; keep it off the eval output.
    with contextlib.redirect_stdout(io.StringIO()):
        lexer = latex_antlr.LaTeXLexer(antlr4.InputStream(s))
        lexer.removeErrorListeners()
        lexer.addErrorListener(listener)
        parser = latex_antlr.LaTeXParser(antlr4.CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    relation = parser.math().relation()
    whole = relation.start is not None and relation.stop is not None and (
        relation.start.start == 0 and relation.stop.stop == len(s) - 1)
    return latex_antlr.convert_relation(relation), whole


_EXPR_CHARS_RE = re.compile(r"[A-Za-z0-9\s+\-*/^().,%!]+")
_IDENT_BEFORE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*$")
_ATTRIBUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*\s*\.")
_SAFE_CALLS = frozenset({"sqrt", "cbrt", "root", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan",
                         "log", "ln", "exp", "Abs", "abs", "factorial", "binomial", "gcd", "lcm", "floor", "ceiling"})


def _parse_expr(s: str):
    """sympy ``parse_expr`` on strings that cannot run code: only digits, letters, arithmetic, commas and
    parentheses, no attribute access, and a call only of a named maths function. Anything else raises,
    which the caller treats as "did not parse"."""
    if len(s) > 500 or not _EXPR_CHARS_RE.fullmatch(s) or _ATTRIBUTE_RE.search(s):
        raise ValueError("not a plain arithmetic expression")
    for m in re.finditer(r"\(", s):
        before = s[: m.start()].rstrip()
        if not before or before[-1] in "+-*/^(,%":
            continue
        ident = _IDENT_BEFORE_RE.search(before)
        if ident is None or ident.group(0) not in _SAFE_CALLS:
            raise ValueError("call of something other than a maths function")
    from sympy.parsing.sympy_parser import parse_expr  # heavy import, needed only on this fallback path

    return parse_expr(s)


class _Leniency(threading.local):
    """Per-thread state of one :func:`judge_detailed` call: ``strict`` makes the LaTeX parse strict;
    ``hits`` counts symbolic equalities that held on a parse that did not read its whole string."""

    strict = False
    hits = 0


_LENIENCY = _Leniency()


def _symbolic(s: str):
    """(parsed, lenient): the original tries sympy's LaTeX parser, then ``parse_expr``, and keeps the string
    when both fail. ``lenient`` marks a LaTeX parse that left part of the string unread; under the strict
    re-check (:func:`judge_detailed`) such a parse counts as failed, as ``parse_latex(strict=True)`` raises."""
    try:
        expr, whole = _latex_relation(s)
        if whole or not _LENIENCY.strict:
            return expr, not whole
    except Exception:  # noqa: BLE001 - the original tries the next parser on any failure
        pass
    try:
        return _parse_expr(s), False
    except Exception:  # noqa: BLE001
        pass
    return s, False


def symbolic_equal(a: str, b: str) -> bool:
    """DeepSeekMath ``symbolic_equal``: parse both (LaTeX, then expression), equal if ``simplify(a - b) == 0``
    or ``N(a)`` and ``N(b)`` are within an absolute 1e-3."""
    (pa, lenient_a), (pb, lenient_b) = _symbolic(a), _symbolic(b)
    equal = _parsed_equal(pa, pb)
    if equal and (lenient_a or lenient_b):
        _LENIENCY.hits += 1
    return equal


def _parsed_equal(pa, pb) -> bool:
    from sympy import N, simplify  # heavy import, needed only on this fallback path

    if isinstance(pa, str) or isinstance(pb, str):
        # The original would retry the raw string through sympify (eval) here, which fails exactly as the
        # parse above did; skipping it keeps model output away from eval.
        return False
    try:
        if simplify(pa - pb) == 0:
            return True
    except Exception:  # noqa: BLE001 - sets, tuples, relations: "not shown equal"
        pass
    try:
        if math.isclose(N(pa), N(pb), abs_tol=1e-3):
            return True
    except Exception:  # noqa: BLE001
        pass
    return False


# ---------------------------------------------------------------------------------------
# eval_script.py: is_correct and the per-benchmark eval functions
# ---------------------------------------------------------------------------------------


def is_correct(pred: Prediction, ans: Prediction, prec: float = 1e-3) -> bool:
    """OctoThinker ``is_correct``. Lists: every predicted item must equal some gold item and every gold item
    some predicted item (not a one-to-one matching). Strings: split both at ``\\cup`` if both have one;
    else numbers within ``prec`` (commas dropped), identical strings, or :func:`math_equal`."""
    if isinstance(pred, list) and isinstance(ans, list):
        pred_matched, ans_matched = set(), set()
        for i, p in enumerate(pred):
            for j, a in enumerate(ans):
                if is_correct(p, a, prec):
                    pred_matched.add(i)
                    ans_matched.add(j)
        return len(pred_matched) == len(pred) and len(ans_matched) == len(ans)
    if isinstance(pred, list):
        return is_correct(pred, [ans], prec)
    if isinstance(ans, list):
        raise TypeError("is_correct: a single predicted answer against a list of gold answers")
    if "\\cup" in pred and "\\cup" in ans:
        return is_correct(pred.split("\\cup"), ans.split("\\cup"), prec)
    try:
        if abs(float(pred.replace(",", "")) - float(ans.replace(",", ""))) < prec:
            return True
    except ValueError:
        pass
    return bool(ans and pred == ans) or math_equal(pred, ans)


def _unique(items: Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def eval_math(pred: Prediction, ans: Prediction) -> bool:
    """OctoThinker ``eval_math``: with list gold, both lists are de-duplicated and only the *last*
    len(gold) predictions are judged (extra boxes earlier in the response do not count)."""
    if isinstance(pred, list) and isinstance(ans, list):
        ans = _unique(ans)
        pred = _unique(pred)[-len(ans):]
    return is_correct(pred, ans)


def eval_last_single_answer(pred: str, ans: str) -> bool:
    """OctoThinker ``eval_last_single_answer``: :func:`is_correct` on two strings."""
    if not isinstance(pred, str) or not isinstance(ans, str):
        raise TypeError(f"eval_last_single_answer needs two strings, got {type(pred).__name__}, {type(ans).__name__}")
    return is_correct(pred, ans)


def _math_verify():
    import math_verify  # heavy import (sympy, ANTLR), needed only by the math-verify based rules

    return math_verify.parse, math_verify.verify


def eval_olympiad_math(pred: list[str], ans: str, inner_timeout: Optional[int] = None) -> bool:
    """OctoThinker ``eval_olympiad_math``: math-verify with its default extraction on the boxed prediction
    and the gold string, ``verify(pred, gold)``; any error is "wrong"."""
    parse, verify = _math_verify()
    try:
        parsed_pred = parse(pred[0] if pred else "", parsing_timeout=inner_timeout)
        parsed_ans = parse(ans, parsing_timeout=inner_timeout)
        return bool(verify(parsed_pred, parsed_ans, timeout_seconds=inner_timeout))
    except Exception:  # noqa: BLE001 - the original's bare except
        return False


# ---------------------------------------------------------------------------------------
# math_verifier.py (RL reward and validation) with verl's normalize_final_answer
# ---------------------------------------------------------------------------------------

# Last \boxed{...} with up to three nested brace levels inside; group 1 ends with the closing brace.
BOXED_PATTERN = re.compile(
    r"\\boxed\{((?:[^{}]|\\{|\\}|(?:\{(?:[^{}]|\\{|\\}|(?:\{(?:[^{}]|\\{|\\}|(?:\{[^{}]*\}))*\}))*\}))*\})")

_NFA_SUBSTITUTIONS = (
    ("an ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""), ("mbox", "text"), (",\\text{and}", ","),
    ("\\text{and}", ","), ("\\text{m}", "\\text{}"), ("\\left", ""), ("\\right", ""), ("∶", ":"), ("，", ","),
    ("$", ""), ("\\approx", "="), ("\\simeq", "="), ("\\sim", "="), ("^\\prime", "'"), ("^{\\prime}", "'"),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^\\circ", ""), ("%", ""), ("\u221a", "\\sqrt"),
    ("\u221e", "\\infty"), ("\u222a", "\\cup"),
)
_NFA_REMOVED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "hours", "km", "units", "\\ldots", "sue", "points",
    "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges", "students",
    "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3",
    "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"', "\\dots",
)


def _strip_display_delimiters(s: str) -> str:
    if s[:2] in ("\\(", "\\["):
        s = s[2:]
    if s[-2:] in ("\\)", "\\]"):
        s = s[:-2]
    return s


def normalize_final_answer(final_answer: str) -> str:
    """verl ``reward_score/eval.py`` ``normalize_final_answer`` (Minerva's normalisation, edited by GAIR):
    spaces, "$", "%", \\left/\\right and a list of unit words removed; \\text/\\textbf/\\overline/\\boxed
    unwrapped; \\fracab and \\sqrta braced; "100,000" becomes "100000"."""
    final_answer = _strip_display_delimiters(final_answer.strip())
    for before, after in _NFA_SUBSTITUTIONS:
        final_answer = final_answer.replace(before, after)
    for expr in _NFA_REMOVED:
        final_answer = final_answer.replace(expr, "")
    final_answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", final_answer)
    final_answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", final_answer)
    final_answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", final_answer)
    final_answer = final_answer.replace("$", "")
    if final_answer.replace(",", "").isdigit():
        final_answer = final_answer.replace(",", "")
    return _strip_display_delimiters(final_answer).strip()


def _hendrycks_fix_a_slash_b(string: str) -> str:
    # Only a failed round trip is tolerated; a non-integer side raises ValueError (caught by is_equiv_rl).
    parts = string.split("/")
    if len(parts) != 2:
        return string
    a, b = int(parts[0]), int(parts[1])
    if string != f"{a}/{b}":
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _hendrycks_remove_right_units(string: str) -> str:
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) != 2:
            raise ValueError("more than one unit")
        return splits[0]
    return string


def _hendrycks_fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        new_string += ("\\sqrt{" + split[0] + "}" + split[1:]) if split[0] != "{" else "\\sqrt" + split
    return new_string


def hendrycks_strip_string(string: str) -> str:
    """The Hendrycks MATH normalisation in ``math_verifier.py`` (used only when math-verify raises)."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    string = _hendrycks_remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _hendrycks_fix_sqrt(string).replace(" ", "")
    string = _fix_fracs(string, bare_frac_raises=True)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _hendrycks_fix_a_slash_b(string)


def is_equiv_rl(str1: Optional[str], str2: Optional[str], inner_timeout: Optional[int] = None) -> bool:
    """``math_verifier.is_equiv``: equal ignoring case and outer spaces; else math-verify (default
    extraction) on both normalised answers, ``verify(pred, gold)``; only if that raises, equal after the
    Hendrycks normalisation."""
    if str1 is None and str2 is None:
        return True
    if str1 is None or str2 is None:
        return False
    if str1.strip().lower() == str2.strip().lower():
        return True
    parse, verify = _math_verify()
    # Reassigned step by step as in the original, so the fallback sees whatever the failing step left.
    a, b = str1, str2
    try:
        a = normalize_final_answer(a)
        b = normalize_final_answer(b)
        a = parse(a, parsing_timeout=inner_timeout)
        b = parse(b, parsing_timeout=inner_timeout)
        return bool(verify(a, b, timeout_seconds=inner_timeout))
    except Exception:  # noqa: BLE001 - the original falls through to string comparison
        pass
    try:
        return hendrycks_strip_string(a) == hendrycks_strip_string(b)
    except Exception:  # noqa: BLE001
        return a == b


def correctness_rl_boxed(response: str, gold: str, inner_timeout: Optional[int] = None) -> tuple[bool, Optional[str]]:
    """``correctness_score_default`` as a verdict: the last ``boxed_pattern`` match against the gold; no box
    (or a box nested deeper than the pattern allows) is wrong. Returns (correct, extracted)."""
    matches = BOXED_PATTERN.findall(response)
    if not matches:
        return False, None
    pred = matches[-1][:-1]
    return is_equiv_rl(pred, gold, inner_timeout), pred


# ---------------------------------------------------------------------------------------
# One entry point per sample
# ---------------------------------------------------------------------------------------


def gold_for_rule(rule: str, gold, question: str = "") -> Prediction:
    """The gold answer as OctoThinker's ``process_*`` function hands it to the equivalence check."""
    if rule == "olympiad":
        return str(gold[0]) if isinstance(gold, (list, tuple)) else str(gold)
    if isinstance(gold, (list, tuple)):
        gold = ", ".join(str(g) for g in gold)
    gold = str(gold)
    if rule == "gsm":
        return gold.replace(",", "")
    if rule == "math":
        # What process_math_test extracts from a solution boxing this answer, minus the box search itself,
        # whose naive brace count would lose golds with an unbalanced "\\left\\{ ... \\right.". A box holds
        # no "$...$"; college_math golds do, and strip_string would otherwise see "t$" where a response's
        # answer ends in "t" (it drops a "t" after a digit).
        if len(gold) >= 2 and gold.startswith("$") and gold.endswith("$"):
            gold = gold[1:-1]
        return _split_answers(question, [_clean_extracted(gold)])
    if rule == "rl_boxed":
        return gold
    raise ValueError(f"unknown OctoThinker rule {rule!r}; expected one of {sorted(RULES)}")


def judge(response: str, gold, rule: str, question: str = "",
          inner_timeout: Optional[int] = None) -> tuple[bool, Optional[Prediction]]:
    """(correct, extracted) for one response under one OctoThinker rule.

    ``extracted`` is what the equivalence check received: a string (gsm, rl_boxed), a list of strings
    (math), the ``\\boxed{...}``-wrapped final-answer text (olympiad), or None when nothing was found.
    ``question`` matters only for the MATH rule's "separated by commas" split.
    """
    target = gold_for_rule(rule, gold, question)
    if rule == "gsm":
        pred = extract_gsm_few_shot_cot_answer(question, response)
        return eval_last_single_answer(pred, target), (None if pred == "[invalid]" else pred)
    if rule == "math":
        preds = extract_math_few_shot_cot_answer(question, response)
        return eval_math(preds, target), (preds or None)
    if rule == "olympiad":
        preds = extract_olympiad_math_answer(question, response)
        return eval_olympiad_math(preds, target, inner_timeout), preds[0]
    return correctness_rl_boxed(response, target, inner_timeout)


def judge_detailed(response: str, gold, rule: str, question: str = "",
                   inner_timeout: Optional[int] = None) -> tuple[bool, Optional[Prediction], bool]:
    """:func:`judge` plus ``lenient``: True when the verdict is correct only through the non-strict LaTeX
    parse, i.e. the same rule with sympy's ``parse_latex(strict=True)`` in the symbolic fallback says wrong.

    "The answer is $144$. I hope it is correct." against a gold of 4 is such a verdict: the MATH rule
    extracts "144.Ihopeitiscorrect", whose parsable prefix reads as 1*4. OctoThinker's own environment
    credits it too, so the verdict stands; ``lenient`` only says which verdicts rest on such a parse.
    The strict re-check runs only for correct verdicts in which such a parse decided a symbolic equality.
    """
    _LENIENCY.hits, _LENIENCY.strict = 0, False
    correct, extracted = judge(response, gold, rule, question, inner_timeout)
    if not correct or not _LENIENCY.hits:
        return correct, extracted, False
    _LENIENCY.strict = True
    try:
        strict_correct, _ = judge(response, gold, rule, question, inner_timeout)
    finally:
        _LENIENCY.strict, _LENIENCY.hits = False, 0
    return correct, extracted, not strict_correct
