#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
set -euo pipefail
cd /autograder/source
apt-get update
apt-get install -y python3 python3-pip python3-venv
# The sandbox; without it the grader falls back to process limits only (and says so in its log).
apt-get install -y bubblewrap || echo "setup.sh: bubblewrap could not be installed" >&2
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
