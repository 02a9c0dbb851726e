// The whole decoder-only model (LlamaForCausalLM and relatives) over the module tree, with
// Hugging Face's module names, class names and tensor names.
#pragma once

#include "io/safetensors.h"
#include "model/config.h"
#include "model/module.h"

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace llmc {

// One tensor as save() writes it. An empty dtype writes the tensor's own; an explicit safetensors
// dtype writes its bytes as they are (uint8 codes as "F8_E4M3").
struct saved_tensor {
    std::string name;
    at::Tensor tensor;
    std::string dtype;
};

// What a caller may change in save(): the exporter turns quantized modules into their
// compressed-tensors form and adds quantization_config.
struct save_hooks {
    // Called once per module, in named_modules order, with that module's own parameters and
    // buffers (full Hugging Face names); it may replace, add or drop entries. Decoder layers are
    // resident while their modules are transformed.
    std::function<void(module &, std::vector<saved_tensor> &)> transform;
    // Top-level keys merged into config.json. When set, config.json is written the way
    // compressed-tensors' update_config rewrites it: indent 2, keys sorted, ASCII, no final newline.
    nlohmann::json config_extra;
};

class causal_lm {
  public:
    // Weights from config.json + safetensors in dir, converted to dtype (float32, bfloat16 or
    // float16). Tensors already in dtype stay zero-copy views of the (copy-on-write) mapping.
    // Every expected tensor must exist with its shape; unexpected tensors are an error too
    // (except lm_head.weight when tied, and old checkpoints' rotary_emb.inv_freq).
    // lazy: the decoder layers stay on disk until layer_onload (memory bounded by one layer);
    // the embeddings, final norm and lm_head are loaded at once.
    static std::unique_ptr<causal_lm> load(const std::string &dir, at::ScalarType dtype = at::kFloat,
                                           bool lazy = false);
    // Deterministic random weights: normal(0, initializer_range) (0.02 by default), norms 1.
    static std::unique_ptr<causal_lm> random(const model_config &cfg, uint64_t seed,
                                             at::ScalarType dtype = at::kFloat);
    ~causal_lm();
    causal_lm(const causal_lm &) = delete;
    causal_lm &operator=(const causal_lm &) = delete;

    const model_config &config() const { return cfg_; }
    at::ScalarType dtype() const { return dtype_; }
    // The directory the weights came from ("" for a random model).
    const std::string &source_dir() const { return source_dir_; }

    module &root() { return *root_; }
    // By full dotted name ("" is the root); nullptr when absent.
    module *find(const std::string &name);
    // Pre-order, root first, as torch's named_modules().
    std::vector<module *> modules();

    size_t num_layers() const { return layers_.size(); }
    module &layer(size_t i);
    module &embed_tokens() { return *embed_tokens_; }
    module &final_norm() { return *norm_; }
    module &lm_head() { return *lm_head_; }

    // [batch, seq] int64 -> [batch, seq, hidden]
    at::Tensor embed(const at::Tensor &input_ids);
    // cos, sin [seq_len, head_dim] in the model dtype for positions 0..seq_len-1.
    std::pair<at::Tensor, at::Tensor> rotary(int64_t seq_len);
    // One decoder layer on [batch, seq, hidden]; attention_mask [batch, seq] (1 token, 0 pad) optional.
    at::Tensor layer_forward(size_t i, const at::Tensor &hidden, const at::Tensor &attention_mask = {});
    // Final norm + lm_head -> logits [batch, seq, vocab].
    at::Tensor head(const at::Tensor &hidden);
    // input_ids [batch, seq] -> logits [batch, seq, vocab], through root().call.
    at::Tensor forward(const at::Tensor &input_ids, const at::Tensor &attention_mask = {});

    hook_switch &hooks() { return *switch_; }

    // --- layer residency (model/layer_residency.cpp). A released layer's parameters are meta
    // tensors; onload reads them back from where the layer was last spilled, else the checkpoint.
    bool layer_resident(size_t i) const { return resident_.at(i) != 0; }
    void layer_onload(size_t i);
    void layers_onload_all();
    // Drops the layer's parameters and buffers from memory (they must have been spilled or be
    // unchanged since loading, else the changes are lost: spill first).
    void layer_release(size_t i);
    // Writes the layer's parameters and buffers to `path` (safetensors) and makes it the layer's
    // source; the layer stays resident.
    void layer_spill(size_t i, const std::string &path);
    // Parameters and buffers of a module subtree by Hugging Face name, in state_dict order.
    std::vector<std::pair<std::string, at::Tensor>> module_state(module &m, bool include_tied = false);

    // Parameters and buffers by Hugging Face tensor name, in torch's state_dict order; the tied
    // lm_head.weight only when include_tied.
    std::vector<std::pair<std::string, at::Tensor>> state_dict(bool include_tied = false);

    // config.json (as read, torch_dtype set to the model's dtype, a read quantization_config
    // dropped: the weights held are dense) and safetensors with HF names (tied lm_head.weight
    // omitted), sharded past max_shard_bytes, streamed layer by layer.
    void save(const std::string &dir,
              uint64_t max_shard_bytes = safetensors_sharded_writer::default_max_shard_bytes,
              const save_hooks &hooks = {});

  private:
    causal_lm(model_config cfg, at::ScalarType dtype);
    void tie_weights();
    // A module's own parameters and buffers, in state_dict order.
    std::vector<std::pair<std::string, at::Tensor>> own_state(module &m, bool include_tied);
    // A parameter from the checkpoint (decompressed when it is stored compressed).
    at::Tensor read_param(const std::string &name);

    model_config cfg_;
    at::ScalarType dtype_;
    std::string source_dir_;
    std::shared_ptr<hook_switch> switch_;
    std::unique_ptr<module> root_;
    module *embed_tokens_ = nullptr;
    module *rotary_emb_ = nullptr;
    module *norm_ = nullptr;
    module *lm_head_ = nullptr;
    std::vector<module *> layers_;
    std::vector<char> resident_;
    std::shared_ptr<safetensors_model> source_;               // the checkpoint (lazy models)
    // Set for compressed-tensors checkpoints: a parameter stored compressed, read back dense
    // (undefined when the parameter is stored as it is).
    std::function<at::Tensor(const std::string &, at::ScalarType)> decompress_;
    // compressed-tensors checkpoints: gives a loaded module its stored activation / kv-cache
    // qparams and turns their fake-quantization on (layers get them again on each onload).
    std::function<void(module &)> activation_quant_;
    std::vector<std::shared_ptr<safetensors_file>> spilled_;  // per layer, once spilled
};

} // namespace llmc
