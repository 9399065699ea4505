#!/usr/bin/env bash
#SBATCH --job-name=octo-stable
#SBATCH --nodes=8
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
# OctoThinker stable stage for Llama-3.2-3B: 200B tokens at constant LR (recipes/octothinker/llama3.2-3b/
# stable.yaml), sized for 8 nodes x 8 H100. Checkpoints + TensorBoard: $OCTO_OUTPUT/stable.
#   sbatch launch_slurm/stable_200b.sh [a.b=c ...]      or      OCTO_NODES=16 bash launch_slurm/stable_200b.sh
# CPU (one small node, tiny recipe):  OCTO_PROFILE=cpu bash launch_slurm/stable_200b.sh
# Settings: see launch_slurm/common.sh and docs/launching.md.
OCTO_SCRIPT_NAME=stable_200b.sh OCTO_STAGE=stable OCTO_KIND=train OCTO_INIT_STAGE=
OCTO_PAPER_RECIPE=recipes/octothinker/llama3.2-3b/stable.yaml OCTO_CPU_RECIPE=recipes/tiny/stable.yaml
# Find launch_slurm/common.sh: $OCTO_ROOT, else this file's directory, else (sbatch runs a spooled copy of this
# file) the directory of the script Slurm recorded at submission, else $SLURM_SUBMIT_DIR/launch_slurm.
_l=${OCTO_ROOT:-$(dirname "${BASH_SOURCE[0]}")/..}/launch_slurm
[ -f "$_l/common.sh" ] || _l=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" \
  2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")" && [ -f common.sh ] && pwd || echo "${SLURM_SUBMIT_DIR:-.}/launch_slurm")
source "$_l/common.sh" || { echo "error: launch_slurm/common.sh not found: set OCTO_ROOT to the checkout" >&2; exit 2; }
octo_launch "$@"
