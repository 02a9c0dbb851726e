#include "export/formats.h"

#include <algorithm>
#include <cctype>

namespace llmc::exporter {

using quant::quant_type;

bool is_compressible(const std::string &class_name) {
    return class_name == "Linear" || class_name == "Embedding";
}

std::string vllm_module_type(const std::string &class_name) {
    for (const char *part : {"Router", "Gate", "Gating"})
        if (class_name.find(part) != std::string::npos) return "Linear";
    return class_name;
}

bool is_attention_class(const std::string &class_name) {
    std::string lower = class_name;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    return lower.find("attention") != std::string::npos;
}

std::string infer_module_format(const std::string &class_name, const quant::quant_scheme &scheme) {
    if (scheme.format) return *scheme.format;
    if (!is_compressible(class_name) || !scheme.weights) return fmt_name::dense;
    const auto &w = *scheme.weights;
    const bool has_input = scheme.input_activations.has_value();
    if (w.is_fp4() && w.group_size == 32) return fmt_name::mxfp4_pack_quantized;
    if (w.is_fp8() && w.group_size == 32 && w.scale_dtype == quant::dtype_id::uint8)
        return fmt_name::mxfp8_quantized;
    if (w.is_fp4() && w.group_size == 16) return fmt_name::nvfp4_pack_quantized;
    if (w.type == quant_type::int_ && has_input) return fmt_name::int_quantized;
    const bool float_input = has_input && scheme.input_activations->type == quant_type::float_;
    if (w.type == quant_type::int_ && w.num_bits >= 1 && w.num_bits <= 8 && !float_input)
        return fmt_name::pack_quantized;
    if (w.type == quant_type::float_ && has_input) return fmt_name::float_quantized;
    return fmt_name::naive_quantized;
}

std::string model_format(const std::set<std::string> &module_formats) {
    std::set<std::string> compressed = module_formats;
    compressed.erase(fmt_name::dense);
    if (compressed.empty()) return fmt_name::dense;
    if (compressed.size() == 1) return *compressed.begin();
    return fmt_name::mixed_precision;
}

bool is_supported_format(const std::string &f) {
    return f == fmt_name::dense || f == fmt_name::int_quantized || f == fmt_name::float_quantized ||
           f == fmt_name::naive_quantized || f == fmt_name::pack_quantized ||
           f == fmt_name::nvfp4_pack_quantized || f == fmt_name::mxfp4_pack_quantized ||
           f == fmt_name::mxfp8_quantized;
}

} // namespace llmc::exporter
