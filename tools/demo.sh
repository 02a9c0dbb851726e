#!/usr/bin/env bash
# A demo that needs no download:
#  1. write a small random Llama and random calibration token ids;
#  2. compress it with the in-tree GPTQModifier plugin and recipes/w4a16_gptq.yaml into a
#     compressed-tensors checkpoint, and measure it against the original with llmc-eval;
#  3. install the SDK, build the example third-party plugin (WeightClampModifier) against it out
#     of tree, and run the tutorial's recipe with it.
# usage: tools/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
demo="$build/demo"
rm -rf "$demo" && mkdir -p "$demo"
"$build/host/llmc-make-model" --family llama --layers 4 --hidden 256 --intermediate 768 --heads 8 --kv-heads 4 \
  --vocab 512 --output "$demo/model"
# 64 samples of 128 random token ids (a random model has no tokenizer; real runs pass text).
awk 'BEGIN { srand(1); for (s = 0; s < 64; s++) { printf "{\"input_ids\": ["; for (t = 0; t < 128; t++) printf "%s%d", (t ? ", " : ""), int(rand() * 512); print "]}" } }' > "$demo/calib.jsonl"

echo "== GPTQ W4A16 with the in-tree plugins"
"$build/host/llmc-host" --plugins "$build/plugins" --list-plugins
"$build/host/llmc-host" --plugins "$build/plugins" --recipe recipes/w4a16_gptq.yaml \
  --model "$demo/model" --dataset "$demo/calib.jsonl" --num-calibration-samples 64 --output "$demo/w4a16"
"$build/host/llmc-inspect" "$demo/w4a16" > "$demo/w4a16-tensors.txt"
head -8 "$demo/w4a16-tensors.txt"
"$build/host/llmc-eval" --model "$demo/w4a16" --base "$demo/model" --dataset "$demo/calib.jsonl" --max-seq-length 128

echo "== a third-party plugin built against the installed SDK"
cmake --install "$build" --prefix "$demo/prefix" >/dev/null
cmake -S examples/weight_clamp -B "$demo/plugin-build" -G Ninja -DCMAKE_PREFIX_PATH="$PWD/$demo/prefix" >/dev/null
cmake --build "$demo/plugin-build" >/dev/null
cat > "$demo/clamp.yaml" <<'YAML'
weight_clamp_stage:
  weight_clamp_modifiers:
    WeightClampModifier:
      max_weight_magnitude: 0.03
      targets: [Linear]
      ignore: [lm_head]
YAML
"$build/host/llmc-host" --plugins "$demo/plugin-build" --recipe "$demo/clamp.yaml" \
  --model "$demo/model" --output "$demo/clamped"
echo "demo: outputs in $demo (w4a16: compressed-tensors checkpoint with recipe.yaml and run_report.json)"
