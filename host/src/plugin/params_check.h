// Host-side check of a recipe's modifier fields against the plugin's published parameters, so a
// bad field fails before anything runs (the plugin checks again in create).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace llmc {

// llm-compressor's Modifier fields that every modifier accepts.
bool params_is_common_field(const std::string &name);

// Returns "" when `fields` (a JSON object) fits `schema` (the plugin's params array), else the
// first problem as "field 'x': why".
std::string params_check(const nlohmann::json &schema, const nlohmann::json &fields);

// `fields` with every declared default filled in, in declaration order (what recipe.yaml saves,
// like llm-compressor's model_dump()).
nlohmann::ordered_json params_with_defaults(const nlohmann::json &schema, const nlohmann::ordered_json &fields);

} // namespace llmc
