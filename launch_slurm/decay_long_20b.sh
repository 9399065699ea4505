#!/usr/bin/env bash
#SBATCH --job-name=octo-decay-long
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=96
#SBATCH --mem=0
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@600
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
# OctoThinker decay stage, long branch: 20B tokens from the stable checkpoint ($OCTO_INIT_FROM, default
# $OCTO_OUTPUT/stable), LR decayed to its floor (recipes/octothinker/llama3.2-3b/decay_long.yaml), sized for
# 2 nodes x 8 H100. The three branches only read the stable checkpoint and can run at the same time.
#   sbatch launch_slurm/decay_long_20b.sh [a.b=c ...]   or   sbatch --dependency=afterok:<stable job> ...
# CPU (one small node, tiny recipe):  OCTO_PROFILE=cpu bash launch_slurm/decay_long_20b.sh
# Settings: see launch_slurm/common.sh and docs/launching.md.
set -uo pipefail
OCTO_SCRIPT_NAME=decay_long_20b.sh
OCTO_STAGE=decay_long
OCTO_KIND=train
OCTO_PAPER_RECIPE=recipes/octothinker/llama3.2-3b/decay_long.yaml
OCTO_CPU_RECIPE=recipes/tiny/decay_long.yaml
OCTO_INIT_STAGE=stable
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
