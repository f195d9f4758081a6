#!/usr/bin/env bash
# Makes the site's demo bundle, www/demo.xtal: the main job's recipe (the sample's descriptions
# and captions, configs/sample_clip.json) with a CGCNN graph encoder (configs/demo_clip.json),
# so that every structure can be embedded, packed f16 with an index of every structure of the
# shared data (12,017; ../shared/data/materials.csv or $XTAL_INDEX_CSV), or of the sample's 833
# when that file is absent. Prepares and trains what runs/ lacks (about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
xtal() { cargo run --quiet --release -p xtal -- "$@"; }
index_csv=${XTAL_INDEX_CSV:-../shared/data/materials.csv}
[ -f runs/sample-dataset/dataset.jsonl ] ||
    xtal prepare data/sample/materials.csv -o runs/sample-dataset \
        --text-column description --text-column caption --force
[ -f runs/demo-clip/checkpoints/best.ckpt ] ||
    xtal train clip --config configs/demo_clip.json --data runs/sample-dataset \
        --out runs/demo-clip --force
index=runs/sample-dataset
if [ -f "$index_csv" ]; then
    index=runs/index-dataset
    [ -f "$index/dataset.jsonl" ] ||
        xtal prepare "$index_csv" -o "$index" --text-column description --text-column caption --force
else
    echo "$index_csv is absent: the index holds the sample's structures" >&2
fi
xtal bundle pack --run runs/demo-clip --index-structures "$index" --f16 -o www/demo.xtal --force
echo "www/demo.xtal is ready: python3 -m http.server -d www 8000, then open http://localhost:8000" >&2
