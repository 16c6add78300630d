#!/usr/bin/env bash
# One prepared GPU check (issue 27), bounded to 8 minutes; prints one table (see
# scripts/gpu_check.py): the MADCluster Table 2 backbones at their papers' sizes on one MSL
# channel (fit s/epoch, score s, peak memory) in fp32, bf16 and with trainer.compile, and
# the whole M2AD MSL run (27 channels, 1 seed) in wall time.
#
#   scripts/gpu_check.sh [--root DATA_DIR] [--channel C-1] [--out FILE]   # on a CUDA machine
#   scripts/gpu_check.sh --dry                                            # on the CPU, in seconds
#
# On a lent device machine (its python3 has torch, pandas, sklearn, scipy; not Hydra): in
# this repo's root here, once, collect what travels in folders that .git/info/exclude ignores,
#   echo /.gpucheck/ >> .git/info/exclude; mkdir -p .gpucheck/wheels .gpucheck/data/NASA/{train,test}
#   python3 -m pip wheel --no-deps -w .gpucheck/wheels hydra-core==1.3.8 omegaconf==2.3.1 \
#       antlr4-python3-runtime==4.9.3     # pure Python: the wheels built here install there
#   cp ../shared/datasets/NASA/labeled_anomalies.csv .gpucheck/data/NASA/
#   for c in $(python3 -c "import csv; print(*[r['chan_id'] for r in csv.DictReader(open('../shared/datasets/NASA/labeled_anomalies.csv')) if r['spacecraft'] == 'MSL'])"); do
#       cp ../shared/datasets/NASA/train/$c.npy .gpucheck/data/NASA/train/; cp ../shared/datasets/NASA/test/$c.npy .gpucheck/data/NASA/test/; done
# (the 27 MSL channels are about 55 MiB), then run with carry [".gpucheck"] and
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpucheck/wheels/*.whl && \
#   PYTHONPATH=/tmp/site scripts/gpu_check.sh --root .gpucheck/data --out $OUT/gpu_check.md
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export WANDB_MODE="${WANDB_MODE:-offline}" WANDB_SILENT="${WANDB_SILENT:-true}"
# 450 s of rows inside an 8-minute bound: imports and the last row's end fit in the rest
exec timeout --signal=INT --kill-after=10 480 "${PYTHON:-python3}" scripts/gpu_check.py --budget 450 "$@"
