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
# OctoThinker RL (GRPO on MATH8K) from a decay checkpoint, one branch per job (1 node x 8 H100):
#   OCTO_BRANCH=long sbatch launch_slurm/rl_grpo.sh [a.b=c ...]          (long | short | hybrid)
# Starts from $OCTO_OUTPUT/decay_$OCTO_BRANCH (or OCTO_INIT_FROM), writes $OCTO_OUTPUT/rl_$OCTO_BRANCH. Recipe:
# recipes/octothinker/llama3.2-3b/rl_grpo.yaml (the paper's GRPO settings, Long branch's response-length stairs),
# rl_grpo_hybrid.yaml for OCTO_BRANCH=hybrid; the released script's 256 x 16 batches:
#   OCTO_RECIPE=recipes/octothinker/llama3.2-3b/rl_grpo_256x16.yaml sbatch launch_slurm/rl_grpo.sh
# CPU (one small node, tiny recipe):  OCTO_PROFILE=cpu bash launch_slurm/rl_grpo.sh
# The GPU path is untested (no GPU here); the CPU profile runs on a real Slurm in tests/slurm.
# The RL trainer does not save on SIGUSR1 yet: a job reaching its time limit resumes from the last
# rl.save_interval checkpoint when resubmitted.
# Settings: see launch_slurm/common.sh and docs/launching.md.
OCTO_SCRIPT_NAME=rl_grpo.sh OCTO_STAGE=rl_${OCTO_BRANCH:-long} OCTO_KIND=rl OCTO_INIT_STAGE=decay_${OCTO_BRANCH:-long}
OCTO_PAPER_RECIPE=recipes/octothinker/llama3.2-3b/rl_grpo.yaml OCTO_CPU_RECIPE=recipes/tiny/rl_grpo.yaml
[ "${OCTO_BRANCH:-long}" = hybrid ] && OCTO_PAPER_RECIPE=recipes/octothinker/llama3.2-3b/rl_grpo_hybrid.yaml
# Find launch_slurm/common.sh: $OCTO_ROOT, else this file's directory, else (sbatch runs a spooled copy of this
# file) the directory of the script Slurm recorded at submission, else $SLURM_SUBMIT_DIR/launch_slurm.
_l=${OCTO_ROOT:-$(dirname "${BASH_SOURCE[0]}")/..}/launch_slurm
[ -f "$_l/common.sh" ] || _l=$(cd "${SLURM_SUBMIT_DIR:-.}" && cd "$(dirname "$(scontrol show job "${SLURM_JOB_ID:-0}" \
  2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")" && [ -f common.sh ] && pwd || echo "${SLURM_SUBMIT_DIR:-.}/launch_slurm")
source "$_l/common.sh" || { echo "error: launch_slurm/common.sh not found: set OCTO_ROOT to the checkout" >&2; exit 2; }
octo_launch "$@"
