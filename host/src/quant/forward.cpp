#include "quant/forward.h"

#include "model/layers.h"
#include "quant/qparams.h"
#include "util/error.h"

namespace llmc::quant {

namespace {

const at::Tensor *buffer(const module &m, const std::string &name) {
    auto it = m.buffers.find(name);
    return it == m.buffers.end() || !it->second.defined() ? nullptr : &it->second;
}

// Qparams stored on the module under `<prefix>_scale`, `_zero_point`, `_global_scale`.
bool stored_qparams(const module &m, const std::string &prefix, qparams &out) {
    const at::Tensor *s = buffer(m, prefix + "_scale");
    if (s == nullptr) return false;
    out.scale = *s;
    if (const at::Tensor *z = buffer(m, prefix + "_zero_point")) out.zero_point = *z;
    if (const at::Tensor *g = buffer(m, prefix + "_global_scale")) out.global_scale = *g;
    return true;
}

// An activation: dynamic (and "local") qparams come from the tensor itself; static ones from the
// module's calibrated buffers.
std::function<at::Tensor(const module &, const at::Tensor &)> activation(const quant_args &args,
                                                                         const std::string &prefix) {
    return [args, prefix](const module &m, const at::Tensor &x) {
        if (args.is_dynamic()) return fake_quantize_dynamic(args, x, buffer(m, prefix + "_global_scale"));
        qparams qp;
        if (!stored_qparams(m, prefix, qp))
            fail("module '{}': static {} quantization needs calibrated '{}_scale' (run calibration first)", m.name(),
                 prefix, prefix);
        return fake_quantize(args, x, qp).to(x.scalar_type());
    };
}

} // namespace

void forward_quantization_set(module &m, const quant_scheme *scheme) {
    auto *lin = dynamic_cast<linear *>(&m);
    if (lin == nullptr) fail("fake-quantization applies to Linear modules; '{}' is a {}", m.name(), m.class_name());
    if (scheme == nullptr) {
        lin->fake_quant.reset();
        return;
    }
    auto fq = std::make_shared<linear_fake_quant>();
    if (scheme->weights) {
        const quant_args args = *scheme->weights;
        fq->weight = [args](const module &mod, const at::Tensor &w) {
            qparams qp;
            const at::Tensor *g_idx = buffer(mod, "weight_g_idx");
            if (!stored_qparams(mod, "weight", qp)) qp = qparams_observe(args, w, observed_role::weight, nullptr, g_idx);
            return fake_quantize(args, w, qp, g_idx).to(w.scalar_type());
        };
    }
    if (scheme->input_activations) fq->input = activation(*scheme->input_activations, "input");
    if (scheme->output_activations) fq->output = activation(*scheme->output_activations, "output");
    lin->fake_quant = fq;
}

void forward_kv_quantization_set(module &m, const quant_args *kv) {
    auto *attn = dynamic_cast<attention *>(&m);
    if (attn == nullptr)
        fail("kv-cache quantization applies to attention modules; '{}' is a {}", m.name(), m.class_name());
    if (kv == nullptr) {
        attn->fake_quant.reset();
        return;
    }
    // Per-tensor scales broadcast over [batch, kv_heads, seq, head_dim]; attn_head scales
    // ([kv_heads, 1, 1]) cannot be calibrated through ABI 1.0, so nothing produces them yet.
    if (kv->strategy != quant_strategy::tensor && !kv->is_dynamic())
        fail("module '{}': kv-cache fake-quantization supports static strategy 'tensor' only", m.name());
    auto fq = std::make_shared<attention_fake_quant>();
    fq->key = activation(*kv, "k");
    fq->value = activation(*kv, "v");
    attn->fake_quant = fq;
}

} // namespace llmc::quant
