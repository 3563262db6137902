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
#   1. the distillation teachers: airbench's network, trained by tools/train_teacher.py, 10 epochs (seed 0) and
#      20 epochs (seed 1);
#   2. distillation run9 from the ensemble of both and the shipped VGG16-BN (train.py --teacher A B C);
#   3. the VGG16-BN and run9 exported scaled up, each measured with the course's loop and main.py's default.
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

teacher() {  # NAME [train_teacher flags]: train one teacher, or resume it, or see it finished
    local out="$cache/$1"; shift
    if [ -f "$out/final.pt" ]; then
        say "teacher $out: finished"
        return
    fi
    local resume=()
    [ ! -f "$out/state.pt" ] || resume=(--resume)
    say "teacher $out: ${resume[*]:-from the start}"
    "$py" -m tools.train_teacher --data-dir data/cifar10-jpg --out "$out" "$@" "${resume[@]}" >> "$out.log" 2>&1
}
teacher teacher-airbench94
teacher teacher-airbench-20ep --epochs 20 --seed 1

run9="$cache/run9"
if [ -f "$run9/last.pt" ] && "$py" -c "import json,sys; h=json.load(open(sys.argv[1])); sys.exit(len(h) < 20)" \
        "$run9/history.json" 2>/dev/null; then
    say "run9: finished"
else
    resume=()
    [ ! -f "$run9/last.pt" ] || resume=(--resume)
    say "run9: ${resume[*]:-from the start}"
    "$py" train.py --model resnet50 --epochs 20 --lr 0.02 --cutout 8 --ema 0.999 \
        --init checkpoints/resnet50_cifar10.pt --teacher checkpoints/vgg16_cifar10.pt \
        "$cache/teacher-airbench94/final.pt" "$cache/teacher-airbench-20ep/final.pt" --kd-weight 0.9 \
        --data-dir data/cifar10-jpg --out "$run9" "${resume[@]}" >> "$run9.log" 2>&1
fi

# 3. the shipped files scaled up for the course's loop (issue 31, item 3): export, then the course's loop (Adam at
#    lr 1e-3, constant) and main.py's default on the export (docs/training.md, "Scaled up for the course's loop")
[ -d data/cifar10-split ] || "$py" prepare_data.py
scaled() {  # NAME MODEL RUN_DIR: export RUN_DIR/best.pt to $cache/NAME/MODEL_cifar10.pt and measure it twice
    local out="$cache/$1" model="$2" run="$3"
    local file="$out/${model}_cifar10.pt"
    mkdir -p "$out"
    if [ ! -f "$file" ]; then
        say "$1: export"
        "$py" train.py --model "$model" --data-dir data/cifar10-jpg --out "$run" --export "$file" >> "$out/export.log" 2>&1
    fi
    local loop flags
    for loop in adam sgd; do
        if ! grep -q "^Accuracy of the model" "$out/$loop.log" 2>/dev/null; then
            say "$1: main.py ($loop)"
            flags=()
            [ "$loop" = sgd ] || flags=(--optimizer adam --lr 1e-3 --schedule constant)
            rm -f "$out/ft-$loop.pt"
            "$py" main.py --model "$model" --checkpoint "$file" "${flags[@]}" --data-dir data/cifar10-split \
                --out "$out/ft-$loop.pt" > "$out/$loop.log" 2>&1
        fi
    done
    say "$1: finished"
}
vgg="$cache/vgg16-scaled"
[ -f "$vgg/best.pt" ] || { mkdir -p "$vgg"; cp checkpoints/vgg16_cifar10.pt "$vgg/best.pt"; }
scaled vgg16-scaled vgg16 "$vgg"
scaled v3 resnet50 "$run9"  # run9 reached the bar (85.58 %): version 3

say "queue finished"
