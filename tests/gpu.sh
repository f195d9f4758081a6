#!/usr/bin/env bash
# The GPU checks, in one go, on a machine with an NVIDIA GPU. Time is dominated by the first
# use of each kernel: cubecl compiles it with NVRTC, and autotuning compiles and times several
# candidates per matrix-product or reduction shape. On a cold H200 (2026-12-04) the first CLIP
# training step had not finished after 75 s (about 960 kernels compiled, 10 shapes tuned), so
# this script tunes at cubecl's minimal level unless CUBECL_AUTOTUNE_LEVEL says otherwise, and
# gives each GPU leg 10 minutes. Tuning results persist (cubecl's autotune cache), so a second
# run is faster.
#   1. the CLI built with --features cuda (or XTAL_BIN, a binary built elsewhere);
#   2. `xtal devices --check` (a forward/backward/AdamW step against the CPU);
#   3. CPU-vs-GPU parity of training: the sample CLIP and an SSL block (Block 3, the
#      all-pairs message passing) each train one epoch on the CPU, then the same checkpoint
#      resumes for one more epoch on the CPU and on the GPU: identical weights, optimiser
#      state, batches and masks, so every step loss (CLIP logs each step) and the epoch's
#      training and validation losses must agree (relative 1e-3: float
#      reductions run in another order, and TF32 may be on);
#   4. `xtal bench` on the GPU: matmul/MLP GFLOP/s, CLIP training (small and default),
#      the six SSL blocks, MiniLM inference and the graph encoders, next to PyTorch on the
#      same GPU where python3 has torch (sentence-transformers for MiniLM);
#   5. data-parallel training where there are two GPUs: the sample CLIP for two epochs as one
#      process on cuda:0, as two processes (cuda:0 and cuda:1, coordinator on 127.0.0.1) and
#      as one process on both (--device cuda:0,cuda:1), whose epoch losses must agree
#      (relative 1e-3), each timed.
# Every figure goes to OUT/gpu.json; logs beside it. A check that fails makes the exit code 1,
# but the others still run.
#
# Usage: bash tests/gpu.sh [OUT]            (default runs/gpu)
#   XTAL_BIN=path          use this binary instead of building one
#   XTAL_GPU_DEVICE=wgpu   the device to check (default cuda; wgpu/cpu make a dry run here)
#   XTAL_MINILM_DIR=dir    all-MiniLM-L6-v2's folder (config.json, tokenizer.json and
#                          model.safetensors; without the weights, python3 with transformers
#                          writes random ones of the same shapes: speed does not depend on them)
#   XTAL_GPU_QUICK=1       fewer steps and structures (a dry run of the script itself)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$(mkdir -p "${1:-runs/gpu}" && cd "${1:-runs/gpu}" && pwd)
device=${XTAL_GPU_DEVICE:-cuda}
quick=${XTAL_GPU_QUICK:-0}
work=$out/work
rm -rf "$work" && mkdir -p "$work"
failures=()
export CUBECL_AUTOTUNE_LEVEL=${CUBECL_AUTOTUNE_LEVEL:-minimal}
say() { printf '\n==> %s\n' "$*" >&2; }
fail() { failures+=("$1"); echo "FAILED: $1" >&2; }
start=$(date +%s)

# CUDA's compiler headers (cubecl compiles kernels with NVRTC at run time) and its libraries.
if command -v nvcc >/dev/null; then
    export CUDA_PATH=${CUDA_PATH:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}
fi
for lib in "${CUDA_PATH:-/usr/local/cuda}/lib64" /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    [ -d "$lib" ] && export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$out/gpus.txt" 2>/dev/null || true
gpus=$(grep -c . "$out/gpus.txt" 2>/dev/null)
gpus=${gpus:-0}

say "the CLI with --features cuda"
if [ -n "${XTAL_BIN:-}" ]; then
    xtal=$(readlink -f "$XTAL_BIN")
