#!/usr/bin/env bash
# What only a CUDA GPU can check, run for real in one go (estimated 3-6 minutes on one H100; each step has a time
# limit): bf16 autocast (train.precision=auto), train.compile with the real compiler (inductor), the equality of a
# train.deterministic comparison killed twice at kill points and resumed with an uninterrupted one, and, when
# nvidia-smi lists 2+ GPUs, a 2-process NCCL comparison under torchrun. Every comparison is tiny (BreastMNIST, b0,
# 64 training images, 1 seed, both arms, 2 + 2 epochs). Prints the GPU, then one line per check:
# PASS|FAIL|SKIP NAME: numbers.
# Usage: benchmarks/gpu_checks.sh [OUTPUT_FOLDER]   (default runs/gpu-checks; replaced)
# Exit code: 0 every check passed or was skipped, 1 a check failed, 2 no CUDA device (nothing was checked).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

no_gpu() {
  echo "gpu_checks: no CUDA device present ($1); nothing was checked" >&2
  exit 2
}
command -v nvidia-smi >/dev/null 2>&1 || no_gpu "nvidia-smi not found"
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
[ "${gpus:-0}" -ge 1 ] || no_gpu "nvidia-smi lists no GPU"
python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
  no_gpu "nvidia-smi lists $gpus but torch sees none: a CPU-only torch build, or CUDA_VISIBLE_DEVICES"

out="${1:-runs/gpu-checks}"
rm -rf "$out"
mkdir -p "$out"
echo "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)" \
  "($gpus listed); $(python -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}")')"
sets=(device=cuda seeds=1 data.limit=64 pretext.epochs=2 finetune.epochs=2 pretext.batch_size=16
      finetune.batch_size=16 pretext.probe=false checkpoint.every_steps=1)
common=()
for s in "${sets[@]}"; do common+=(--set "$s"); done
passed=0 failed=0 skipped=0
result() {  # STATUS NAME TEXT
  printf '%-4s %s: %s\n' "$1" "$2" "$3"
  case "$1" in PASS) passed=$((passed + 1)) ;; FAIL) failed=$((failed + 1)) ;; *) skipped=$((skipped + 1)) ;; esac
}
limited() {  # LOG_STEM COMMAND...: a command with a time limit, its output in LOG_STEM.out and .err
  local stem=$1
  shift
  (timeout 300 "$@" >"$stem.out" 2>"$stem.err"; exit $?) 2>/dev/null  # no "Killed" line
}
comparison() {  # NAME LOG_STEM COMMAND...: a comparison with a time limit; sets $secs; FAIL NAME if it fails
  local name=$1 stem=$2 start=$SECONDS rc
  shift 2
  limited "$stem" "$@"
  rc=$? secs=$((SECONDS - start))
  [ $rc -eq 0 ] && return 0
  local why
  why=$(grep -m1 '^tppeft' "$stem.err" || tail -1 "$stem.err")  # tppeft's own error line, else the last line
  result FAIL "$name" "the comparison failed (exit $rc): $why"
  return 1
}
check_py() {  # NAME PYTHON_CODE ARGS...: the code prints "STATUS text"
  local name=$1 code=$2 line
  shift 2
  line=$(timeout 300 python -c "$code" "$@" 2>"$out/$name.py.err" | tail -1)
  [ -n "$line" ] || line="FAIL $(tail -1 "$out/$name.py.err")"
  result "${line%% *}" "$name" "${line#* }"
}

# 1. bf16 autocast: what train.precision=auto picks, what a matrix product gives under it, and a whole
#    comparison at that precision (also the reference of check 3: train.deterministic=true).
ref="$out/deterministic-ref"
if comparison bf16_autocast "$ref" python -m tppeft run -o "$ref" "${common[@]}" --set train.deterministic=true; then
  ref_s=$secs
  check_py bf16_autocast '
import json, sys, torch
from tppeft.engine.devices import autocast, autocast_dtype
dev = torch.device("cuda")
dtype = autocast_dtype("auto", dev)
a = torch.randn(256, 256, device=dev)
with autocast(dev, dtype):
    got = (a @ a).dtype
logged = "bf16 autocast" in open(sys.argv[1] + ".err").read()
s = json.load(open(sys.argv[1] + "/summary.json"))
auc = {k: e["mean"]["auc"] for k, e in s["arms"].items()}
ok = dtype == got == torch.bfloat16 and logged and all(v is not None for v in auc.values())
print(("PASS" if ok else "FAIL") + f" auto -> {dtype}, a matmul under autocast -> {got}, run logged as bf16: "
      f"{logged}; test AUC " + ", ".join(f"{k} {v:.4f}" for k, v in auc.items())
      + f"; {sys.argv[2]} s")' "$ref" "$ref_s"
fi

