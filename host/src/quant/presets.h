// compressed-tensors 0.18 preset schemes (preset_name_to_scheme): "W4A16", "FP8_DYNAMIC", ...
#pragma once

#include "quant/args.h"

#include <string>
#include <vector>

namespace llmc::quant {

// Case-insensitive; throws llmc::error listing the valid names for an unknown one.
quant_scheme preset_scheme(const std::string &name, const std::vector<std::string> &targets);
bool is_preset(const std::string &name);
// Upper-case names in table order.
std::vector<std::string> preset_names();

} // namespace llmc::quant
