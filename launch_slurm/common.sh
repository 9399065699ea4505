# shellcheck shell=bash
# Shared body of the launch_slurm/*.sh scripts; sourced, never run. See docs/launching.md.
#
# Two ways to start a stage script:
#   sbatch [sbatch options] launch_slurm/<stage>.sh [a.b=c ...]   # #SBATCH defaults, options override them
#   bash launch_slurm/<stage>.sh [a.b=c ...]                      # checks the inputs, then sbatch's itself
#                                                                 # with the OCTO_* settings below
# Inside the allocation the script checks the inputs again, then `srun` starts one torchrun agent per
# Slurm task (c10d rendezvous on the first node of the allocation); trailing a.b=c arguments are
# config overrides.
#
# Environment (all optional):
#   OCTO_PROFILE        gpu (default) | cpu: cpu = the tiny CPU recipes and a small-node allocation
#   OCTO_RECIPE         recipe YAML (default: the stage's paper recipe, or its tiny recipe with cpu)
#   OCTO_OVERRIDES      extra config overrides "a.b=c x.y=z" (before the command-line ones)
#   OCTO_OUTPUT         output root (default runs/octothinker-3b, cpu: runs/slurm-cpu); a stage writes
#                       checkpoints + TensorBoard to $OCTO_OUTPUT/<stage>, logs to $OCTO_OUTPUT/logs/<job>-<id>
#   OCTO_INIT_FROM      decay stages: the stable checkpoint (default $OCTO_OUTPUT/stable)
#   OCTO_DATA           cpu profile: directory holding mixture.yaml (default $OCTO_OUTPUT/data)
#   OCTO_NPROC_PER_TASK processes per Slurm task (default: GPUs per node / tasks per node; 1 without GPUs)
#   OCTO_NODES OCTO_GPUS_PER_NODE OCTO_TASKS_PER_NODE OCTO_CPUS_PER_TASK OCTO_TIME OCTO_PARTITION
#   OCTO_ACCOUNT OCTO_SIGNAL(seconds before the time limit) OCTO_SBATCH_ARGS
#                       `bash <script>` only: turned into sbatch options (with sbatch itself, pass options)
#   OCTO_WAIT=1         `bash <script>` only: sbatch --wait
#   OCTO_REQUEUE        1 (default): requeue the job when the trainer saved after a signal (exit 75)
#   OCTO_SIGNAL_REPEAT  seconds between repeated stop requests to the workers (default 10)
#   OCTO_TASK_EXIT_WAIT seconds the other tasks get once one has exited (default 120)
#   OCTO_RDZV_PORT      c10d rendezvous port (default 29400 + job id % 1000 * 10 + restart % 10)
#   OCTO_PYTHON         interpreter (default $OCTO_ROOT/.venv/bin/python, else python3)
#   OCTO_CONTAINER      run the workers in this container image (pyxis/enroot: srun --container-image);
#                       build it from docker/Dockerfile. The checkout and OCTO_OUTPUT are mounted at the same
#                       paths; the preflight still runs on the host with OCTO_PYTHON (no GPU packages needed)
#   OCTO_CONTAINER_MOUNTS extra pyxis mounts "src:dst[,src2:dst2]" (data, tokenizers, checkpoints elsewhere)
#   OCTO_CONTAINER_PYTHON interpreter inside the container (default python)
#   OCTO_DRY_RUN=1      print what would be submitted / started and exit 0
#
# Exit codes: 0 done; 2 bad input (nothing submitted or started); 75 saved after SIGUSR1/SIGTERM
# and requeued; anything else is the failing task's exit code.

