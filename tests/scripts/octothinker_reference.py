"""OctoThinker's grading in OctoThinker's pinned environment (sympy 1.12, ANTLR runtime 4.11.1), for
tests/process/test_octothinker_compat_env.py and tests/reference/make_octothinker_golden.py. Started by
tests/octothinker_env.py as

    python -I -S tests/scripts/octothinker_reference.py ENV_DIR REQUEST.json RESULT.json

``-I -S``: no site-packages, no PYTHONPATH, no script directory; sys.path is the standard library plus
ENV_DIR (a ``pip install --target`` directory), so nothing of the project's venv (sympy 1.14, ANTLR 4.13,
torch, megatron_octo) can be imported by accident. The request names a mode:

  upstream  OctoThinker's own functions, from a checkout at ``src`` (its ``eval/`` harness and the verl
            fork's ``math_verifier.py``): extraction, ``eval_math``/``eval_last_single_answer``/
            ``eval_olympiad_math`` and ``compute_score``, each called as their harness calls it.
  port      megatron_octo/eval/octothinker_grader.py (the file alone, nothing else of the project) with
            the original's library entry points put back: sympy's own ``parse_latex``, whose check that the
            ANTLR runtime is 4.11 the port skips, and sympy's unguarded ``parse_expr`` (the inputs here are
            the tests' own). Verdicts and the ``lenient`` flag.

Each case is {"response", "gold", "rule", "question"}; the result file holds one {"correct", "extracted",
"lenient", "error"} per case, and the versions of the libraries that produced them.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import types


def _stub_package(name: str, path: str) -> None:
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module


def _load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _strip_dollars(gold: str) -> str:
    return gold[1:-1] if len(gold) >= 2 and gold.startswith("$") and gold.endswith("$") else gold


def upstream_judge(src: str):
    """OctoThinker's functions, prepared as their harness prepares them (see the module docstring)."""
    eval_root = os.path.join(src, "eval")
    rl_root = os.path.join(src, "rl")
    for path in (os.path.join(eval_root, "data_processing", "answer_extraction.py"),
                 os.path.join(eval_root, "eval", "eval_script.py"),
                 os.path.join(rl_root, "verl", "utils", "reward_score", "math_verifier.py"),
                 os.path.join(rl_root, "verl", "utils", "reward_score", "eval.py")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"OctoThinker checkout {src}: no {os.path.relpath(path, src)}")
    sys.path.insert(0, eval_root)  # their scripts run from eval/: "data_processing.*" and "eval.*"
    ae = importlib.import_module("data_processing.answer_extraction")
    es = importlib.import_module("eval.eval_script")
    # verl's package __init__ files import the trainer's dependencies (torch, ray); the reward needs only
    # reward_score/eval.py and math_verifier.py. eval.py imports jsonlines, pandas and tqdm at the top and
    # uses none of them in normalize_final_answer.
    for name, sub in (("verl", "verl"), ("verl.utils", "verl/utils"),
                      ("verl.utils.reward_score", "verl/utils/reward_score")):
        _stub_package(name, os.path.join(rl_root, sub))
    for name in ("jsonlines", "pandas", "tqdm"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.tqdm = lambda x=None, *a, **k: x
            sys.modules[name] = stub
    mv = importlib.import_module("verl.utils.reward_score.math_verifier")

    def judge(case):
        response, gold, rule, question = case["response"], case["gold"], case["rule"], case["question"]
        if rule == "gsm":  # process_gsm8k_test / process_amc: the answer string without commas
            pred = ae.extract_gsm_few_shot_cot_answer(question, response, "gsm8k")
            item = {"prediction": pred, "answer": gold.replace(",", "")}
            return es.eval_last_single_answer(item), (None if pred == "[invalid]" else pred)
        if rule == "math":  # process_math_test: the answers extracted from a solution boxing the gold
            preds = ae.extract_math_few_shot_cot_answer(question, response, "math")
            answer = ae.extract_math_answer(question, "\\boxed{" + _strip_dollars(gold) + "}", "math")
            return es.eval_math({"prediction": preds, "answer": answer}), (preds or None)
        if rule == "olympiad":
            preds = ae.extract_olympiad_math_answer(question, response, "olympiad")
            return es.eval_olympiad_math({"prediction": preds, "answer": gold}), preds[0]
        if rule == "rl_boxed":
            matches = mv.boxed_pattern.findall(response)
            return mv.compute_score(response, gold, "default") == 1.0, (matches[-1][:-1] if matches else None)
        raise ValueError(f"unknown rule {rule!r}")

    return judge


def port_judge(port: str):
    """The project's port, alone, on this environment's libraries, with the original's entry points."""
    # The port imports one name from megatron_octo.eval.prompts (used by rule_for, not by judge); a stub
    # keeps the rest of the project (torch, megatron) out.
    for name in ("megatron_octo", "megatron_octo.eval"):
        _stub_package(name, os.path.dirname(port))
    prompts = types.ModuleType("megatron_octo.eval.prompts")
    prompts.rl_template_of = lambda protocol: None
    sys.modules["megatron_octo.eval.prompts"] = prompts
    og = _load_file("octothinker_port", port)
    from sympy.parsing.latex import parse_latex  # sympy's entry point: refuses an ANTLR runtime other than 4.11
    from sympy.parsing.sympy_parser import parse_expr

    relation = og._latex_relation
    og._latex_relation = lambda s: (parse_latex(s), relation(s)[1])
    og._parse_expr = parse_expr

    def judge(case):
        correct, extracted, lenient = og.judge_detailed(case["response"], case["gold"], case["rule"],
                                                        case["question"])
        return correct, extracted, lenient

    return judge


def versions(env_dir: str) -> dict:
    out = {"python": sys.version.split()[0]}
    for dist, module in (("sympy", "sympy"), ("antlr4-python3-runtime", "antlr4"), ("math-verify", "math_verify"),
                         ("latex2sympy2_extended", "latex2sympy2_extended")):
        imported = importlib.import_module(module)
        where = os.path.dirname(os.path.dirname(os.path.abspath(imported.__file__)))
        if os.path.realpath(where) != os.path.realpath(env_dir):
            raise RuntimeError(f"{module} was imported from {where}, not from the pinned environment {env_dir}")
        out[dist] = importlib.metadata.version(dist)
    return out


def main() -> int:
    env_dir, request_path, result_path = sys.argv[1:4]
    sys.path.insert(0, env_dir)
    with open(request_path, encoding="utf-8") as f:
        request = json.load(f)
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    found = versions(env_dir)
    for dist, want in request.get("pins", {}).items():
        found[dist] = importlib.metadata.version(dist)  # sys.path: the standard library and env_dir only
        if found[dist] != want:
            raise RuntimeError(f"the pinned environment has {dist} {found[dist]}, not {want}")
    judge = upstream_judge(request["src"]) if request["mode"] == "upstream" else port_judge(request["port"])
    results = []
    for case in request["cases"]:
        try:
            verdict = judge(case)
            correct, extracted = bool(verdict[0]), verdict[1]
            lenient = bool(verdict[2]) if len(verdict) > 2 else None
            results.append({"correct": correct, "extracted": extracted, "lenient": lenient, "error": None})
        except Exception as exc:  # noqa: BLE001 - OctoThinker's harness counts an error as wrong
            results.append({"correct": False, "extracted": None, "lenient": None,
                            "error": f"{type(exc).__name__}: {exc}"})
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump({"versions": found, "results": results, "imported": sorted(sys.modules)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
