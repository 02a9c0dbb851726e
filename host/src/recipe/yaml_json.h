// YAML <-> JSON conversion. Recipes are written for PyYAML's safe_load, so plain scalars are
// resolved the way it does (plus 1e-2 style floats); the result is ordered JSON so that key
// order survives into modifiers and back into the saved recipe.yaml.
#pragma once

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <string>

namespace llmc {

// Converts a parsed YAML node. Plain scalars become null/bool/int/float/string by their text,
// quoted or block scalars (tag "!") and !!str stay strings; mapping keys are kept as text, in
// order; `<<` merge keys are applied as PyYAML does. Duplicate keys, non-scalar keys and
// unknown tags are errors that name `source` and the line/column.
nlohmann::ordered_json yaml_to_json(const YAML::Node &n, const std::string &source = "");

// Builds a YAML node that yaml_to_json turns back into the same JSON (strings are tagged "!"
// so "true" or "123" stay strings). For text, use yaml_dump: YAML::Emitter would not quote them.
YAML::Node json_to_yaml(const nlohmann::ordered_json &j);

// YAML text: block mappings, lists of scalars in flow style (`targets: [Linear]`), block lists
// otherwise, strings quoted only where a plain scalar would read back differently.
std::string yaml_dump(const nlohmann::ordered_json &j);

// What a plain (unquoted, untagged) scalar's text means.
nlohmann::ordered_json yaml_resolve_plain(const std::string &text);

// "source:line:column" (1-based) for a node, or just source when the mark is unknown.
std::string yaml_location(const std::string &source, const YAML::Mark &mark);

} // namespace llmc
