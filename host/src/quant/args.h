// compressed-tensors 0.18 QuantizationArgs and QuantizationScheme: fields, defaults, validation and
// their JSON form (what config.json's quantization_config holds). One definition serves recipe
// parsing, the numerics in qparams.h and the exporter.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace llmc::quant {

enum class quant_type { int_, float_ };
enum class quant_strategy { tensor, channel, group, block, token, tensor_group, attn_head };
// The spelling is kept as given ("static" stays "static" in the saved config); semantics go
// through canonical(): dynamic == group, static == weight.
enum class actorder_kind { group, weight, dynamic, static_ };
// dynamic=false / true / "local" (local: global scale static, local scales computed at runtime).
enum class dynamic_kind { static_, dynamic, local };

// torch dtypes that may appear as scale_dtype / zp_dtype. LibTorch 1.13 has no float8, so these
// are our own ids; to_scalar_type() maps the ones ATen knows.
enum class dtype_id {
    float64, float32, float16, bfloat16, float8_e4m3fn, float8_e5m2,
    int64, int32, int16, int8, uint8,
};

std::string to_string(quant_type t);
std::string to_string(quant_strategy s);
std::string to_string(actorder_kind a);
std::string to_string(dynamic_kind d);
// "torch.float8_e4m3fn" (str(torch.dtype)).
std::string to_string(dtype_id d);

actorder_kind canonical(actorder_kind a);
// Accepts "torch.xxx" or "xxx" and torch's aliases (half, float, double, int, long, short).
std::optional<dtype_id> dtype_from_string(const std::string &name);
bool is_floating(dtype_id d);
// torch.finfo(d).eps for floats (0.125 for float8_e4m3fn, as compressed-tensors special-cases),
// 1 for integer dtypes.
double dtype_eps(dtype_id d);
// finfo / iinfo min and max.
double dtype_min(dtype_id d);
double dtype_max(dtype_id d);

struct quant_args {
    int num_bits = 8;
    quant_type type = quant_type::int_;
    bool symmetric = true;
    std::optional<int> group_size;
    // Inferred by validate_args when unset; always engaged afterwards.
    std::optional<quant_strategy> strategy;
    std::optional<std::array<int, 2>> block_structure; // [rows, cols]
    dynamic_kind dynamic = dynamic_kind::static_;
    std::optional<actorder_kind> actorder;
    std::optional<dtype_id> scale_dtype;
    // Defaulted by validate_args (int8 / int16 / int32 / float8_e4m3fn); serialized null when
    // symmetric.
    std::optional<dtype_id> zp_dtype;
    // Defaulted by validate_args: static => "memoryless_minmax", dynamic => null, local =>
    // "minmax".
    std::optional<std::string> observer;
    nlohmann::json observer_kwargs = nlohmann::json::object();

    bool is_dynamic() const { return dynamic != dynamic_kind::static_; }
    bool is_fp4() const { return type == quant_type::float_ && num_bits == 4; }
    bool is_fp8() const { return type == quant_type::float_ && num_bits == 8; }
    bool operator==(const quant_args &o) const;
    bool operator!=(const quant_args &o) const { return !(*this == o); }
};

// QuantizationArgs' after-validator: infers strategy, enforces the rules of section 5.1 and fills
// observer and zp_dtype. Errors name `where` and the field.
void validate_args(quant_args &args, const std::string &where);
// Convenience: validated copy.
quant_args make_args(quant_args raw, const std::string &where = "quantization args");

// Parses one QuantizationArgs dict (unknown keys rejected) and validates it.
quant_args args_from_json(const nlohmann::json &j, const std::string &where);
// The 12 keys compressed-tensors dumps: actorder, block_structure, dynamic, group_size, num_bits,
// observer, observer_kwargs, scale_dtype, strategy, symmetric, type, zp_dtype.
nlohmann::json args_to_json(const quant_args &args);

struct quant_scheme {
    std::vector<std::string> targets;
    std::optional<quant_args> weights;
    std::optional<quant_args> input_activations;
    std::optional<quant_args> output_activations;
    // A CompressionFormat value ("pack-quantized", ...); "mixed-precision" is not allowed here.
    std::optional<std::string> format;

    bool operator==(const quant_scheme &o) const;
    bool operator!=(const quant_scheme &o) const { return !(*this == o); }
};

// The CompressionFormat values of compressed-tensors 0.18.
const std::vector<std::string> &compression_formats();

// QuantizationScheme's validator (activation strategies, no actorder on activations, format).
void validate_scheme(quant_scheme &scheme, const std::string &where);
quant_scheme scheme_from_json(const nlohmann::json &j, const std::string &where);
// Keys: format, input_activations, output_activations, targets, weights (nulls kept).
nlohmann::json scheme_to_json(const quant_scheme &scheme);

} // namespace llmc::quant
