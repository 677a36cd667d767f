#!/usr/bin/env bash
# The pipeline on the real Kaggle poster set. Needs the CSV (kaggle.com/neha1703/movie-genre-from-its-poster)
# and network access for the poster download and the ImageNet weights (or a pre-populated torch cache).
set -euo pipefail
CSV=${1:?usage: examples/kaggle_pipeline.sh MovieGenre.csv [posters-dir]}
POSTERS=${2:-$(dirname "$CSV")/posters}
np=".venv/bin/neuroposter"
$np data download --csv "$CSV" --posters "$POSTERS"            # resumable; prints failures by kind
$np data import -c examples/configs/kaggle_import.yaml --csv "$CSV" --posters "$POSTERS"
$np features --weights imagenet --batch-size 32                # ~6 GB float16 token store for 37k posters
$np encode
$np encode --form pooled --name pooled
for m in sdt ann-transformer cnn vit; do $np train --model "$m"; done
$np train --model snn-mlp --encoded pooled
$np export --target nir
$np export --target loihi --samples 64
for m in cnn vit ann-transformer; do $np export --target onnx --model "$m"; done
$np report
