// Reading a compressed-tensors checkpoint back: each quantized module's weight is unpacked and
// dequantized with its stored qparams (through quant/), so evaluation measures the saved files.
#pragma once

#include "io/safetensors.h"
#include "model/module.h"
#include "quant/args.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace llmc::exporter {

class compressed_reader {
  public:
    // nullptr unless config.json holds a quantization_config with quant_method
    // "compressed-tensors". Modules are matched to config groups by targets and ignore as
    // compressed-tensors does (first matching group); only modules with a "weight" parameter whose
    // format is not dense are decompressed. Malformed configs throw naming the field.
    static std::shared_ptr<compressed_reader> open(const nlohmann::json &config,
                                                   std::shared_ptr<const safetensors_model> checkpoint,
                                                   const std::vector<module *> &modules);

    // True for "<module>.weight" when that weight is stored compressed.
    bool covers(const std::string &param) const { return plans_.count(param) != 0; }
    // The dense shape of a covered weight.
    std::vector<int64_t> shape(const std::string &param) const;
    // The checkpoint tensors that hold a covered weight and its qparams.
    std::vector<std::string> stored_as(const std::string &param) const;
    // The dense weight in dtype.
    at::Tensor read(const std::string &param, at::ScalarType dtype) const;
    // Activation / kv-cache qparams and the like of quantized modules: the dense model has no
    // place for them, and they are not an error.
    bool is_qparam(const std::string &tensor) const;

    const std::string &format() const { return format_; }

    // What the saved model quantizes at inference besides its weights, as vLLM runs it: input /
    // output activations of quantized Linear modules, and keys and values of attention modules
    // when the config has a kv_cache_scheme. `module` is then given its stored static qparams
    // (input_scale, ..., k_scale, v_scale; decoded, in the model dtype where stored as codes)
    // and its forward pass fake-quantizes them. Returns whether anything was turned on.
    bool activation_quantization_apply(module &m, at::ScalarType dtype) const;
    // Whether any module has activation or kv-cache quantization (for a log line).
    bool has_activation_quantization() const { return !activations_.empty() || kv_cache_.has_value(); }
    const std::optional<quant::quant_args> &kv_cache_scheme() const { return kv_cache_; }

  private:
    struct plan {
        std::string module;
        quant::quant_args weights;
        std::string format;
    };
    const plan &plan_of(const std::string &param) const;

    std::shared_ptr<const safetensors_model> st_;
    std::string format_;
    std::map<std::string, plan> plans_;  // by "<module>.weight"
    std::set<std::string> quantized_;    // modules whose qparam tensors are accepted
    std::map<std::string, quant::quant_scheme> activations_; // Linear modules with input/output args
    std::optional<quant::quant_args> kv_cache_;
};

} // namespace llmc::exporter
