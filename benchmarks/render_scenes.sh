#!/usr/bin/env bash
# Render our own benchmark scenes with the bench's Blender generator (not committed: a scene
# is ~12 MB and takes 3-13 CPU minutes). Fast sampling; by seed mod 3 one of three lens/CoC
# profiles, to over-represent large blur: 0 the default (CoC diameter 12-30 px), 1 an 85 mm
# lens at 30-70 px, 2 a 135 mm lens at 70-110 px.
#   benchmarks/render_scenes.sh OUT_DIR SEED [SEED ...]
# Seeds 81xx were the tuning set, 82xx and 83xx held out (never tuned on).
set -euo pipefail
BENCH=${BENCH:-/work/shared/bench}
out=$1; shift
for seed in "$@"; do
  case $((seed % 3)) in
    0) profile="" ;;
    1) profile="--focal-mm 85 --coc-range 30 70" ;;
    2) profile="--focal-mm 135 --coc-range 70 110" ;;
  esac
  EXTRA="--spp-aif 128 --spp-bokeh 256 $profile" nice -n 19 "$BENCH/render_set.sh" "$out" "$seed"
done