set -uo pipefail
OCTO_EXIT_BAD_INPUT=2
OCTO_EXIT_SIGNALLED=75
# The checkout: OCTO_ROOT, else the directory above this file (the stage scripts locate this file).
OCTO_ROOT=${OCTO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

octo_log() { echo "[launch_slurm $(date +%H:%M:%S)] $*"; }
octo_die() { echo "[launch_slurm] error: $*" >&2; exit "$OCTO_EXIT_BAD_INPUT"; }

# ---- settings -----------------------------------------------------------------------------------
octo_settings() {
  OCTO_ROOT=$(cd "$OCTO_ROOT" && pwd) || octo_die "OCTO_ROOT=$OCTO_ROOT is not a directory"
  [ -d "$OCTO_ROOT/megatron_octo" ] || octo_die "OCTO_ROOT=$OCTO_ROOT is not a megatron-octo checkout"
  export OCTO_ROOT
  cd "$OCTO_ROOT" || exit 1
  if [ -z "${OCTO_PYTHON:-}" ]; then
    if [ -x "$OCTO_ROOT/.venv/bin/python" ]; then OCTO_PYTHON=$OCTO_ROOT/.venv/bin/python; else OCTO_PYTHON=python3; fi
  fi
  export OCTO_PYTHON
  OCTO_PROFILE=${OCTO_PROFILE:-gpu}
  case "$OCTO_PROFILE" in
    gpu) OCTO_RECIPE=${OCTO_RECIPE:-${OCTO_PAPER_RECIPE:-}}; OCTO_OUTPUT=${OCTO_OUTPUT:-runs/octothinker-3b} ;;
    cpu) OCTO_RECIPE=${OCTO_RECIPE:-${OCTO_CPU_RECIPE:-}}; OCTO_OUTPUT=${OCTO_OUTPUT:-runs/slurm-cpu} ;;
    *) octo_die "OCTO_PROFILE=$OCTO_PROFILE: expected gpu or cpu" ;;
  esac
  mkdir -p "$OCTO_OUTPUT" || octo_die "cannot create OCTO_OUTPUT=$OCTO_OUTPUT"
  OCTO_OUTPUT=$(cd "$OCTO_OUTPUT" && pwd)
  export OCTO_OUTPUT OCTO_PROFILE OCTO_RECIPE
  if [ "$OCTO_KIND" != eval ]; then
    [ -n "$OCTO_RECIPE" ] || octo_die "no recipe: set OCTO_RECIPE"
    [ -f "$OCTO_RECIPE" ] || octo_die "recipe file not found: $OCTO_RECIPE (OCTO_RECIPE)"
  fi
}

# Config overrides every training stage gets, then OCTO_OVERRIDES, then the command line.
octo_overrides() {
  OCTO_ARGS=("checkpoint.save=$OCTO_OUTPUT/$OCTO_STAGE")
  if [ -n "${OCTO_INIT_STAGE:-}" ]; then
    OCTO_ARGS+=("checkpoint.init_from=${OCTO_INIT_FROM:-$OCTO_OUTPUT/$OCTO_INIT_STAGE}")
  fi
  if [ "$OCTO_PROFILE" = cpu ] && [ "$OCTO_KIND" = train ]; then
    local mixture=${OCTO_DATA:-$OCTO_OUTPUT/data}/mixture.yaml
    [ -f "$mixture" ] || octo_die "cpu profile: data mixture not found: $mixture (create it with:" \
      "$OCTO_PYTHON -m tokenization.build_demo_data --out ${OCTO_DATA:-$OCTO_OUTPUT/data}, or set OCTO_DATA)"
    OCTO_ARGS+=("data.mixture=$mixture")
  fi
  # shellcheck disable=SC2206
  local extra=(${OCTO_OVERRIDES:-})
  OCTO_ARGS+=("${extra[@]}" "$@")
}

# The first value of an #SBATCH option in the stage script (for `bash <script>` sizing).
octo_sbatch_default() {
  sed -n "s/^#SBATCH --$1=\([^ ]*\).*/\1/p" "$OCTO_SCRIPT" | head -1
}

# ---- preflight: the same checks as the trainer, before anything is submitted or started -------
octo_preflight() {  # $1 world size, $2 gpu yes|no|auto
  local world=$1 gpu=$2
  case "$OCTO_KIND" in
    train)
      "$OCTO_PYTHON" "$OCTO_ROOT/launch_slurm/preflight.py" train --world-size "$world" --gpu "$gpu" \
        --config "$OCTO_RECIPE" "${OCTO_ARGS[@]}" || exit "$OCTO_EXIT_BAD_INPUT" ;;
    rl)
      "$OCTO_PYTHON" "$OCTO_ROOT/launch_slurm/preflight.py" rl --world-size "$world" --gpu "$gpu" \
        --config "$OCTO_RECIPE" "${OCTO_ARGS[@]}" || exit "$OCTO_EXIT_BAD_INPUT" ;;
    eval)
      # shellcheck disable=SC2086
      "$OCTO_PYTHON" "$OCTO_ROOT/launch_slurm/preflight.py" eval --checkpoint "$OCTO_CHECKPOINT" \
        --benchmarks "$OCTO_BENCHMARKS" --tp "${OCTO_TP:-1}" --pp "${OCTO_PP:-1}" --world-size "$world" \
        || exit "$OCTO_EXIT_BAD_INPUT" ;;
  esac
}