else
    cargo build --release -p xtal --features cuda 2>&1 | tail -3 >&2
    xtal=${CARGO_TARGET_DIR:-$root/target}/release/xtal
fi
[ -x "$xtal" ] || { echo "no xtal binary at $xtal" >&2; exit 2; }
echo "binary: $xtal" >&2

say "xtal devices --check"
timeout 300 "$xtal" devices --check --json > "$out/devices.json" 2> "$out/devices.log" \
    || fail "devices --check"
cat "$out/devices.json" >&2

say "sample data"
timeout 120 "$xtal" prepare data/sample/materials.csv -o "$work/data" > "$out/prepare.log" 2>&1 \
    || { fail "prepare"; }

# One epoch on the CPU, then the same checkpoint resumed for one more epoch on each device.
parity() { # name, train command (without --out/--device), resume command
    local name=$1 train=$2 resume=$3
    say "parity: $name (cpu vs $device)"
    timeout 300 $train --out "$work/$name-cpu" --device cpu > "$out/$name-train.log" 2>&1 \
        || { fail "$name: first epoch on cpu"; return; }
    cp -r "$work/$name-cpu" "$work/$name-on-$device"
    local t0 t1 t2
    t0=$(date +%s.%N)
    timeout 300 $resume --out "$work/$name-cpu" --device cpu >> "$out/$name-train.log" 2>&1 \
        || { fail "$name: resume on cpu"; return; }
    t1=$(date +%s.%N)
    timeout 600 $resume --out "$work/$name-on-$device" --device "$device" > "$out/$name-$device.log" 2>&1 \
        || { fail "$name: resume on $device"; return; }
    t2=$(date +%s.%N)
    echo "$t0 $t1 $t2" > "$work/$name.times"
}
epochs_flag() { echo "--set training.epochs=$1 --set training.log_interval=1"; }
parity clip \
    "$xtal train clip --config configs/sample_clip.json --data $work/data $(epochs_flag 1)" \
    "$xtal train clip --resume $(epochs_flag 2)"
parity ssl \
    "$xtal ssl train --data $work/data --block 3 --epochs 1" \
    "$xtal ssl train --resume --block 3 --epochs 2"

say "xtal bench on $device"
torch_args=()
if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && [ "$device" = cuda ]; then
    torch_args=(--torch-device cuda)
elif python3 -c "import torch" 2>/dev/null; then
    torch_args=(--torch-device cpu)
