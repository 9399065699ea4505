#!/usr/bin/env bash
#SBATCH --job-name=octo-rl-grpo
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --mem=0
#SBATCH --exclusive
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# OctoThinker RL (GRPO on MATH8K) from a decay checkpoint, one branch per job:
#   OCTO_BRANCH=long sbatch launch_slurm/rl_grpo.sh [a.b=c ...]
# Starts from $OCTO_OUTPUT/decay_$OCTO_BRANCH, writes $OCTO_OUTPUT/rl_$OCTO_BRANCH.
# UNTESTED: written against `python -m megatron_octo.rl --config recipes/octothinker/llama3.2-3b/rl_grpo.yaml`,
# which does not exist in this checkout yet; the preflight refuses to start until it does.
# Settings: see launch_slurm/common.sh and docs/launching.md.
set -uo pipefail
OCTO_SCRIPT_NAME=rl_grpo.sh
OCTO_STAGE=rl_${OCTO_BRANCH:-long}
OCTO_KIND=rl
OCTO_PAPER_RECIPE=recipes/octothinker/llama3.2-3b/rl_grpo.yaml
OCTO_CPU_RECIPE=recipes/tiny/rl_grpo.yaml
OCTO_INIT_STAGE=decay_${OCTO_BRANCH:-long}
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