# 2. train.compile: a compiled b0 (inductor) against the eager one, forward and backward, then a whole comparison.
check_py compile_blocks '
import copy, time, torch
from torch._dynamo.utils import counters
from tppeft.backbones import build_backbone
from tppeft.config import BackboneConfig
from tppeft.engine.devices import compile_blocks
torch.manual_seed(0)
eager = build_backbone(BackboneConfig(), 64).model.cuda().float().requires_grad_(True)
compiled = copy.deepcopy(eager)
blocks = compile_blocks(compiled)
x = torch.randn(16, 3, 64, 64, device="cuda")
t = time.perf_counter()
y = compiled(x)
y.float().square().mean().backward()
torch.cuda.synchronize()
first = time.perf_counter() - t
ref = eager(x)
ref.float().square().mean().backward()
diff = (y - ref).abs().max().item() / ref.abs().max().item()
gdiff = max((p.grad - q.grad).abs().max().item() / (q.grad.abs().max().item() or 1)
            for p, q in zip(compiled.parameters(), eager.parameters()) if q.grad is not None)
graphs = counters["stats"]["unique_graphs"]
ok = blocks > 0 and graphs > 0 and diff < 1e-3 and gdiff < 1e-2
print(("PASS" if ok else "FAIL") + f" {blocks} blocks compiled into {graphs} graph(s) in {first:.1f} s; relative "
      f"difference to eager: output {diff:.1e}, gradients {gdiff:.1e}")'
comp="$out/compiled"
if comparison compile_run "$comp" python -m tppeft run -o "$comp" "${common[@]}" --set train.compile=true; then
  comp_s=$secs
  check_py compile_run '
import json, sys
ref, comp = (json.load(open(p + "/summary.json")) for p in sys.argv[1:3])
a, b = (s["arms"]["tpp"]["runs"][0]["pretext"]["loss_start"] for s in (ref, comp))
log = open(sys.argv[2] + ".err").read()
ok = "compiled blocks" in log and abs(a - b) <= 0.02 * abs(a)
auc = comp["arms"]["tpp"]["mean"]["auc"]
print(("PASS" if ok else "FAIL") + f" held-out pretext loss before training {b:.5f} compiled vs {a:.5f} eager; "
      f"test AUC tpp {auc:.4f}; {sys.argv[4]} s compiled vs {sys.argv[3]} s eager (compilation included)")
' "$ref" "$comp" "$ref_s" "$comp_s"
fi

# 3. train.deterministic: the comparison of check 1 killed (SIGKILL from the kill points) after the TPP stage's
#    last checkpoint and half-way through a fine-tuning checkpoint, resumed each time: the same files as check 1's.
cut="$out/deterministic-cut"
TPPEFT_KILL_AT=tpp-stage-done limited "$cut.1" python -m tppeft run -o "$cut" "${common[@]}" --set train.deterministic=true
rc1=$?
TPPEFT_KILL_AT=checkpoint-mid-write:3 limited "$cut.2" python -m tppeft run --resume "$cut"
rc2=$?
limited "$cut.3" python -m tppeft run --resume "$cut"
rc3=$?
if [ $rc1 -ne 137 ] || [ $rc2 -ne 137 ] || [ $rc3 -ne 0 ]; then
  result FAIL deterministic_resume "exit codes $rc1, $rc2 (137 = killed expected), $rc3 (0 expected): $(tail -1 "$cut.3.err")"
else
  check_py deterministic_resume '
import sys
from tppeft.rundir import comparable_outputs
ref, cut = (comparable_outputs(p) for p in sys.argv[1:3])
differ = sorted(k for k in set(ref) | set(cut) if ref.get(k) != cut.get(k))
files = sum(k.endswith(".safetensors") for k in ref)
print(("PASS" if not differ else "FAIL") + " killed twice (after the TPP stage; in a fine-tuning checkpoint write), "
      f"resumed: {len(ref)} items compared ({files} weight files), " + (f"differing: {differ}" if differ else "identical"))
' "$ref" "$cut"
fi

# 4. NCCL: the same comparison on 2 processes under torchrun; the held-out pretext loss before training (shared
#    evaluation, gathered over NCCL) must match one process's.
if [ "$gpus" -ge 2 ]; then
  nccl="$out/nccl"
  if comparison nccl_torchrun "$nccl" python -m torch.distributed.run --standalone --nproc_per_node 2 -m tppeft \
    run -o "$nccl" "${common[@]}"; then
    check_py nccl_torchrun '
import json, sys
ref, two = (json.load(open(p + "/summary.json")) for p in sys.argv[1:3])
a, b = (s["arms"]["tpp"]["runs"][0]["pretext"]["loss_start"] for s in (ref, two))
auc = [s["arms"]["tpp"]["mean"]["auc"] for s in (ref, two)]
ok = two["processes"] == 2 and abs(a - b) <= 0.01 * abs(a) and auc[1] is not None
print(("PASS" if ok else "FAIL") + f" 2 processes: held-out pretext loss {b:.5f} vs {a:.5f} on one; test AUC tpp "
      f"{auc[1]:.4f} vs {auc[0]:.4f}; {sys.argv[3]} s")' "$ref" "$nccl" "$secs"
  fi
else
  result SKIP nccl_torchrun "needs 2+ GPUs; nvidia-smi lists $gpus"
fi

echo "gpu_checks: $passed passed, $failed failed, $skipped skipped in $SECONDS s; logs in $out"
[ "$failed" -eq 0 ]
