#include "export/tensor_codec.h"

#include "export/formats.h"
#include "io/safetensors.h"
#include "quant/float_formats.h"
#include "quant/qparams.h"
#include "util/error.h"

namespace llmc::exporter {

using quant::dtype_id;

scale_storage scale_storage_of(const quant::quant_args &args) {
    if (!args.scale_dtype) return scale_storage::plain;
    if (*args.scale_dtype == dtype_id::float8_e4m3fn) return scale_storage::fp8_e4m3;
    if (quant::is_mx(args)) return scale_storage::e8m0;
    return scale_storage::plain;
}

scale_storage weight_scale_storage(const quant::quant_args &args, const std::string &format) {
    if (format == fmt_name::mxfp4_pack_quantized || format == fmt_name::mxfp8_quantized) return scale_storage::e8m0;
    if (format == fmt_name::nvfp4_pack_quantized) return scale_storage::fp8_e4m3;
    return scale_storage_of(args);
}

encoded_tensor plain(const at::Tensor &t) { return {t, safetensors_dtype_name(t.scalar_type())}; }

encoded_tensor encode_scale(const at::Tensor &scale, const quant::quant_args &args, scale_storage storage,
                            at::ScalarType model_dtype) {
    switch (storage) {
    case scale_storage::e8m0: return {quant::e8m0_from_scale(scale), "U8"};
    case scale_storage::fp8_e4m3: return {quant::fp8_e4m3_encode(scale), "F8_E4M3"};
    case scale_storage::plain: break;
    }
    if (args.scale_dtype) {
        if (*args.scale_dtype == dtype_id::float8_e5m2)
            fail("scale_dtype {} cannot be written: only float8_e4m3fn codes are supported",
                 quant::to_string(*args.scale_dtype));
        // Values were already rounded to scale_dtype by the qparam math; this only changes storage.
        return plain(scale.to(quant::holding_scalar_type(*args.scale_dtype)));
    }
    return plain(scale.to(model_dtype));
}

at::Tensor decode_scale(const at::Tensor &stored, const std::string &dtype, scale_storage storage,
                        at::ScalarType model_dtype) {
    if (dtype == "F8_E4M3") return quant::fp8_e4m3_decode(stored, at::kFloat).to(model_dtype);
    if (storage == scale_storage::e8m0) {
        if (dtype != "U8") fail("an E8M0 scale must be stored as U8, not {}", dtype);
        return quant::e8m0_to_scale(stored, model_dtype);
    }
    if (c10::isFloatingType(stored.scalar_type())) return stored;
    return stored.to(model_dtype);
}

encoded_tensor encode_zero_point(const at::Tensor &zp, const quant::quant_args &args) {
    const dtype_id d = args.zp_dtype ? *args.zp_dtype : dtype_id::int8;
    if (d == dtype_id::float8_e4m3fn) return {quant::fp8_e4m3_encode(zp), "F8_E4M3"};
    if (d == dtype_id::float8_e5m2) fail("zp_dtype float8_e5m2 cannot be written");
    return plain(zp.to(quant::holding_scalar_type(d)));
}

at::Tensor decode_zero_point(const at::Tensor &stored, const std::string &dtype) {
    if (dtype == "F8_E4M3") return quant::fp8_e4m3_decode(stored, at::kFloat);
    return stored;
}

encoded_tensor encode_global_scale(const at::Tensor &gs) { return plain(gs.to(at::kFloat).reshape({1})); }

} // namespace llmc::exporter
