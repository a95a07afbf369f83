#!/usr/bin/env bash
# Train the tiny world's text-to-video model on a lent GPU, in one device call.
#
# On a 2-core CPU a 16-frame video step takes about 3 s, so one session trains <= 3000 steps; the toy
# runs of the README needed ~3000 video steps to bind their motion words. A GPU does that in
# minutes. Two steps:
#
#   here:        bash benchmarks/gpu_tiny_world.sh wheels
#                (downloads the Python 3.12 wheels the device image lacks into .whl/, which
#                 .git/info/exclude must list: echo /.whl/ >> .git/info/exclude)
#   device tool: run(command="bash benchmarks/gpu_tiny_world.sh train", carry=[".whl"],
#                    timeout_s=600)
#
# `train` runs `tools.tiny_world.train_t2v --device cuda` for TRAIN_SECONDS (default 420), continuing
# the shipped model (run Q2: INIT=ivlite/assets/tiny_world, its UNet and its frozen text encoder,
# INIT_PARTS=all; INIT= starts from scratch) on zero terminal SNR with v prediction and sinusoidal
# frame positions (README, tiny world), exports the EMA
# weights and copies unet/, text_encoder/, scheduler/ and the log to $OUT. Extra arguments go to
# train_t2v (they override the defaults below, e.g. --batch 32). Ship the result as the README's
# tiny-world section says (copy the three folders into ivlite/assets/tiny_world, write_manifest).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = wheels ]; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -d .whl diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 \
        importlib_metadata
    ls -l .whl
    exit 0
fi
[ "${1:-}" = train ] || { echo "usage: $0 wheels|train [train_t2v args]" >&2; exit 2; }
shift

if ! "$PYTHON" -c "import diffusers, open_clip" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu_out}
RUN=${RUN:-/tmp/tiny_world_run}
mkdir -p "$OUT" "$RUN"
"$PYTHON" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers',
diffusers.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

INIT=${INIT-ivlite/assets/tiny_world}
args=(--vae ivlite/assets/tiny_world/vae --out "$RUN" --schedule zero-snr-v --snr-floor 1
      --frame-positions sinusoidal --image-steps 300 --video-steps 100000 --save-every 250)
# INIT_PARTS=unet takes the UNet only, with a fresh frozen encoder and a new image stage (what
# run Q2 did from run C, whose jointly trained encoder had collapsed the motion words).
[ -n "$INIT" ] && args+=(--init-from "$INIT" --init-parts "${INIT_PARTS:-all}")
# train_t2v checkpoints every --save-every steps; the timeout stops it and the export below
# takes the last checkpoint's EMA weights.
timeout "${TRAIN_SECONDS:-420}" "$PYTHON" -m tools.tiny_world.train_t2v "${args[@]}" "$@" \
    2>&1 | tee "$OUT/train.out" || true
"$PYTHON" -m tools.tiny_world.train_t2v "${args[@]}" "$@" --resume --export-only > /dev/null
for part in unet text_encoder scheduler; do
    [ -d "$RUN/export/$part" ] && cp -r "$RUN/export/$part" "$OUT/"
done
cp "$RUN/log.jsonl" "$OUT/"
ls -lR "$OUT"
