#!/usr/bin/env bash
#SBATCH --job-name=octo-decay-hybrid
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
# OctoThinker decay stage, hybrid branch: 20B tokens from the stable checkpoint ($OCTO_INIT_FROM, default
# $OCTO_OUTPUT/stable), LR decayed to its floor (recipes/octothinker/llama3.2-3b/decay_hybrid.yaml), sized for
# 2 nodes x 8 H100. The three branches only read the stable checkpoint and can run at the same time.
#   sbatch launch_slurm/decay_hybrid_20b.sh [a.b=c ...]   or   sbatch --dependency=afterok:<stable job> ...
# CPU (one small node, tiny recipe):  OCTO_PROFILE=cpu bash launch_slurm/decay_hybrid_20b.sh
# Settings: see launch_slurm/common.sh and docs/launching.md.
OCTO_SCRIPT_NAME=decay_hybrid_20b.sh OCTO_STAGE=decay_hybrid OCTO_KIND=train OCTO_INIT_STAGE=stable
OCTO_PAPER_RECIPE=recipes/octothinker/llama3.2-3b/decay_hybrid.yaml OCTO_CPU_RECIPE=recipes/tiny/decay_hybrid.yaml
# Find launch_slurm/common.sh: $OCTO_ROOT, else this file's directory, else (sbatch runs a spooled copy of this
# file) the directory of the script Slurm recorded at submission, else $SLURM_SUBMIT_DIR/launch_slurm.
_l=${OCTO_ROOT:-$(dirname "${BASH_SOURCE[0]}")/..}/launch_slurm
[ -f "$_l/common.sh" ] || _l=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" \
  2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")" && [ -f common.sh ] && pwd || echo "${SLURM_SUBMIT_DIR:-.}/launch_slurm")
source "$_l/common.sh" || { echo "error: launch_slurm/common.sh not found: set OCTO_ROOT to the checkout" >&2; exit 2; }
octo_launch "$@"
