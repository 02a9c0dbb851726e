#include "model/layers.h"

#include "util/error.h"

#include <cmath>
#include <limits>

namespace llmc {

namespace {

at::Tensor meta(at::IntArrayRef shape) {
    return at::empty(shape, at::TensorOptions().device(at::kMeta).dtype(at::kFloat));
}

void expect_inputs(const module &m, const std::vector<at::Tensor> &inputs, size_t lo, size_t hi) {
    if (inputs.size() < lo || inputs.size() > hi)
        fail("module '{}' ({}): expected {} to {} inputs, got {}", m.name(), m.class_name(), lo, hi, inputs.size());
    for (size_t i = 0; i < lo; ++i)
        if (!inputs[i].defined())
            fail("module '{}' ({}): input {} is undefined", m.name(), m.class_name(), i);
}

const at::Tensor &param(const module &m, const char *key) {
    auto it = m.params.find(key);
    if (it == m.params.end() || !it->second.defined() || it->second.is_meta())
        fail("module '{}' ({}): parameter '{}' is not set", m.name(), m.class_name(), key);
    return it->second;
}

// transformers' rotate_half: cat(-x2, x1) over the last dimension's halves.
at::Tensor rotate_half(const at::Tensor &x) {
    const int64_t half = x.size(-1) / 2;
    return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

} // namespace

std::string shape_string(at::IntArrayRef shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

void expect_hidden(const module &m, const at::Tensor &x, int64_t features) {
    if (x.dim() != 3 || x.size(2) != features)
        fail("module '{}' ({}): expected hidden states [batch, seq, {}], got {}", m.name(), m.class_name(), features,
             shape_string(x.sizes()));
}

// ---------------------------------------------------------------------------------------------

linear::linear(int64_t in, int64_t out, bool bias) : module("Linear"), in_features(in), out_features(out) {
    params["weight"] = meta({out, in});
    if (bias)
        params["bias"] = meta({out});
}

at::Tensor linear::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 1, 1);
    const at::Tensor &x = inputs[0];
    if (x.dim() < 1 || x.size(-1) != in_features)
        fail("module '{}' (Linear): input has {} features, expected {}", name(), x.dim() ? x.size(-1) : 0,
             in_features);
    auto b = params.find("bias");
    const at::Tensor bias = b == params.end() ? at::Tensor() : b->second;
    if (!fake_quant) return at::linear(x, param(*this, "weight"), bias);
    const linear_fake_quant &q = *fake_quant;
    at::Tensor xq = q.input ? q.input(*this, x) : x;
    at::Tensor wq = q.weight ? q.weight(*this, param(*this, "weight")) : param(*this, "weight");
    at::Tensor y = at::linear(xq.to(wq.scalar_type()), wq, bias);
    return q.output ? q.output(*this, y) : y;
}

embedding::embedding(int64_t num, int64_t dim) : module("Embedding"), num_embeddings(num), embedding_dim(dim) {
    params["weight"] = meta({num, dim});
}

at::Tensor embedding::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 1, 1);
    const at::Tensor &ids = inputs[0];
    if (ids.scalar_type() != at::kLong && ids.scalar_type() != at::kInt)
        fail("module '{}' (Embedding): token ids must be int64, got {}", name(), c10::toString(ids.scalar_type()));
    if (ids.numel() > 0) {
        const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
        if (lo < 0 || hi >= num_embeddings)
            fail("module '{}' (Embedding): token id {} outside the vocabulary [0, {})", name(), lo < 0 ? lo : hi,
                 num_embeddings);
    }
    return at::embedding(param(*this, "weight"), ids);
}

rms_norm::rms_norm(std::string class_name, int64_t dim, double eps_) : module(std::move(class_name)), eps(eps_) {
    params["weight"] = meta({dim});
}

at::Tensor rms_norm::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 1, 1);
    const at::Tensor &w = param(*this, "weight");
    const at::Tensor &x = inputs[0];
    if (x.dim() < 1 || x.size(-1) != w.size(0))
        fail("module '{}' ({}): input has {} features, expected {}", name(), class_name(), x.dim() ? x.size(-1) : 0,
             w.size(0));
    at::Tensor h = x.to(at::kFloat);
    at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
    h = h * at::rsqrt(variance + eps);
    return w * h.to(x.scalar_type());
}

