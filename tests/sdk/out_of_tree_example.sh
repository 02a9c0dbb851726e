#!/usr/bin/env bash
# The SDK as a third party uses it: install llmc into a fresh prefix, build the WeightClamp example
# as a separate CMake project with find_package(llmc) alone, then list it, run the conformance kit
# on it and compress the real tiny model with it.
# usage: out_of_tree_example.sh BUILD_DIR EXAMPLE_DIR SHARED_DIR
set -euo pipefail
build=$1 example=$2 shared=$3
work=$(mktemp -d "$build/test-tmp/oot-XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$example" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
plugin="$work/build/libllmc-weight_clamp.so"
test -f "$plugin" || { echo "FAIL: the example did not produce $plugin"; exit 1; }

"$work/prefix/bin/llmc-host" --plugins "$work/build" --list-plugins | tee "$work/list.txt"
grep -q '^WeightClampModifier' "$work/list.txt" || { echo "FAIL: the host does not list the example"; exit 1; }
"$work/prefix/bin/llmc-conformance" "$plugin"

if [ ! -d "$shared/models/stories260K" ]; then
  echo "SKIP: shared test data not found at $shared: the oneshot part did not run"
  exit 0
fi
# The tutorial's recipe, unchanged.
cat > "$work/recipe.yaml" <<'YAML'
weight_clamp_stage:
  weight_clamp_modifiers:
    WeightClampModifier:
      max_weight_magnitude: 0.05
      targets:
      - Linear
      ignore:
      - lm_head
YAML
"$work/prefix/bin/llmc-host" --plugins "$work/build" --recipe "$work/recipe.yaml" \
  --model "$shared/models/stories260K" --output "$work/out" --log-level warn
"$work/prefix/bin/llmc-inspect" "$work/out" --json "$work/stats.json" >/dev/null
"$work/prefix/bin/llmc-inspect" "$shared/models/stories260K" --json "$work/base.json" >/dev/null
# Every targeted weight is clamped; lm_head/embeddings are not.
python3 - "$work/stats.json" "$work/base.json" <<'PY'
import json, sys
out = {t["name"]: t for t in json.load(open(sys.argv[1]))["tensors"]}
base = {t["name"]: t for t in json.load(open(sys.argv[2]))["tensors"]}
proj = [n for n in out if n.endswith("_proj.weight")]
assert len(proj) == 35, len(proj)
for n in proj:
    assert out[n]["absmax"] <= 0.05 + 1e-7, (n, out[n]["absmax"])
assert any(base[n]["absmax"] > 0.05 for n in proj), "the base model already fits: the test proves nothing"
assert out["model.embed_tokens.weight"]["absmax"] == base["model.embed_tokens.weight"]["absmax"]
print("example clamped", len(proj), "weights to 0.05")
PY
