#!/usr/bin/env bash
# Before/after of the runner-vocabulary change: the same `eie bench` on the parent commit's
# binary (before) and this commit's (after), alternated twice, on the CPU and on lavapipe.
set -euo pipefail
before=$1 after=$2 out=$3
export XDG_RUNTIME_DIR=$(mktemp -d)
for round in 1 2; do
  for which in before after; do
    bin=${!which}
    "$bin" bench --layers Alex-7,NT-We,NT-Wd --batch 1,64 --samples 7 --gpu-reps 2 --no-chain \
      --out "$out/$which-$round" > "$out/$which-$round.log" 2>&1
  done
done
