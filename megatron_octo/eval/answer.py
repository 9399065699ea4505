"""Answer extraction from model output, and string normalisation of answers.

Pure string functions: no sympy, no math-verify, nothing that can hang on adversarial input
(every function here is linear or near-linear in the input length). The equivalence check
that can hang lives in :mod:`megatron_octo.eval.grader`, behind a time limit.

Extraction rules follow the harnesses the OctoThinker numbers come from:

* RL reward / zero-shot RL eval: the content of the **last** ``\\boxed{...}`` (OctoThinker's
  ``math_verifier.py``); braces are matched to any depth, ``\\boxed 5`` and ``\\fbox{}`` are
  accepted as in lm-evaluation-harness ``last_boxed_only_string``.
* Minerva few-shot (MATH500, OlympiadBench, minerva_math): "Final Answer: The final answer is
  X. I hope it is correct." (Lewkowycz et al. 2022), falling back to the last box, then
  "The answer is", as in the DeepSeekMath harness OctoThinker evaluates with.
* GSM8K / AMC few-shot ("Q:/A:"): cut at the next "Q: ", prefer the number after the last
  "The answer is", else the last number in the text.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

__all__ = [
    "ANSWER_STYLES",
    "count_boxed",
    "extract_answer",
    "extract_boxed_all",
    "extract_gsm8k_answer",
    "extract_minerva_answer",
    "extract_the_answer_is",
    "gsm8k_gold",
    "last_boxed",
    "last_number",
    "normalize_answer",
    "split_top_level",
    "strip_math_delimiters",
    "truncate_at_stop",
]

ANSWER_STYLES = ("boxed", "minerva", "gsm8k", "auto")

_BOX_TOKENS = ("\\boxed", "\\fbox")


def _match_braces(text: str, open_idx: int) -> Optional[int]:
    """Index of the brace closing the one at ``open_idx``; None if the text ends first.

    Backslash escapes are skipped, so ``\\{``/``\\}`` (set braces, ``\\left\\{ ... \\right.``
    in piecewise functions) never count; the reference harnesses count them, which breaks on
    unbalanced ``\\left\\{``.
    """
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _box_content_at(text: str, idx: int) -> Optional[str]:
    """Content of the box command starting at ``idx`` (``\\boxed{..}``, ``\\boxed 5``, ``\\fbox{..}``)."""
    tok = "\\boxed" if text.startswith("\\boxed", idx) else "\\fbox"
    j = idx + len(tok)
    if j < len(text) and text[j] == "{":
        end = _match_braces(text, j)
        return None if end is None else text[j + 1 : end]
    if j < len(text) and text[j] == " ":
        # "\boxed 5$" form: the argument runs to the closing "$" (lm-eval rule) or line end.
        rest = text[j + 1 :]
        arg = re.split(r"[$\n]", rest, maxsplit=1)[0].strip()
        arg = arg.rstrip(".")
        return arg or None
    return None


def _box_starts(text: str) -> list[int]:
    starts = []
    for tok in _BOX_TOKENS:
        i = text.find(tok)
        while i >= 0:
            # "\boxedfoo" is another macro, not a box.
            nxt = text[i + len(tok) : i + len(tok) + 1]
            if nxt in ("{", " "):
                starts.append(i)
            i = text.find(tok, i + 1)
    return sorted(starts)


def extract_boxed_all(text: str) -> list[str]:
    """Contents of every well-formed box, in order of appearance (nested boxes included)."""
    out = []
    for i in _box_starts(text):
        c = _box_content_at(text, i)
        if c is not None:
            out.append(c)
    return out


def last_boxed(text: str) -> Optional[str]:
    """Content of the last well-formed ``\\boxed{}``/``\\fbox{}``; None if there is none.

    A box whose closing brace is missing (response cut at the length limit) does not count,
    and an earlier complete box is *not* used instead: the reward must not credit a
    scratch-work box when the final one was truncated. Boxes nested inside the last box
    (``\\boxed{\\boxed{3}}``) resolve to the outer content, which normalisation then strips.
    """
    starts = _box_starts(text)
    if not starts:
        return None
    return _box_content_at(text, starts[-1])


def count_boxed(text: str) -> int:
    """Number of ``\\boxed`` occurrences, counted as the OctoThinker format penalty counts them
    (``solution_str.count("\\\\boxed")``), so the 2+-boxes rule matches the recipe exactly."""
    return text.count("\\boxed")


_MINERVA_RE = re.compile(r"Final Answer: The final answer is(.*?)\. I hope it is correct\.", re.DOTALL)


def extract_minerva_answer(text: str) -> Optional[str]:
    """X from "Final Answer: The final answer is X. I hope it is correct." (last occurrence).

    As in lm-eval ``get_unnormalized_answer``, the closing sentence is appended before
    matching so an output stopped right after "X." still yields X.
    """
    matches = _MINERVA_RE.findall(text + " I hope it is correct.")
    if not matches:
        return None
    ans = matches[-1].strip()
    return strip_math_delimiters(ans) or None


_ANSWER_IS_RE = re.compile(r"[Tt]he (?:final )?answer is[:\s]*")


def extract_the_answer_is(text: str) -> Optional[str]:
    """Text after the last "The answer is", up to the end of that line, trailing "." removed."""
    ms = list(_ANSWER_IS_RE.finditer(text))
    if not ms:
        return None
    rest = text[ms[-1].end() :].split("\n", 1)[0].strip()
    rest = re.sub(r"\.\s*$", "", rest).strip()
    return strip_math_delimiters(rest) or None


_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def last_number(text: str) -> Optional[str]:
    """Last number in the text, with thousands separators removed ("1,000" -> "1000")."""
    nums = _NUMBER_RE.findall(text)
    if not nums:
        return None
    n = nums[-1].rstrip(",").replace(",", "")
    return n or None


def extract_gsm8k_answer(text: str) -> Optional[str]:
    """GSM8K/AMC few-shot answer: number after the last "The answer is", else last number.

    The text is first cut at the next "Q: " in case generation ran past the stop string.
    """
    text = text.split("Q: ", 1)[0] if "Q: " in text else text
    tail = extract_the_answer_is(text)
    if tail is not None:
        n = last_number(tail) if not _looks_latex(tail) else None
        if n is not None:
            return n
        return tail
    return last_number(text)


def _looks_latex(s: str) -> bool:
    return "\\" in s or "^" in s or "{" in s


def extract_answer(text: str, style: str = "auto") -> Optional[str]:
    """Extract the final answer from a model response.

    style:
      * ``"boxed"``   -- last box only (RL reward and zero-shot RL evaluation).
      * ``"minerva"`` -- Minerva "Final Answer" sentence, else last box, else "The answer is".
      * ``"gsm8k"``   -- "The answer is N" / last number (GSM8K and AMC few-shot).
      * ``"auto"``    -- last box, else Minerva sentence, else "The answer is", else "#### N",
        else the last number. For free-form text where the protocol is unknown.
    Returns None when nothing answer-like is found.
    """
    if style == "boxed":
        return last_boxed(text)
    if style == "minerva":
        for f in (extract_minerva_answer, last_boxed, extract_the_answer_is):
            a = f(text)
            if a is not None:
                return a
        return None
    if style == "gsm8k":
        return extract_gsm8k_answer(text)
    if style == "auto":
        for f in (last_boxed, extract_minerva_answer, extract_the_answer_is):
            a = f(text)
            if a is not None:
                return a
        if "####" in text:
            return gsm8k_gold(text)
        return last_number(text)
    raise ValueError(f"unknown answer style {style!r}; expected one of {ANSWER_STYLES}")


def gsm8k_gold(answer_field: str) -> str:
    """Gold number from a GSM8K solution ("... #### 1,234" -> "1234")."""
    if "####" not in answer_field:
        raise ValueError(f"GSM8K answer has no '####' marker: {answer_field[-80:]!r}")
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def truncate_at_stop(text: str, stops: Iterable[str]) -> str:
    """Cut the text at the earliest stop string (inference engines may return text past it)."""
    cut = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


# ---------------------------------------------------------------------------------------
# Normalisation (string level). Used both as the cheap first equality test and as the
# fallback when math-verify cannot parse an answer.
# ---------------------------------------------------------------------------------------


def strip_math_delimiters(s: str) -> str:
    """Remove surrounding ``$``/``$$``/``\\(..\\)``/``\\[..\\]`` and whitespace."""
    s = s.strip()
    changed = True
    while changed and s:
        changed = False
        for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(a) + len(b) and s.startswith(a) and s.endswith(b):
                s = s[len(a) : len(s) - len(b)].strip()
                changed = True
    return s


# Units that appear after numeric answers in MATH/OlympiadBench/GSM8K answers. Only removed
# at the end of the answer and only after a number or a closing brace, so a variable that
# happens to share a unit's name inside an expression survives. Single letters (m, s, g) are
# removed only inside \text{}: "5 m" is more likely a product than "5 metres".
_UNIT_WORDS = (
    "square units|sq units|units|unit|degrees|degree|cm|mm|km|meters|meter|metres|metre|"
    "inches|inch|feet|foot|ft|miles|mile|mph|km/h|hours|hour|hrs|minutes|minute|mins|min|"
    "seconds|second|sec|days|day|weeks|week|years|year|dollars|dollar|cents|cent|pounds|pound|"
    "lbs|kg|ways|students|people|points|percent"
)
_WORD_UNIT_RE = re.compile(r"(?<=[\d}])\s*(?:" + _UNIT_WORDS + r")(?:\^\{?[23]\}?)?\s*$")
_TEXT_UNIT_RE = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\{[^{}]*\}(?:\^\{?[23]\}?)?\s*$")
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SHORT_LHS_RE = re.compile(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-zA-Z]\))?\s*=\s*(?=\S)")


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}; \frac1{72} -> \frac{1}{72} (Hendrycks MATH rule).
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    return s


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def _strip_outer_text(s: str) -> str:
    m = re.fullmatch(r"\\(?:text|textbf|mathrm|mbox)\{(.*)\}", s)
    if m and _match_braces(s, s.index("{")) == len(s) - 1:
        return m.group(1).strip()
    return s


def normalize_answer(ans: str) -> str:
    """Canonical string form of an answer, for exact comparison.

    Conservative on purpose: it must never make two different answers equal, only remove
    notation that carries no value (delimiters, ``\\left``, ``\\dfrac``, spacing macros,
    trailing units, degree marks, thousands separators, a leading ``x =``).
    """
    s = str(ans).strip()
    s = s.replace("\n", " ")
    s = strip_math_delimiters(s)
    # A whole-answer box, e.g. a gold written as "\boxed{5}".
    while s.startswith(_BOX_TOKENS):
        j = len("\\boxed") if s.startswith("\\boxed") else len("\\fbox")
        if j < len(s) and s[j] == "{" and _match_braces(s, j) == len(s) - 1:
            s = strip_math_delimiters(s[j + 1 : -1])
            continue
        break
    s = s.rstrip(".").strip()
    s = strip_math_delimiters(s)
    for a, b in (
        ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", " "), ("~", " "),
        ("\\left", ""), ("\\right", ""), ("\\bigl", ""), ("\\bigr", ""), ("\\Bigl", ""), ("\\Bigr", ""),
        ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"),
        ("\\displaystyle", ""), ("\\$", ""), ("\\%", "%"), ("\\mathbf", ""), ("\\boldsymbol", ""),
        ("^{\\circ}", ""), ("^\\circ", ""), ("°", ""), ("{,}", ","),
        ("\\le ", "\\leq "), ("\\ge ", "\\geq "), ("\\neq", "\\ne"),
        ("\\infinity", "\\infty"), ("infinity", "\\infty"),
    ):
        s = s.replace(a, b)
    s = s.replace("$", "")
    s = _strip_outer_text(s.strip())
    # Trailing units: "10 \text{ cm}", "5 dollars", "30 degrees".
    for _ in range(2):
        s2 = _TEXT_UNIT_RE.sub("", s).strip()
        s2 = _WORD_UNIT_RE.sub("", s2).strip()
        if s2 and s2 != s:
            s = s2
    if s.startswith("\\text{") and s.endswith("}"):
        s = _strip_outer_text(s)
    # "x = 5" -> "5" (a short variable on the left only; "f(x) = 2x" keeps its right side too).
    if s.count("=") == 1:
        s2 = _SHORT_LHS_RE.sub("", s)
        if s2 != s:
            s = s2
    if s.startswith("x \\in") or s.startswith("x\\in"):
        s = s.split("\\in", 1)[1]
    s = s.strip()
    if _THOUSANDS_RE.match(s.replace(" ", "")):
        s = s.replace(",", "")
    s = _fix_sqrt(_fix_fracs(s.replace(" ", "")))
    # Multiple-choice letters: "(C)", "\text{(C)}", "C)" -> "C".
    m = re.fullmatch(r"\(?([A-Ea-e])\)?", s)
    if m:
        s = m.group(1).upper()
    # Trailing zeros of decimals: "27.0" -> "27", "2.50" -> "2.5".
    if re.fullmatch(r"-?\d+\.\d+", s):
        s = s.rstrip("0").rstrip(".")
    if s.startswith("."):
        s = "0" + s
    if s.startswith("-."):
        s = "-0" + s[1:]
    return s


def split_top_level(s: str) -> list[str]:
    """Split at commas/semicolons that are outside every bracket.

    "(1,2), (3,4)" -> ["(1,2)", "(3,4)"]; "$69$,$84$" -> ["69", "84"]; "\\{1, 2\\}" -> ["1", "2"]
    (an outer set brace is removed first); "1,000" is not split (thousands separator);
    "x=1 \\text{ and } x=2" splits at the word "and".
    """
    s = strip_math_delimiters(s.strip().rstrip("."))
    s = re.sub(r"\$\s*,\s*\$", ",", s)  # "$a$,$b$"
    s = s.replace("$", "")
    s = re.sub(r"\\text\{\s*(?:and|or)\s*\}", ",", s)
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)
    st = s.strip()
    if st.startswith("\\{") and st.endswith("\\}"):
        st = st[2:-2]
    s = st
    if _THOUSANDS_RE.match(s.replace(" ", "")):
        return [s.replace(",", "")]
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c in ",;" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]
