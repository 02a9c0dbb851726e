// compressed-tensors 0.18 CompressionFormat selection: which format a quantized module is saved
// in, and the model-level format written to quantization_config.format.
#pragma once

#include "quant/args.h"

#include <set>
#include <string>

namespace llmc::exporter {

namespace fmt_name {
inline const std::string dense = "dense";
inline const std::string int_quantized = "int-quantized";
inline const std::string float_quantized = "float-quantized";
inline const std::string naive_quantized = "naive-quantized";
inline const std::string pack_quantized = "pack-quantized";
inline const std::string mixed_precision = "mixed-precision";
inline const std::string nvfp4_pack_quantized = "nvfp4-pack-quantized";
inline const std::string mxfp4_pack_quantized = "mxfp4-pack-quantized";
inline const std::string mxfp8_quantized = "mxfp8-quantized";
} // namespace fmt_name

// Only torch.nn.Linear and torch.nn.Embedding modules are compressed; anything else is dense.
bool is_compressible(const std::string &class_name);
// get_vllm_module_type: MoE router/gate classes count as "Linear" when the ignore list is built.
std::string vllm_module_type(const std::string &class_name);
// is_attention_module: the class name contains "attention" (any case). A scheme attached to such
// a module is a kv-cache scheme, not a config group.
bool is_attention_class(const std::string &class_name);

// The scheme's own `format` if set, else the first match of 0.18's priority list:
// mxfp4-pack (FP4 g32) > mxfp8 (FP8 g32 uint8 scales) > nvfp4-pack (FP4 g16) > int-quantized
// (INT weights + input activations) > pack-quantized (INT 1..8 bits, no float inputs) >
// float-quantized (FLOAT weights + input activations) > naive-quantized (any weights) > dense.
std::string infer_module_format(const std::string &class_name, const quant::quant_scheme &scheme);

// The single non-dense format, "dense" when there is none, "mixed-precision" for several.
std::string model_format(const std::set<std::string> &module_formats);

// Formats whose weights this exporter can write (the compressed ones above plus dense).
bool is_supported_format(const std::string &format);

} // namespace llmc::exporter