# The program each worker runs (after torchrun's own arguments).
octo_program() {
  case "$OCTO_KIND" in
    train) OCTO_PROGRAM=(-m megatron_octo.train --config "$OCTO_RECIPE" "${OCTO_ARGS[@]}") ;;
    rl)    OCTO_PROGRAM=(-m megatron_octo.rl --config "$OCTO_RECIPE" "${OCTO_ARGS[@]}") ;;
    eval)
      # shellcheck disable=SC2206
      local extra=(${OCTO_EVAL_ARGS:-})
      OCTO_PROGRAM=(-m megatron_octo.eval --checkpoint "$OCTO_CHECKPOINT" --benchmarks "$OCTO_BENCHMARKS"
                    --tp "${OCTO_TP:-1}" --pp "${OCTO_PP:-1}" "${extra[@]}" "$@") ;;
  esac
}

# ---- `bash <script>`: check, then sbatch this script ----------------------------------------------
octo_submit() {
  local nodes=${OCTO_NODES:-} gpus=${OCTO_GPUS_PER_NODE:-} tpn=${OCTO_TASKS_PER_NODE:-} cpt=${OCTO_CPUS_PER_TASK:-}
  local time=${OCTO_TIME:-}
  if [ "$OCTO_PROFILE" = cpu ]; then
    nodes=${nodes:-1}; gpus=${gpus:-0}; tpn=${tpn:-2}; cpt=${cpt:-1}; time=${time:-60}
  fi
  local opts=()
  [ -n "$nodes" ] && opts+=("--nodes=$nodes")
  [ -n "$gpus" ] && opts+=("--gpus-per-node=$gpus")
  [ -n "$tpn" ] && opts+=("--ntasks-per-node=$tpn")
  [ -n "$cpt" ] && opts+=("--cpus-per-task=$cpt")
  [ -n "$time" ] && opts+=("--time=$time")
  [ -n "${OCTO_PARTITION:-}" ] && opts+=("--partition=$OCTO_PARTITION")
  [ -n "${OCTO_ACCOUNT:-}" ] && opts+=("--account=$OCTO_ACCOUNT")
  [ -n "${OCTO_SIGNAL:-}" ] && opts+=("--signal=B:USR1@$OCTO_SIGNAL")
  [ "${OCTO_WAIT:-0}" = 1 ] && opts+=("--wait")
  # shellcheck disable=SC2206
  opts+=(${OCTO_SBATCH_ARGS:-})
  nodes=${nodes:-$(octo_sbatch_default nodes)}; nodes=${nodes:-1}
  gpus=${gpus:-$(octo_sbatch_default gpus-per-node)}; gpus=${gpus:-0}
  tpn=${tpn:-$(octo_sbatch_default ntasks-per-node)}; tpn=${tpn:-1}
  local nproc=${OCTO_NPROC_PER_TASK:-}
  if [ -z "$nproc" ]; then if [ "$gpus" -gt 0 ]; then nproc=$((gpus / tpn)); else nproc=1; fi; fi
  local world=$((nodes * tpn * nproc)) gpu=no
  [ "$gpus" -gt 0 ] && gpu=yes
  octo_preflight "$world" "$gpu"
  export OCTO_SUBMITTED_BY_SCRIPT=1
  if [ "${OCTO_DRY_RUN:-0}" = 1 ]; then
    local words; printf -v words ' %q' "${opts[@]}" "$OCTO_SCRIPT" "${OCTO_CLI_ARGS[@]}"  # shell-quoted
    echo "sbatch$words"
    return 0
  fi
  command -v sbatch >/dev/null || octo_die "sbatch not found: run this on a Slurm login node"
  octo_log "submitting $OCTO_SCRIPT (world size $world)"
  sbatch "${opts[@]}" "$OCTO_SCRIPT" "${OCTO_CLI_ARGS[@]}"
}

