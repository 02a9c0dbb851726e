#!/usr/bin/env bash
# A demo that needs no download: write a small random Llama, install the SDK, build the example
# third-party plugin (WeightClampModifier) against it, and compress the model with a recipe.
# usage: tools/demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
demo="$build/demo"
rm -rf "$demo" && mkdir -p "$demo"
"$build/host/llmc-make-model" --family llama --layers 4 --output "$demo/model"
cmake --install "$build" --prefix "$demo/prefix" >/dev/null
cmake -S examples/weight_clamp -B "$demo/plugin-build" -G Ninja -DCMAKE_PREFIX_PATH="$PWD/$demo/prefix" >/dev/null
cmake --build "$demo/plugin-build" >/dev/null
cat > "$demo/recipe.yaml" <<'YAML'
weight_clamp_stage:
  weight_clamp_modifiers:
    WeightClampModifier:
      max_weight_magnitude: 0.03
      targets: [Linear]
      ignore: [lm_head]
YAML
"$build/host/llmc-host" --plugins "$demo/plugin-build" --list-plugins
"$build/host/llmc-host" --plugins "$demo/plugin-build" --recipe "$demo/recipe.yaml" \
  --model "$demo/model" --output "$demo/output" --overwrite
"$build/host/llmc-inspect" "$demo/output" | head -12
echo "demo: compressed model in $demo/output (recipe.yaml saved beside it)"
