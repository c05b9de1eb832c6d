#!/usr/bin/env bash
# Everything the GPU targets need, in one go on one CUDA GPU: the throughput of both cases against the plain
# loop, eager and compiled, and the wall time of the default comparison (b0 on BreastMNIST, 2 arms x 3 seeds,
# both stages), as it is and with train.compile. Usage: benchmarks/gpu.sh [OUTPUT_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu-bench}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python benchmarks/throughput.py --device cuda --batch 256 --steps 50 | tee "$out/throughput.txt"
python benchmarks/throughput.py --device cuda --batch 256 --steps 50 --compile | tee "$out/throughput-compiled.txt"
for variant in eager compiled; do
  sets=(--set device=cuda)
  [ "$variant" = compiled ] && sets+=(--set train.compile=true)
  start=$(date +%s.%N)
  python -m tppeft run --output "$out/default-$variant" --overwrite "${sets[@]}" > "$out/default-$variant.txt"
  end=$(date +%s.%N)
  echo "default_run_$variant wall_s=$(python -c "print(round($end - $start, 1))")"
done
