#!/usr/bin/env bash
# The GPU checks, as one script for a machine with an NVIDIA GPU (run from the repository's root):
# the CUDA tests (the CPU's run followed, bf16, fp16 with its scaler, no sync per step), a 1-GPU run
# through the --nproc launcher, fp16 and bf16 runs of a shipped config, and the device benchmark.
#   bash benchmarks/device_check.sh
set -u
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
echo "== CUDA tests"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py
echo "== one GPU through the --nproc launcher, then resumed by it"
timeout 120 python3 -m optcli train configs/tiny.yaml --device cuda --nproc 1 --out /tmp/runs --quiet
for precision in bf16 fp16; do
  echo "== precision $precision"
  timeout 60 python3 -m optcli train configs/teacher_mlp.yaml --device cuda --set train.precision=$precision \
    --set train.epochs=5 --out /tmp/runs --quiet
done
echo "== device benchmark"
timeout 300 python3 benchmarks/device.py --steps 1500 --rounds 4
