// How qparams are held on disk in a compressed-tensors checkpoint and back: scales in the model
// dtype (or their scale_dtype), FP8 scales as E4M3 codes, MX scales as E8M0 exponents, zero points
// in zp_dtype. The numerics stay in quant/; this only chooses dtypes and encodings.
#pragma once

#include "quant/args.h"

#include <ATen/ATen.h>

#include <string>

namespace llmc::exporter {

// A tensor with the safetensors dtype it is written as ("F8_E4M3" for uint8 codes).
struct encoded_tensor {
    at::Tensor tensor;
    std::string dtype;
};

enum class scale_storage { plain, fp8_e4m3, e8m0 };

// The storage of a weight scale in `format`: E8M0 for the MX formats, FP8 codes for NVFP4, else
// what args.scale_dtype says (float8_e4m3fn -> codes, MX args -> E8M0, another dtype -> that
// dtype) or, without one, the model dtype.
scale_storage weight_scale_storage(const quant::quant_args &args, const std::string &format);
// Activation and kv-cache scales: by args.scale_dtype alone.
scale_storage scale_storage_of(const quant::quant_args &args);

encoded_tensor encode_scale(const at::Tensor &scale, const quant::quant_args &args, scale_storage storage,
                            at::ScalarType model_dtype);
// Inverse: the float scale the numerics use. FP8 codes and E8M0 exponents come back in the model
// dtype (their values are exact there); float scales keep their stored dtype.
at::Tensor decode_scale(const at::Tensor &stored, const std::string &dtype, scale_storage storage,
                        at::ScalarType model_dtype);

// Zero points in zp_dtype (int8 by default; float8 zp_dtypes as E4M3 codes).
encoded_tensor encode_zero_point(const at::Tensor &zp, const quant::quant_args &args);
// Inverse: the zero point as quant/ holds it (integers as stored, float8 as float32 values).
at::Tensor decode_zero_point(const at::Tensor &stored, const std::string &dtype);

// float32 [1] global scales.
encoded_tensor encode_global_scale(const at::Tensor &gs);

// The plain safetensors form of an ATen tensor.
encoded_tensor plain(const at::Tensor &t);

} // namespace llmc::exporter