fi
bench() { # name, args…
    local name=$1; shift
    local t=("${@}")
    timeout 600 "$xtal" bench "${t[@]}" --json > "$out/bench-$name.json" 2> "$out/bench-$name.log" \
        || fail "bench $name"
}
steps=20; count=512; runs=10
[ "$quick" = 1 ] && { steps=2; count=64; runs=2; }
bench matmul --device "$device" --seconds 2
with_torch() { [ ${#torch_args[@]} -gt 0 ] && echo "--torch $1 ${torch_args[*]}"; }
# shellcheck disable=SC2046
bench clip --clip --device "$device" --steps "$steps" $(with_torch native/benches/clip_baseline.py)
# shellcheck disable=SC2046
bench ssl --ssl "$work/data" --device "$device" --graph-count "$count" \
    $(with_torch native/benches/ssl_baseline.py)
bench graphs --graphs "$work/data" --device "$device" --graph-count "$count"
minilm=${XTAL_MINILM_DIR:-}
if [ -n "$minilm" ] && [ ! -f "$minilm/model.safetensors" ]; then
    # The architecture with random weights (a copy: the given folder is left as it is).
    cp -r "$minilm" "$work/minilm" && minilm=$work/minilm
    python3 - "$minilm" <<'EOF' > "$out/minilm-weights.log" 2>&1 || fail "MiniLM random weights"
import sys, torch
from transformers import BertConfig, BertModel
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(sys.argv[1])).save_pretrained(sys.argv[1], safe_serialization=True)
EOF
    echo "random weights" > "$work/minilm.random"
fi
if [ -n "$minilm" ] && [ -f "$minilm/model.safetensors" ]; then
    # shellcheck disable=SC2046
    bench minilm --text-model "$minilm" --device "$device" --runs "$runs" \
        $(with_torch native/benches/minilm_baseline.py)
else
    echo "MiniLM: skipped (set XTAL_MINILM_DIR)" >&2
fi

say "data-parallel training over two GPUs"
if [ "$device" = cuda ] && [ "$gpus" -ge 2 ]; then
    dp_devices=(cuda:0 cuda:1)
elif [ "$device" != cuda ]; then
    dp_devices=("$device" "$device") # a dry run of this leg, both ranks on one device
else
    dp_devices=()
fi
if [ "${#dp_devices[@]}" = 2 ]; then
    dp="$xtal train clip --config configs/sample_clip.json --data $work/data $(epochs_flag 2) --no-plots"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    t0=$(date +%s.%N)
    timeout 600 $dp --out "$work/dp-one" --device "${dp_devices[0]}" > "$out/dp-one.log" 2>&1 \
        || fail "data-parallel: one process on ${dp_devices[0]}"
    t1=$(date +%s.%N)
    for k in 0 1; do
        timeout 600 $dp --out "$work/dp-two" --device "${dp_devices[k]}" --nodes 2 --node-rank "$k" \
            --coordinator "127.0.0.1:$port" > "$out/dp-rank$k.log" 2>&1 &
        ranks[k]=$!
    done
    wait "${ranks[0]}" || fail "data-parallel: rank 0"
    wait "${ranks[1]}" || fail "data-parallel: rank 1"
    t2=$(date +%s.%N)
    timeout 600 $dp --out "$work/dp-devices" --device "${dp_devices[0]},${dp_devices[1]}" \
        > "$out/dp-devices.log" 2>&1 || fail "data-parallel: one process on two devices"
    t3=$(date +%s.%N)
    echo "$t0 $t1 $t2 $t3" > "$work/dp.times"
    echo "ran" > "$out/data-parallel.txt"
else
    echo "skipped: $gpus GPU(s)" > "$out/data-parallel.txt"
fi

say "summary"
python3 - "$out" "$work" "$device" "$(( $(date +%s) - start ))" "${failures[@]}" <<'EOF'
import json, os, sys
out, work, device, seconds, *failures = sys.argv[1:]

def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default

def epoch2(run):
    """Epoch 2's step losses and its losses (train_loss, val_loss) from a run's metrics.jsonl
    (an SSL run's: Block 3's)."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        path = os.path.join(run, "block3_sites", "metrics.jsonl")
    rows = [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
    steps = [r["loss"] for r in rows if r.get("kind") == "step" and r.get("epoch") == 2]
    epoch = next((r for r in rows if r.get("kind") == "epoch" and r.get("epoch") == 2), {})
    return steps + [epoch[k] for k in ("train_loss", "val_loss") if k in epoch], epoch

summary = {"device": device, "autotune_level": os.environ.get("CUBECL_AUTOTUNE_LEVEL"), "gpus": open(os.path.join(out, "gpus.txt")).read().strip().splitlines()
           if os.path.exists(os.path.join(out, "gpus.txt")) else [],
           "devices_check": load(os.path.join(out, "devices.json"))}
for name in ["clip", "ssl"]:
    cpu, dev = os.path.join(work, f"{name}-cpu"), os.path.join(work, f"{name}-on-{device}")
    if not (os.path.isdir(cpu) and os.path.isdir(dev)):
        summary[f"parity_{name}"] = {"error": "did not run"}
        continue
    (a, ea), (b, eb) = epoch2(cpu), epoch2(dev)
    rel = max((abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b)), default=float("nan"))
    # CLIP logs every step's loss; an SSL block only its epoch's training and validation loss.
    ok = len(a) == len(b) >= 2 and rel <= 1e-3
    times = open(os.path.join(work, f"{name}.times")).read().split() if os.path.exists(os.path.join(work, f"{name}.times")) else None
    entry = {"losses": len(a), "max_rel_diff_loss": rel, "ok": ok,
             "cpu_losses": a, "device_losses": b,
             "cpu_epoch": {k: v for k, v in ea.items() if isinstance(v, (int, float))},
             "device_epoch": {k: v for k, v in eb.items() if isinstance(v, (int, float))}}
    if times:
        t0, t1, t2 = map(float, times)
        entry["epoch_seconds_cpu"], entry["epoch_seconds_device"] = t1 - t0, t2 - t1
    summary[f"parity_{name}"] = entry
    if not ok:
        failures.append(f"parity {name}: max relative loss difference {rel:.2e} over {len(a)}/{len(b)} losses")
for name in ["matmul", "clip", "ssl", "graphs", "minilm"]:
    summary[f"bench_{name}"] = load(os.path.join(out, f"bench-{name}.json"))
summary["minilm_weights"] = "random (same architecture)" if os.path.exists(os.path.join(work, "minilm.random")) else "as given"
summary["data_parallel"] = open(os.path.join(out, "data-parallel.txt")).read().strip()
if summary["data_parallel"] == "ran":
    def epochs(run):
        path = os.path.join(run, "metrics.jsonl")
        rows = [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
        return [r for r in rows if r.get("kind") == "epoch"]
    one, two = epochs(os.path.join(work, "dp-one")), epochs(os.path.join(work, "dp-two"))
    both = epochs(os.path.join(work, "dp-devices"))
    pairs = [(a[k], b[k]) for run in (two, both) for a, b in zip(one, run)
             for k in ("train_loss", "val_loss")]
    rel = max((abs(x - y) / max(abs(x), 1e-12) for x, y in pairs), default=float("nan"))
    t0, t1, t2, t3 = map(float, open(os.path.join(work, "dp.times")).read().split())
    ok = len(one) == len(two) == len(both) == 2 and rel <= 1e-3
    summary["data_parallel"] = {"one_process": one, "two_ranks": two,
                                "two_devices_one_process": both, "max_rel_diff_loss": rel,
                                "ok": ok, "seconds_one_process": t1 - t0,
                                "seconds_two_ranks": t2 - t1,
                                "seconds_two_devices_one_process": t3 - t2}
    if not ok:
        failures.append(f"data-parallel: max relative loss difference {rel:.2e}")
summary["seconds"] = int(seconds)
summary["failures"] = failures
with open(os.path.join(out, "gpu.json"), "w") as f:
    json.dump(summary, f, indent=1)

print(f"GPU check on {device}: {', '.join(summary['gpus']) or 'no nvidia-smi'} ({seconds} s)")
for row in summary["devices_check"] or []:
    print(f"  devices --check {row.get('spec')}: usable={row.get('usable')} diff={row.get('check_max_abs_diff_vs_cpu')} {row.get('check_error') or ''}")
for name in ["clip", "ssl"]:
    p = summary[f"parity_{name}"]
    if "error" in p:
        print(f"  parity {name}: {p['error']}")
    else:
        print(f"  parity {name}: {p['losses']} losses, max rel diff {p['max_rel_diff_loss']:.2e} "
              f"({'ok' if p['ok'] else 'MISMATCH'}); epoch {p.get('epoch_seconds_cpu', 0):.1f} s cpu, "
              f"{p.get('epoch_seconds_device', 0):.1f} s {device}")
for name in ["matmul", "clip", "ssl", "graphs", "minilm"]:
    print(f"  bench {name}: {json.dumps(summary[f'bench_{name}'])}")
print(f"  data parallel: {summary['data_parallel']}")
print(f"  failures: {failures or 'none'}")
sys.exit(1 if failures else 0)
EOF
