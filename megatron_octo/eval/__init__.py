"""Evaluation: answer extraction, grading, prompt protocols, benchmark sets, pass@k.

Pure functions and dataclasses; the generation runner (megatron inference engine) builds on them.
See docs/evaluation.md.
"""
