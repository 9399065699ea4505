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
set -uo pipefail
OCTO_SCRIPT_NAME=eval.sh
OCTO_STAGE=eval
OCTO_KIND=eval
OCTO_PAPER_RECIPE=
OCTO_CPU_RECIPE=
OCTO_INIT_STAGE=
# Locate the checkout: OCTO_ROOT, else this file's directory (bash <script>, or a copy-free
# sbatch), else the path Slurm recorded at submission (sbatch runs a spooled copy of the script).
if [ -z "${OCTO_ROOT:-}" ]; then
  _d=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if [ ! -f "$_d/common.sh" ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    _c=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
    case "$_c" in /*) ;; *) _c=${SLURM_SUBMIT_DIR:-.}/$_c ;; esac
    _d=$(dirname "$_c")
    [ -f "$_d/common.sh" ] || _d=${SLURM_SUBMIT_DIR:-.}/launch_slurm
  fi
  OCTO_ROOT=$(cd "$_d/.." && pwd)
fi
[ -f "$OCTO_ROOT/launch_slurm/common.sh" ] || { echo "error: launch_slurm/common.sh not found under OCTO_ROOT=$OCTO_ROOT" >&2; exit 2; }
OCTO_SCRIPT=${OCTO_SCRIPT:-$OCTO_ROOT/launch_slurm/$OCTO_SCRIPT_NAME}
# shellcheck source=launch_slurm/common.sh
source "$OCTO_ROOT/launch_slurm/common.sh"
octo_launch "$@"
