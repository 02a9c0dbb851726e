// The parts the Llama family is built from, with Hugging Face's class names.
// Parameters are created as meta tensors (shape only) and filled by the model (loaded or random);
// a standalone module needs its params set before it is called.
// Submodules are always invoked through module::call so their hooks fire.
#pragma once

#include "model/config.h"
#include "model/module.h"

#include <functional>
#include <memory>

namespace llmc {

// torch.nn.Linear: y = x W^T + b. Input {x}.
// What a Linear does to its input, weight and output when fake-quantization is on (set by
// quant/forward.cpp; empty functions leave the tensor as it is).
struct linear_fake_quant {
    std::function<at::Tensor(const module &, const at::Tensor &)> input, weight, output;
};

// What an attention module's kv cache would hold: keys after rotary (and k_norm), values as
// v_proj returns them, both [batch, kv_heads, seq, head_dim], before repeat_kv.
struct attention_fake_quant {
    std::function<at::Tensor(const module &, const at::Tensor &)> key, value;
};

class linear : public module {
  public:
    linear(int64_t in_features, int64_t out_features, bool bias);
    const int64_t in_features;
    const int64_t out_features;
    std::shared_ptr<const linear_fake_quant> fake_quant; // null: plain Linear

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;
};

// torch.nn.Embedding. Input {ids} (int64, any shape) -> ids.shape + [dim].
class embedding : public module {
  public:
    embedding(int64_t num_embeddings, int64_t embedding_dim);
    const int64_t num_embeddings;
    const int64_t embedding_dim;

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;
};

// LlamaRMSNorm and relatives: in float32, x * rsqrt(mean(x^2) + eps), cast back, times weight.
// Input {x}; normalizes the last dimension.
class rms_norm : public module {
  public:
    rms_norm(std::string class_name, int64_t dim, double eps);
    const double eps;

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;
};

// torch.nn.SiLU, the MLP's act_fn. Input {x}.
class silu : public module {
  public:
    silu();

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;
};

// LlamaRotaryEmbedding: no parameters (inv_freq is not persistent in transformers either).
// Input {position_ids} int64 [seq] or [batch, seq] -> stacked {cos, sin}: [2, (batch,) seq, head_dim],
// in `dtype`, cos/sin of cat(freqs, freqs) as transformers computes them (float32 first).
class rotary_embedding : public module {
  public:
    rotary_embedding(const model_config &cfg, at::ScalarType dtype);
    const at::Tensor &inv_freq() const { return inv_freq_; }
    at::ScalarType dtype;

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;

  private:
    at::Tensor inv_freq_;
};

// LlamaAttention (and relatives): q/k/v/o projections, optional per-head q/k RMSNorm (Qwen3),
// rotary with rotate_half, grouped-query attention, causal (optionally sliding-window) mask,
// softmax in float32. Input {hidden [b,s,h], cos, sin} plus an optional attention_mask [b,s]
// (1 = token, 0 = padding) masking keys.
class attention : public module {
  public:
    attention(const model_config &cfg, int64_t layer_idx);
    const int64_t layer_idx;
    const int64_t num_heads;
    const int64_t num_kv_heads;
    const int64_t head_dim;
    const int64_t sliding_window; // 0: full causal attention
    const double scaling;
    std::shared_ptr<const attention_fake_quant> fake_quant; // null: the kv cache is not quantized

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;

  private:
    module *q_proj_, *k_proj_, *v_proj_, *o_proj_;
    module *q_norm_ = nullptr, *k_norm_ = nullptr;
};

// LlamaMLP: down_proj(act_fn(gate_proj(x)) * up_proj(x)). Input {x}.
class mlp : public module {
  public:
    explicit mlp(const model_config &cfg);

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;

  private:
    module *gate_proj_, *up_proj_, *down_proj_, *act_fn_;
};

// LlamaDecoderLayer: pre-norm attention and MLP with residuals. Input as attention's.
class decoder_layer : public module {
  public:
    decoder_layer(const model_config &cfg, int64_t layer_idx);
    const int64_t layer_idx;

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;

  private:
    module *self_attn_, *mlp_, *input_layernorm_, *post_attention_layernorm_;
};

// torch.nn.ModuleList: a container, not callable.
class module_list : public module {
  public:
    module_list();

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override;
};

// "[2, 3, 4]" for error messages.
std::string shape_string(at::IntArrayRef shape);

// The shared 3-D [batch, seq, features] check with a message naming the module.
void expect_hidden(const module &m, const at::Tensor &x, int64_t features);

} // namespace llmc
