#!/usr/bin/env bash
#SBATCH --job-name=octo-eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --mem=0
#SBATCH --exclusive
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# Evaluate a checkpoint on the math benchmarks (python -m megatron_octo.eval; few-shot base protocol
# by default). OCTO_CHECKPOINT (default $OCTO_OUTPUT/$OCTO_EVAL_STAGE, stage default decay_long),
# OCTO_BENCHMARKS (default gsm8k,math500,olympiadbench,amc23), OCTO_TP / OCTO_PP (world size = tasks x
# OCTO_NPROC_PER_TASK, default the GPUs per node), OCTO_EVAL_ARGS and trailing arguments go to the runner:
#   OCTO_CHECKPOINT=runs/octothinker-3b/decay_short sbatch launch_slurm/eval.sh --limit 100
#   OCTO_EVAL_ARGS="--protocol rl" OCTO_EVAL_STAGE=rl_long bash launch_slurm/eval.sh
# Results: <checkpoint>/eval/iter_XXXXXXX/ (summary.json, results.md, TensorBoard) unless --out is given.
# Settings: see launch_slurm/common.sh and docs/launching.md.
OCTO_SCRIPT_NAME=eval.sh OCTO_STAGE=eval OCTO_KIND=eval OCTO_INIT_STAGE=
OCTO_PAPER_RECIPE= OCTO_CPU_RECIPE=
# Find launch_slurm/common.sh: $OCTO_ROOT, else this file's directory, else (sbatch runs a spooled copy of this
# file) the directory of the script Slurm recorded at submission, else $SLURM_SUBMIT_DIR/launch_slurm.
_l=${OCTO_ROOT:-$(dirname "${BASH_SOURCE[0]}")/..}/launch_slurm
[ -f "$_l/common.sh" ] || _l=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" \
  2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")" && [ -f common.sh ] && pwd || echo "${SLURM_SUBMIT_DIR:-.}/launch_slurm")
source "$_l/common.sh" || { echo "error: launch_slurm/common.sh not found: set OCTO_ROOT to the checkout" >&2; exit 2; }
octo_launch "$@"
