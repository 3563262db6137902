#!/usr/bin/env bash
# A small image-folder sample of the data for the GPU machine, which takes at most 64 MiB with the
# tracked tree (its two checkpoints, ResNet-50 and VGG16-BN, are ~59 MB of it): all 5,000 held-out
# test images and the first PER_CLASS training images of each class (default 500): 9 MB of JPEGs,
# ~3 MB as data/gpu-sample.tar.gz, the file to carry (gpu_check.sh extracts it).
#   bash tools/make_gpu_sample.sh [PER_CLASS]     # writes data/gpu-sample/{train,test}/<class>/ and the archive
set -euo pipefail
cd "$(dirname "$0")/.."
per_class=${1:-500}
[ -d data/cifar10-split ] || python prepare_data.py --source data/cifar10-jpg --out data/cifar10-split
rm -rf data/gpu-sample.partial
mkdir -p data/gpu-sample.partial
cp -r data/cifar10-split/test data/gpu-sample.partial/test
for class_dir in data/cifar10-split/train/*/; do
    class=$(basename "$class_dir")
    mkdir -p "data/gpu-sample.partial/train/$class"
    find "$class_dir" -type f | sort | sed -n "1,${per_class}p" | xargs cp -t "data/gpu-sample.partial/train/$class"
done
rm -rf data/gpu-sample && mv data/gpu-sample.partial data/gpu-sample
tar czf data/gpu-sample.tar.gz.tmp -C data gpu-sample && mv data/gpu-sample.tar.gz.tmp data/gpu-sample.tar.gz
echo "data/gpu-sample: $(find data/gpu-sample/train -type f | wc -l) training and" \
     "$(find data/gpu-sample/test -type f | wc -l) test images, $(du -sh --apparent-size data/gpu-sample | cut -f1) of files; data/gpu-sample.tar.gz $(du -sh --apparent-size data/gpu-sample.tar.gz | cut -f1)"