# pyxis options for OCTO_CONTAINER: the checkout and the output root at the same paths inside (the stop
# file, logs and checkpoints live under OCTO_OUTPUT), plus OCTO_CONTAINER_MOUNTS.
octo_container_flags() {
  local mounts="$OCTO_ROOT:$OCTO_ROOT"
  case "$OCTO_OUTPUT/" in "$OCTO_ROOT"/*) ;; *) mounts+=",$OCTO_OUTPUT:$OCTO_OUTPUT" ;; esac
  [ -n "${OCTO_CONTAINER_MOUNTS:-}" ] && mounts+=",$OCTO_CONTAINER_MOUNTS"
  OCTO_CONTAINER_FLAGS=(--container-image="$OCTO_CONTAINER" --container-mounts="$mounts" --container-workdir="$OCTO_ROOT")
}

octo_on_usr1() {
  [ "$OCTO_SIGNALLED" = USR1 ] && return 0
  OCTO_SIGNALLED=USR1
  octo_log "got SIGUSR1: asking the trainers to save and stop ($OCTO_STOP_FILE)"
  touch "$OCTO_STOP_FILE"
}

# ---- inside the allocation ------------------------------------------------------------------------
octo_run_in_job() {
  local restart=${SLURM_RESTART_COUNT:-0}
  local ntasks=${SLURM_NTASKS:-1}
  local gpus_here=${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}
  gpus_here=${gpus_here##*:}
  [[ "$gpus_here" =~ ^[0-9]+$ ]] || gpus_here=0
  local tpn=${SLURM_NTASKS_PER_NODE:-1}; tpn=${tpn%%(*}
  [[ "$tpn" =~ ^[0-9]+$ ]] || tpn=1
  local nproc=${OCTO_NPROC_PER_TASK:-}
  if [ -z "$nproc" ]; then if [ "$gpus_here" -gt 0 ]; then nproc=$((gpus_here / tpn)); else nproc=1; fi; fi
  [ "$nproc" -ge 1 ] || octo_die "OCTO_NPROC_PER_TASK resolved to $nproc"
  local world=$((ntasks * nproc))
  local log_dir=$OCTO_OUTPUT/logs/${SLURM_JOB_NAME:-job}-$SLURM_JOB_ID
  mkdir -p "$log_dir"
  local head
  head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -1)
  local port=${OCTO_RDZV_PORT:-$((29400 + (SLURM_JOB_ID % 1000) * 10 + restart % 10))}
  octo_log "job $SLURM_JOB_ID restart $restart: $ntasks task(s) x $nproc process(es) on $SLURM_JOB_NODELIST," \
           "rendezvous $head:$port; logs $log_dir; output $OCTO_RESULTS"
  octo_preflight "$world" auto
  octo_program "$@"
  local omp=$(( ${SLURM_CPUS_PER_TASK:-1} / nproc )); [ "$omp" -ge 1 ] || omp=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$omp}
  export PYTHONUNBUFFERED=1
  export OCTO_STOP_FILE=$log_dir/stop.restart$restart
  rm -f "$OCTO_STOP_FILE"
  # --wait: once one task has exited the others get OCTO_TASK_EXIT_WAIT s (they have all saved by then
  # after a signal; after a crash elsewhere they are stopped instead of hanging in a collective).
  local python=$OCTO_PYTHON container=()
  if [ -n "${OCTO_CONTAINER:-}" ]; then
    octo_container_flags; container=("${OCTO_CONTAINER_FLAGS[@]}"); python=${OCTO_CONTAINER_PYTHON:-python}
  fi
  local cmd=(srun --kill-on-bad-exit=0 --wait="${OCTO_TASK_EXIT_WAIT:-120}" --ntasks="$ntasks" --chdir="$OCTO_ROOT"
             --output="$log_dir/restart${restart}_task%t.log" "${container[@]}"
             "$python" "$OCTO_ROOT/launch_slurm/node_launch.py"
             --nnodes="$ntasks" --nproc-per-node="$nproc" --max-restarts=0
             --rdzv-backend=c10d --rdzv-endpoint="$head:$port" --rdzv-id="$SLURM_JOB_ID-r$restart"
             "${OCTO_PROGRAM[@]}")
  if [ "${OCTO_DRY_RUN:-0}" = 1 ]; then echo "${cmd[*]}"; return 0; fi

  # Preemption: Slurm sends --signal=B:USR1@N to this shell only. The shell creates a stop file on
  # the shared filesystem; node_launch.py on every node then signals its own workers (repeating until
  # they exit), which save and exit 75. Signalling the whole step instead (scancel --signal) would
  # also hit the checkpoint writer processes. SIGTERM (scancel, preemption, scontrol requeue) reaches
  # the tasks from Slurm directly; this shell only notes it.
  OCTO_SIGNALLED=""
  trap 'octo_on_usr1' USR1
  trap 'OCTO_SIGNALLED=TERM; octo_log "got SIGTERM (cancelled, preempted or requeued)"' TERM
  "${cmd[@]}" &
  local pid=$! rc
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
  wait "$pid"; rc=$?
  trap - USR1 TERM
  if [ "$rc" = 0 ]; then
    octo_log "done: $OCTO_STAGE finished (exit 0); results in $OCTO_RESULTS"
    return 0
  fi
  if [ "$rc" = "$OCTO_EXIT_SIGNALLED" ]; then
    octo_log "the trainers saved a checkpoint after a signal (exit 75)"
    if [ "${OCTO_REQUEUE:-1}" = 1 ]; then
      octo_log "requeueing job $SLURM_JOB_ID: the next start resumes from the latest checkpoint"
      scontrol requeue "$SLURM_JOB_ID" || octo_log "scontrol requeue failed: resubmit to resume"
    fi
    exit "$OCTO_EXIT_SIGNALLED"
  fi
  octo_log "failed with exit code $rc${OCTO_SIGNALLED:+ (after SIG$OCTO_SIGNALLED)}; last lines of the task logs:"
  local f
  for f in "$log_dir"/restart"${restart}"_task*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
  done
  exit "$rc"
}

# ---- one task of a step someone else started (e.g. nemo-run's sbatch: srun ... bash <script>) ------
# Runs this task's torchrun agent directly; rendezvous over the step's tasks. No requeue here: the
# caller's batch script owns the job.
octo_run_in_step() {
  local ntasks=$SLURM_STEP_NUM_TASKS nproc=${OCTO_NPROC_PER_TASK:-}
  local gpus_here=${SLURM_GPUS_ON_NODE:-0}; [[ "$gpus_here" =~ ^[0-9]+$ ]] || gpus_here=0
  if [ -z "$nproc" ]; then if [ "$gpus_here" -gt 0 ]; then nproc=$gpus_here; else nproc=1; fi; fi
  local head port=${OCTO_RDZV_PORT:-$((29400 + (SLURM_JOB_ID % 1000) * 10 + ${SLURM_RESTART_COUNT:-0} % 10))}
  head=$(scontrol show hostnames "${SLURM_STEP_NODELIST:-$SLURM_JOB_NODELIST}" | head -1)
  if [ "${SLURM_PROCID:-0}" = 0 ]; then octo_preflight "$((ntasks * nproc))" auto; fi
  octo_program "$@"
  local cmd=("$OCTO_PYTHON" "$OCTO_ROOT/launch_slurm/node_launch.py" --nnodes="$ntasks" --nproc-per-node="$nproc"
             --max-restarts=0 --rdzv-backend=c10d --rdzv-endpoint="$head:$port" --rdzv-id="$SLURM_JOB_ID-s$SLURM_STEP_ID"
             "${OCTO_PROGRAM[@]}")
  if [ "${OCTO_DRY_RUN:-0}" = 1 ]; then echo "${cmd[*]}"; return 0; fi
  exec "${cmd[@]}"
}

# ---- entry point for the stage scripts --------------------------------------------------------------
# Set before calling: OCTO_SCRIPT_NAME (the stage script's file name: under sbatch the running file is a
# spooled copy), OCTO_STAGE, OCTO_KIND (train|eval|rl), and the stage's OCTO_PAPER_RECIPE /
# OCTO_CPU_RECIPE / OCTO_INIT_STAGE.
octo_launch() {
  OCTO_CLI_ARGS=("$@")
  octo_settings
  OCTO_SCRIPT=${OCTO_SCRIPT:-$OCTO_ROOT/launch_slurm/$OCTO_SCRIPT_NAME}
  if [ "$OCTO_KIND" = eval ]; then
    OCTO_CHECKPOINT=${OCTO_CHECKPOINT:-$OCTO_OUTPUT/${OCTO_EVAL_STAGE:-decay_long}}
    OCTO_BENCHMARKS=${OCTO_BENCHMARKS:-gsm8k,math500,olympiadbench,amc23}
    export OCTO_CHECKPOINT OCTO_BENCHMARKS
    OCTO_ARGS=()
    OCTO_RESULTS="<checkpoint save directory>/eval/iter_NNNNNNN (or --out) for $OCTO_CHECKPOINT"
  else
    octo_overrides "$@"
    OCTO_RESULTS="$OCTO_OUTPUT/$OCTO_STAGE (checkpoints, TensorBoard)"
  fi
  if [ -n "${SLURM_STEP_ID:-}" ] && [ "${SLURM_STEP_ID}" != batch ] && [ -n "${SLURM_STEP_NUM_TASKS:-}" ]; then
    octo_run_in_step "$@"
  elif [ -n "${SLURM_JOB_ID:-}" ] && [ "${OCTO_FORCE_SUBMIT:-0}" != 1 ]; then
    octo_run_in_job "$@"
  else
    octo_submit
  fi
}
