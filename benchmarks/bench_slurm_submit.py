"""How long does it take to submit (and drain) a 1,000-task Slurm job array?

Target: submitting a 1,000-job sweep to the local cluster takes <= 30 s.

Needs the local cluster (`bash slurm/cluster.sh up`). Measures, separately:
  1. `sbatch --array=0-999 --wrap true`        -- raw submit latency;
  2. submitit `executor.map_array(abs, ...)`    -- what hydra-submitit-launcher does
     (pickles 1,000 DelayedSubmissions, writes the sbatch script, one sbatch call);
  and for each, optionally (--drain) the time until every task has left the queue.

    python benchmarks/bench_slurm_submit.py [--tasks 1000] [--drain] [--skip-submitit]

Prints one line per measurement, `name: seconds`. Exits 1 if a submit exceeds --limit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def queue_len(job_id: str) -> int:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", job_id, "-o", "%i"], capture_output=True, text=True, timeout=60
    )
    return len(out.stdout.split())


def drain(job_id: str, timeout: float) -> float:
    t0 = time.perf_counter()
    while queue_len(job_id) > 0:
        if time.perf_counter() - t0 > timeout:
            subprocess.run(["scancel", job_id], timeout=60)
            raise SystemExit(f"array {job_id} did not drain within {timeout:.0f}s (cancelled)")
        time.sleep(1)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--drain", action="store_true", help="also time until the array has finished")
    ap.add_argument("--drain-timeout", type=float, default=600)
    ap.add_argument("--skip-submitit", action="store_true")
    ap.add_argument("--limit", type=float, default=30.0, help="fail if a submit takes longer (s)")
    args = ap.parse_args()
    n = args.tasks
    worst = 0.0

    with tempfile.TemporaryDirectory(prefix="bench_slurm_") as tmp:
        t0 = time.perf_counter()
        out = subprocess.run(
            ["sbatch", "--parsable", f"--array=0-{n - 1}", "-t", "1", "-o", "/dev/null", "--wrap", "true"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        dt = time.perf_counter() - t0
        worst = max(worst, dt)
        job_id = out.stdout.strip().split(";")[0]
        print(f"sbatch --array=0-{n - 1} submit: {dt:.2f}")
        if args.drain:
            print(f"sbatch array {n} tasks drained after submit: {drain(job_id, args.drain_timeout):.1f}")

        if not args.skip_submitit:
            import submitit

            ex = submitit.AutoExecutor(folder=f"{tmp}/%j", cluster="slurm")
            ex.update_parameters(
                timeout_min=1, slurm_partition="debug", cpus_per_task=1, mem_gb=1, slurm_array_parallelism=n
            )
            t0 = time.perf_counter()
            jobs = ex.map_array(abs, range(n))
            dt = time.perf_counter() - t0
            worst = max(worst, dt)
            print(f"submitit map_array({n}) submit: {dt:.2f}")
            if args.drain:
                array_id = jobs[0].job_id.split("_")[0]
                print(
                    f"submitit array {n} tasks drained after submit: {drain(array_id, args.drain_timeout):.1f}"
                )
            else:
                # Do not leave 1,000 jobs behind on a shared box.
                subprocess.run(["scancel", jobs[0].job_id.split("_")[0]], timeout=60)

        if not args.drain:
            subprocess.run(["scancel", job_id], timeout=60)

    if worst > args.limit:
        print(f"FAIL: slowest submit {worst:.2f}s > {args.limit:.0f}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
