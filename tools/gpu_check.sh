#!/usr/bin/env bash
# The GPU checks, one line each, on a CUDA machine (the device tool's, or any):
#   bash tools/gpu_check.sh [DATA_DIR]
# DATA_DIR holds train/<class>/ and test/<class>/ images (default data/gpu-sample, extracted from
# data/gpu-sample.tar.gz, which tools/make_gpu_sample.sh makes and the device tool carries). Full logs go to $OUT (default /tmp/gpu-check).
# main.py fine-tunes on the sample's training images (5,000, not 45,000) and tests on its 5,000 held-out
# ones, so its accuracy is near the checkpoint's but is not README's number.
set -uo pipefail
cd "$(dirname "$0")/.."
data=${1:-data/gpu-sample}
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
[ -d "$data" ] || [ ! -f data/gpu-sample.tar.gz ] || tar xzf data/gpu-sample.tar.gz -C data

check() {  # check NAME COMMAND...: run it, print "NAME: ok|FAILED, seconds, its last telling line"
    local name=$1 started=$SECONDS status=ok
    shift
    "$@" > "$out/$name.log" 2>&1 || status="FAILED (exit $?, see $out/$name.log)"
    local line
    line=$(grep -E "Accuracy of|img_s=|validation accuracy|Done in|Error|error:" "$out/$name.log" | tail -n 1)
    echo "$name: $status, $((SECONDS - started)) s: $line"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" \
    || exit 1
check main-resnet50 python main.py --data-dir "$data"
check main-vgg16 python main.py --model vgg16 --data-dir "$data"
check bench-resnet50 python -m experiments.bench
check bench-vgg16 python -m experiments.bench --model vgg16 --batch-size 128
check train-2-epochs python train.py --epochs 2 --val-per-class 100 --data-dir "$data" --out "$out/train"
check torchrun-1-rank torchrun --standalone --nproc_per_node 1 train.py --epochs 2 --val-per-class 100 \
    --data-dir "$data" --out "$out/torchrun"
