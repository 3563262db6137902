#!/usr/bin/env bash
# The queue of long CPU runs (issue 31), in order and one at a time, on this machine. Start it again after any
# interruption: each step resumes where it stopped (its state is under ~/.cache/resnet50-cifar10) or, when
# finished, only checks that and moves on. Earlier queues and what they gave: docs/training.md.
#
#   nohup bash tools/long_runs.sh >> ~/.cache/resnet50-cifar10/long_runs.log 2>&1 &
#
# It writes its pid to ~/.cache/resnet50-cifar10/current-run.pid: pause the queue with
# `pkill -STOP -P PID; kill -STOP PID` (the run is its child) and continue it with -CONT the same way.
# Each step appends to its own log beside its state. The steps:
#   1. the distillation teacher: airbench's network, trained by tools/train_teacher.py;
#   2. distillation run9 from that teacher.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="$HOME/.cache/resnet50-cifar10"
py="${PYTHON:-.venv/bin/python}"
mkdir -p "$cache"
exec 9> "$cache/long_runs.lock"  # one queue at a time: two would train the same run at once
if ! flock -n 9; then
    echo "tools/long_runs.sh is already running (pid in $cache/current-run.pid); not starting another." >&2
    exit 1
fi
echo $$ > "$cache/current-run.pid"
say() { echo "[$(date -u '+%F %T') UTC] $*"; }

teacher="$cache/teacher-airbench94"
if [ -f "$teacher/final.pt" ]; then
    say "teacher: finished ($teacher/final.pt)"
else
    resume=()
    [ ! -f "$teacher/state.pt" ] || resume=(--resume)
    say "teacher: ${resume[*]:-from the start}"
    "$py" -m tools.train_teacher --data-dir data/cifar10-jpg --out "$teacher" "${resume[@]}" \
        >> "$cache/teacher-airbench94.log" 2>&1
fi

# distillation run9: command added when the teacher is finished

say "queue finished"