silu::silu() : module("SiLU") {}

at::Tensor silu::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 1, 1);
    return at::silu(inputs[0]);
}

rotary_embedding::rotary_embedding(const model_config &cfg, at::ScalarType dtype_)
    : module(cfg.class_prefix() + "RotaryEmbedding"), dtype(dtype_), inv_freq_(rope_inv_freq(cfg)) {}

at::Tensor rotary_embedding::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 1, 1);
    const at::Tensor &pos = inputs[0];
    if (pos.dim() != 1 && pos.dim() != 2)
        fail("module '{}' ({}): position ids must be [seq] or [batch, seq], got {}", name(), class_name(),
             shape_string(pos.sizes()));
    // freqs[..., s, i] = pos[s] * inv_freq[i] in float32, then cos/sin of cat(freqs, freqs).
    at::Tensor freqs = pos.to(at::kFloat).unsqueeze(-1) * inv_freq_.to(pos.device());
    at::Tensor emb = at::cat({freqs, freqs}, -1);
    return at::stack({emb.cos().to(dtype), emb.sin().to(dtype)});
}

// ---------------------------------------------------------------------------------------------

attention::attention(const model_config &cfg, int64_t idx)
    : module(cfg.class_prefix() + "Attention"), layer_idx(idx), num_heads(cfg.num_attention_heads),
      num_kv_heads(cfg.num_key_value_heads), head_dim(cfg.head_dim),
      sliding_window(idx < static_cast<int64_t>(cfg.layer_sliding_window.size()) ? cfg.layer_sliding_window[idx] : 0),
      scaling(std::pow(static_cast<double>(cfg.head_dim), -0.5)) {
    const int64_t h = cfg.hidden_size;
    q_proj_ = add_child("q_proj", std::make_unique<linear>(h, num_heads * head_dim, cfg.qkv_bias));
    k_proj_ = add_child("k_proj", std::make_unique<linear>(h, num_kv_heads * head_dim, cfg.qkv_bias));
    v_proj_ = add_child("v_proj", std::make_unique<linear>(h, num_kv_heads * head_dim, cfg.qkv_bias));
    o_proj_ = add_child("o_proj", std::make_unique<linear>(num_heads * head_dim, h, cfg.o_bias));
    if (cfg.qk_norm) {
        const std::string norm_class = cfg.class_prefix() + "RMSNorm";
        q_norm_ = add_child("q_norm", std::make_unique<rms_norm>(norm_class, head_dim, cfg.rms_norm_eps));
        k_norm_ = add_child("k_norm", std::make_unique<rms_norm>(norm_class, head_dim, cfg.rms_norm_eps));
    }
}

