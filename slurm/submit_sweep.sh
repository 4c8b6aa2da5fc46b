#!/usr/bin/env bash
# slurm/submit_sweep.sh -- launch a Hydra multirun on Slurm without holding a terminal.
#
# hydra-submitit-launcher submits the whole sweep as ONE job array and then BLOCKS
# until every task has finished (it collects the return values). Closing the login
# shell would kill it -- the tasks keep running, but the sweep's final report, and
# any sweep that needs results (e.g. Optuna), is lost. Two ways to detach:
#
#   driver (default)  run the multirun itself inside a small 1-CPU "driver" sbatch job;
#                     survives logout and login-node reboots; costs one queue slot.
#   nohup             run it in the background on the login node with a log file;
#                     instant, but dies with the login node (and some sites kill
#                     long-running login-node processes).
#
# Usage:
#   slurm/submit_sweep.sh [options] [--] <hydra overrides...>
#     --mode driver|nohup      (default: driver)
#     --launcher NAME          hydra/launcher config (default: slurm; slurm_local for the test cluster)
#     --time HH:MM:SS          driver walltime; must outlive the whole sweep (default 04:00:00)
#     --partition NAME         driver partition (default: cluster default)
#     --mem SIZE               driver memory (default 2G)
#     --log-dir DIR            where driver/nohup logs go (default multirun/.drivers)
# Env:
#   POWERTRAIN_CMD   the command to run (default: "<python> -m powertrain", with
#                    <python> = $VIRTUAL_ENV/bin/python, ./.venv/bin/python or python3)
#
# Examples:
#   slurm/submit_sweep.sh -- optimizer.lr=1e-3,3e-4 seed=0,1,2
#   slurm/submit_sweep.sh --launcher slurm_local --mode nohup -- seed=0,1
# Prints the driver job id (driver) or the PID (nohup) and the log path.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=driver
launcher=slurm
drv_time=04:00:00
drv_partition=""
drv_mem=2G
log_dir="$REPO/multirun/.drivers"

while (($#)); do
    case $1 in
    --mode) mode=$2; shift 2 ;;
    --launcher) launcher=$2; shift 2 ;;
    --time) drv_time=$2; shift 2 ;;
    --partition) drv_partition=$2; shift 2 ;;
    --mem) drv_mem=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    --) shift; break ;;
    *) break ;;
    esac
done

if [[ -z ${POWERTRAIN_CMD:-} ]]; then
    # The same interpreter must exist on the compute nodes: submitit re-runs
    # sys.executable there, so use the project venv on the shared filesystem.
    if [[ -n ${VIRTUAL_ENV:-} ]]; then py="$VIRTUAL_ENV/bin/python"
    elif [[ -x $REPO/.venv/bin/python ]]; then py="$REPO/.venv/bin/python"
    else py=$(command -v python3); fi
    POWERTRAIN_CMD="$py -m powertrain"
fi

mkdir -p "$log_dir"
# Quote every override so values with spaces/brackets survive the extra shell layer.
# --multirun goes last: Hydra's argparse wants all overrides contiguous, and
# POWERTRAIN_CMD may already end with some.
printf -v overrides ' %q' "hydra/launcher=$launcher" "$@" --multirun
cmd="cd $(printf %q "$REPO") && exec $POWERTRAIN_CMD$overrides"

case $mode in
driver)
    command -v sbatch >/dev/null || { echo "sbatch not found" >&2; exit 1; }
    # Inside the driver, drop the driver job's own SLURM_* variables (except SLURM_CONF):
    # sbatch/srun would otherwise let them leak into the sweep's array tasks
    # (e.g. SLURM_MEM_PER_* or SLURM_CPUS_PER_TASK from the driver allocation).
    wrap="for v in \$(compgen -e | grep '^SLURM_'); do [ \"\$v\" = SLURM_CONF ] || unset \"\$v\"; done; $cmd"
    args=(--parsable -J powertrain-sweep-driver -c 1 --mem="$drv_mem" -t "$drv_time"
          -o "$log_dir/driver-%j.log")
    [[ -n $drv_partition ]] && args+=(-p "$drv_partition")
    job=$(sbatch "${args[@]}" --wrap "$wrap")
    job=${job%%;*}
    echo "driver job $job; log: $log_dir/driver-$job.log"
    echo "follow: tail -f $log_dir/driver-$job.log   stop: scancel $job (then scancel the array it submitted)"
    ;;
nohup)
    log="$log_dir/nohup-$(date +%Y%m%d-%H%M%S)-$$.log"
    # setsid: own session, so a hang-up of the login shell does not reach it.
    nohup setsid bash -c "$cmd" >"$log" 2>&1 </dev/null &
    echo "pid $!; log: $log"
    echo "follow: tail -f $log   stop: kill $! (then scancel the array it submitted)"
    ;;
*)
    echo "unknown --mode $mode (driver|nohup)" >&2
    exit 2
    ;;
esac
