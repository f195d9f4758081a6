#!/usr/bin/env bash
# Makes the site's demo bundle, www/demo.xtal: the README main job's CLIP model of the sample
# materials with its searchable index, stored f16 (half the download). Prepares the data and
# trains the model first when runs/ does not have them (about 4 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
xtal() { cargo run --quiet --release -p xtal -- "$@"; }
[ -f runs/sample-dataset/dataset.jsonl ] ||
    xtal prepare data/sample/materials.csv -o runs/sample-dataset \
        --text-column description --text-column caption --force
[ -f runs/sample-clip/checkpoints/best.ckpt ] ||
    xtal train clip --config configs/sample_clip.json --data runs/sample-dataset \
        --out runs/sample-clip --force
xtal bundle pack --run runs/sample-clip --index runs/sample-dataset --f16 -o www/demo.xtal --force
echo "www/demo.xtal is ready: python3 -m http.server -d www 8000, then open http://localhost:8000" >&2