at::Tensor attention::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 3, 4);
    const at::Tensor &x = inputs[0];
    if (x.dim() != 3)
        fail("module '{}' ({}): expected hidden states [batch, seq, hidden], got {}", name(), class_name(),
             shape_string(x.sizes()));
    const int64_t b = x.size(0), s = x.size(1);
    // cos/sin: [seq, head_dim] or [batch, seq, head_dim]; add the heads dimension.
    at::Tensor cos = inputs[1], sin = inputs[2];
    if (cos.dim() < 2 || cos.dim() > 3 || cos.size(-2) != s || cos.size(-1) != head_dim || !cos.sizes().equals(sin.sizes()))
        fail("module '{}' ({}): cos/sin {} / {} do not fit {} positions of head_dim {}", name(), class_name(),
             shape_string(cos.sizes()), shape_string(sin.sizes()), s, head_dim);
    if (cos.dim() == 3) {
        cos = cos.unsqueeze(1);
        sin = sin.unsqueeze(1);
    }

    at::Tensor q = q_proj_->call({x}).view({b, s, num_heads, head_dim});
    at::Tensor k = k_proj_->call({x}).view({b, s, num_kv_heads, head_dim});
    at::Tensor v = v_proj_->call({x}).view({b, s, num_kv_heads, head_dim}).transpose(1, 2);
    if (q_norm_) {
        q = q_norm_->call({q});
        k = k_norm_->call({k});
    }
    q = q.transpose(1, 2);
    k = k.transpose(1, 2);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    if (fake_quant) {
        // The kv cache stores quantized keys and values; attention reads them dequantized.
        if (fake_quant->key) k = fake_quant->key(*this, k);
        if (fake_quant->value) v = fake_quant->value(*this, v);
    }

    // repeat_kv: each kv head serves num_heads / num_kv_heads query heads.
    const int64_t groups = num_heads / num_kv_heads;
    if (groups > 1) {
        k = k.unsqueeze(2).expand({b, num_kv_heads, groups, s, head_dim}).reshape({b, num_heads, s, head_dim});
        v = v.unsqueeze(2).expand({b, num_kv_heads, groups, s, head_dim}).reshape({b, num_heads, s, head_dim});
    }

    at::Tensor scores = (at::matmul(q, k.transpose(2, 3)) * scaling).to(at::kFloat);
    // Masked entries get float's lowest value (as transformers), so fully padded rows stay finite.
    const float lowest = std::numeric_limits<float>::lowest();
    at::Tensor pos = at::arange(s, at::TensorOptions().dtype(at::kLong).device(x.device()));
    at::Tensor dist = pos.unsqueeze(1) - pos.unsqueeze(0); // query - key
    at::Tensor masked = dist < 0;
    if (sliding_window > 0)
        masked = at::logical_or(masked, dist >= sliding_window);
    scores.masked_fill_(masked, lowest);
    if (inputs.size() > 3 && inputs[3].defined()) {
        const at::Tensor &am = inputs[3];
        if (am.dim() != 2 || am.size(0) != b || am.size(1) != s)
            fail("module '{}' ({}): attention_mask must be [batch, seq] = [{}, {}], got {}", name(), class_name(), b,
                 s, shape_string(am.sizes()));
        scores.masked_fill_(am.eq(0).view({b, 1, 1, s}), lowest);
    }
    at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());
    at::Tensor out = at::matmul(probs, v).transpose(1, 2).reshape({b, s, num_heads * head_dim});
    return o_proj_->call({out});
}

// ---------------------------------------------------------------------------------------------

mlp::mlp(const model_config &cfg) : module(cfg.class_prefix() + "MLP") {
    const int64_t h = cfg.hidden_size, i = cfg.intermediate_size;
    gate_proj_ = add_child("gate_proj", std::make_unique<linear>(h, i, cfg.mlp_bias));
    up_proj_ = add_child("up_proj", std::make_unique<linear>(h, i, cfg.mlp_bias));
    down_proj_ = add_child("down_proj", std::make_unique<linear>(i, h, cfg.mlp_bias));
    act_fn_ = add_child("act_fn", std::make_unique<silu>());
}

at::Tensor mlp::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 1, 1);
    const at::Tensor &x = inputs[0];
    return down_proj_->call({act_fn_->call({gate_proj_->call({x})}) * up_proj_->call({x})});
}

decoder_layer::decoder_layer(const model_config &cfg, int64_t idx)
    : module(cfg.class_prefix() + "DecoderLayer"), layer_idx(idx) {
    const std::string norm_class = cfg.class_prefix() + "RMSNorm";
    self_attn_ = add_child("self_attn", std::make_unique<attention>(cfg, idx));
    mlp_ = add_child("mlp", std::make_unique<mlp>(cfg));
    input_layernorm_ =
        add_child("input_layernorm", std::make_unique<rms_norm>(norm_class, cfg.hidden_size, cfg.rms_norm_eps));
    post_attention_layernorm_ = add_child("post_attention_layernorm",
                                          std::make_unique<rms_norm>(norm_class, cfg.hidden_size, cfg.rms_norm_eps));
}

at::Tensor decoder_layer::forward(const std::vector<at::Tensor> &inputs) {
    expect_inputs(*this, inputs, 3, 4);
    at::Tensor hidden = inputs[0];
    std::vector<at::Tensor> attn_in = inputs;
    attn_in[0] = input_layernorm_->call({hidden});
    hidden = hidden + self_attn_->call(attn_in);
    return hidden + mlp_->call({post_attention_layernorm_->call({hidden})});
}

module_list::module_list() : module("ModuleList") {}

at::Tensor module_list::forward(const std::vector<at::Tensor> &) {
    fail("module '{}' (ModuleList) is a container and cannot be called", name());
}

} // namespace llmc
