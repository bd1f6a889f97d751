#!/usr/bin/env python3
"""Recording stand-ins for the LSF commands the Snakemake LSF executor plugin calls (bsub, bjobs, bkill, badmin,
lsclusters, bhist). No open-source LSF exists, so the cluster tests put these first on PATH: each records its
arguments (one JSON line per call in $LSF_STANDIN_DIR/calls.jsonl) and `bsub` runs the job locally in the
background, so a whole workflow runs end to end. They prove what the profile makes the plugin submit, not how a
real LSF schedules it. One script, dispatched on the name it is called by (the tests make bsub, bjobs, ...
symlinks to it). $LSF_STANDIN_FAIL_ONCE (a job-name pattern) makes the first matching job fail, to test retries.
"""

import fcntl
import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ.get("LSF_STANDIN_DIR", "/tmp/lsf-standin"))
CLUSTER = "standin_cluster"
DEFAULT_QUEUE = "standin_default"


def record(command, argv):
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "calls.jsonl", "a") as f:
        f.write(json.dumps({"command": command, "argv": argv}) + "\n")


def option_values(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def next_job_id():
    """A new job directory with a new id; the lock keeps concurrent bsub calls apart."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = STATE / "last_job_id"
        job_id = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(job_id))
    return job_id


def simulate_failure(job_name):
    """Fail (once) the first job whose name matches $LSF_STANDIN_FAIL_ONCE, as a node failure or OOM kill would."""
    pattern = os.environ.get("LSF_STANDIN_FAIL_ONCE")
    marker = STATE / "failed_once"
    if not pattern or marker.exists() or not fnmatch.fnmatchcase(job_name, pattern):
        return False
    marker.write_text(job_name)
    return True


def bsub(argv):
    """Run the job's command (the last argument) in the background, as LSF would on a compute node."""
    record("bsub", argv)
    job_id = next_job_id()
    command = argv[-1]
    cwd = option_values(argv, "-cwd")[-1] if "-cwd" in argv else os.getcwd()
    log = option_values(argv, "-o")[-1] if "-o" in argv else os.devnull
    env = dict(os.environ, LSB_JOBID=str(job_id), LSB_DJOB_NUMPROC=option_values(argv, "-n")[-1])
    for gpu_request in option_values(argv, "-gpu"):
        fields = dict(f.split("=", 1) for f in gpu_request.split(":") if "=" in f)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(int(fields.get("num", 1))))
    job_dir = STATE / "jobs" / str(job_id)
    job_dir.mkdir(parents=True)
    (job_dir / "name.tmp").write_text(option_values(argv, "-J")[-1])
    (job_dir / "name.tmp").rename(job_dir / "name")  # bjobs never sees half a name
    if simulate_failure(option_values(argv, "-J")[-1]):
        command = "echo 'lsf stand-in: simulated failure of the first attempt' >&2; exit 1"
    runner = f"({command}) >> {shlex.quote(log)} 2>&1; echo $? > {shlex.quote(str(job_dir / 'exit'))}"
    process = subprocess.Popen(
        ["bash", "-c", runner],
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (job_dir / "pid").write_text(str(process.pid))
    queue = option_values(argv, "-q")[-1] if "-q" in argv else DEFAULT_QUEUE
    print(f"Job <{job_id}> is submitted to queue <{queue}>.")


def job_status(job_dir):
    exit_file = job_dir / "exit"
    if exit_file.exists() and exit_file.read_text().strip():
        return "DONE" if exit_file.read_text().strip() == "0" else "EXIT"
    return "RUN"


def bjobs(argv):
    """Answer `bjobs -noheader -o 'jobid stat' -aJ '<pattern>'` for the stand-in's jobs."""
    record("bjobs", argv)
    pattern = option_values(argv, "-aJ")[-1] if "-aJ" in argv else "*"
    jobs = STATE / "jobs"
    for job_dir in sorted(jobs.iterdir(), key=lambda p: int(p.name)) if jobs.exists() else []:
        name_file = job_dir / "name"  # written by bsub right after the directory: absent means not submitted yet
        if name_file.exists() and fnmatch.fnmatchcase(name_file.read_text(), pattern):
            print(job_dir.name, job_status(job_dir))


def bkill(argv):
    record("bkill", argv)
    for job_id in argv:
        pid_file = STATE / "jobs" / job_id / "pid"
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def badmin(argv):
    """`badmin showconf mbd`: the keys the plugin reads; the first line is a header it skips."""
    record("badmin", argv)
    confdir = STATE / "conf"
    params = confdir / "lsbatch" / CLUSTER / "configdir" / "lsb.params"
    params.parent.mkdir(parents=True, exist_ok=True)
    params.write_text(f"Begin Parameters\nDEFAULT_QUEUE = {DEFAULT_QUEUE}  # stand-in\nEnd Parameters\n")
    print("MBD configuration at stand-in time:")
    print(f"    LSF_CONFDIR = {confdir}")
    print(f"    LSB_SHAREDIR = {STATE / 'share'}")
    print("    LSF_UNIT_FOR_LIMITS = MB")


def lsclusters(argv):
    record("lsclusters", argv)
    print("CLUSTER_NAME   STATUS   MASTER_HOST   ADMIN   HOSTS  SERVERS")
    print(f"{CLUSTER}  ok       localhost     root    1      1")


def bhist(argv):
    """No job history: the plugin then submits without a guessed project."""
    record("bhist", argv)
    return 255


COMMANDS = {f.__name__: f for f in (bsub, bjobs, bkill, badmin, lsclusters, bhist)}

if __name__ == "__main__":
    sys.exit(COMMANDS[Path(sys.argv[0]).name](sys.argv[1:]) or 0)
