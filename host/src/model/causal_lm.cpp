#include "model/causal_lm.h"

#include "export/decompress.h"
#include "io/tensor_write_queue.h"
#include "model/layers.h"
#include "util/error.h"
#include "util/progress.h"

#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace fs = std::filesystem;

namespace llmc {

namespace {

void check_ids(const module &m, const at::Tensor &ids) {
    if (!ids.defined() || ids.dim() != 2)
        fail("module '{}' ({}): input_ids must be [batch, seq], got {}", m.name(), m.class_name(),
             ids.defined() ? shape_string(ids.sizes()) : "undefined");
}

// LlamaModel: embeddings, decoder layers, final norm. Input {input_ids[, attention_mask]}.
class decoder_model : public module {
  public:
    decoder_model(const model_config &cfg, at::ScalarType dtype) : module(cfg.class_prefix() + "Model") {
        embed_tokens = add_child("embed_tokens", std::make_unique<embedding>(cfg.vocab_size, cfg.hidden_size));
        layers = add_child("layers", std::make_unique<module_list>());
        for (int64_t i = 0; i < cfg.num_hidden_layers; ++i)
            decoder.push_back(layers->add_child(std::to_string(i), std::make_unique<decoder_layer>(cfg, i)));
        norm = add_child("norm", std::make_unique<rms_norm>(cfg.class_prefix() + "RMSNorm", cfg.hidden_size,
                                                            cfg.rms_norm_eps));
        rotary_emb = add_child("rotary_emb", std::make_unique<rotary_embedding>(cfg, dtype));
    }

    module *embed_tokens, *layers, *norm, *rotary_emb;
    std::vector<module *> decoder;

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override {
        if (inputs.empty() || inputs.size() > 2)
            fail("module '{}' ({}): expected {{input_ids[, attention_mask]}}", name(), class_name());
        check_ids(*this, inputs[0]);
        at::Tensor hidden = embed_tokens->call({inputs[0]});
        const int64_t seq = inputs[0].size(1);
        at::Tensor cs = rotary_emb->call({at::arange(seq, inputs[0].options().dtype(at::kLong))});
        std::vector<at::Tensor> layer_in{hidden, cs[0], cs[1]};
        if (inputs.size() > 1 && inputs[1].defined())
            layer_in.push_back(inputs[1]);
        for (module *layer : decoder) {
            layer_in[0] = layer->call(layer_in);
        }
        return norm->call({layer_in[0]});
    }
};

// LlamaForCausalLM: the model plus lm_head. Input as decoder_model's; output logits.
class causal_lm_root : public module {
  public:
    causal_lm_root(const model_config &cfg, at::ScalarType dtype) : module(cfg.architecture) {
        model = add_child("model", std::make_unique<decoder_model>(cfg, dtype));
        lm_head = add_child("lm_head", std::make_unique<linear>(cfg.hidden_size, cfg.vocab_size, false));
    }

    decoder_model *model;
    module *lm_head;

  protected:
    at::Tensor forward(const std::vector<at::Tensor> &inputs) override {
        return lm_head->call({model->call(inputs)});
    }
};

void check_model_dtype(at::ScalarType dtype) {
    if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf)
        fail("model dtype must be float32, bfloat16 or float16, not {}", c10::toString(dtype));
}

std::string join_some(const std::vector<std::string> &items, size_t max = 10) {
    std::string s;
    for (size_t i = 0; i < items.size() && i < max; ++i)
        s += (i ? ", " : "") + items[i];
    if (items.size() > max)
        s += fmt::format(" and {} more", items.size() - max);
    return s;
}

} // namespace

causal_lm::causal_lm(model_config cfg, at::ScalarType dtype) : cfg_(std::move(cfg)), dtype_(dtype) {
    check_model_dtype(dtype);
    cfg_.torch_dtype = torch_dtype_name(dtype);
    auto r = std::make_unique<causal_lm_root>(cfg_, dtype);
    embed_tokens_ = r->model->embed_tokens;
    rotary_emb_ = r->model->rotary_emb;
    norm_ = r->model->norm;
    lm_head_ = r->lm_head;
    layers_ = r->model->decoder;
    resident_.assign(layers_.size(), 1);
    spilled_.resize(layers_.size());
    root_ = std::move(r);
    switch_ = std::make_shared<hook_switch>();
    root_->finalize_tree(switch_);
}

causal_lm::~causal_lm() = default;

void causal_lm::tie_weights() {
    if (cfg_.tie_word_embeddings)
        lm_head_->params["weight"] = embed_tokens_->params.at("weight");
}

std::unique_ptr<causal_lm> causal_lm::load(const std::string &dir, at::ScalarType dtype, bool lazy) {
    model_config cfg = model_config::load(dir);
    check_model_dtype(dtype);
    // Open the checkpoint before building anything: a bad directory fails fast.
    auto source = std::make_shared<safetensors_model>(dir);
    const safetensors_model &st = *source;
    std::unique_ptr<causal_lm> m(new causal_lm(std::move(cfg), dtype));
    m->source_dir_ = dir;
    m->source_ = source;
    std::set<const module *> in_layers;
    for (module *l : m->layers_) l->walk([&](module &x) { in_layers.insert(&x); });
    if (lazy) std::fill(m->resident_.begin(), m->resident_.end(), 0);
    // compressed-tensors checkpoints: quantized weights are read back dense.
    auto compressed = exporter::compressed_reader::open(m->cfg_.raw, source, m->modules());
    if (compressed)
        m->decompress_ = [compressed](const std::string &name, at::ScalarType d) {
            return compressed->covers(name) ? compressed->read(name, d) : at::Tensor();
        };
    if (compressed && compressed->has_activation_quantization()) {
        m->activation_quant_ = [compressed, dtype](module &mod) { compressed->activation_quantization_apply(mod, dtype); };
        spdlog::info("{}: activations{} are fake-quantized as quantization_config says", dir,
                     compressed->kv_cache_scheme() ? " and the kv cache" : "");
    }

    std::vector<std::string> missing, wrong, unexpected;
    std::set<std::string> used;
    for (module *mod : m->modules()) {
        for (auto &[key, t] : mod->params) {
            const std::string name = mod->name().empty() ? key : mod->name() + "." + key;
            if (mod == m->lm_head_ && key == "weight" && m->cfg_.tie_word_embeddings)
                continue; // tied: the embedding's weight, filled below
            if (compressed && compressed->covers(name)) {
                for (const auto &n : compressed->stored_as(name)) used.insert(n);
                if (compressed->shape(name) != t.sizes().vec()) {
                    wrong.push_back(fmt::format("{} decompresses to shape {}, expected {}", name,
                                                shape_string(compressed->shape(name)), shape_string(t.sizes())));
                    continue;
                }
                if (!(lazy && in_layers.count(mod))) t = compressed->read(name, dtype);
                continue;
            }
            if (!st.contains(name)) {
                missing.push_back(name);
                continue;
            }
            used.insert(name);
            const auto &info = st.info(name);
            if (info.shape != t.sizes().vec()) {
                wrong.push_back(fmt::format("{} has shape {}, expected {}", name, shape_string(info.shape),
                                            shape_string(t.sizes())));
                continue;
            }
            if (info.raw_codes || !c10::isFloatingType(info.scalar_type)) {
                wrong.push_back(fmt::format("{} has dtype {}, expected a float dtype", name, info.dtype));
                continue;
            }
            if (!(lazy && in_layers.count(mod))) t = st.tensor(name).to(dtype);
        }
    }
    if (m->cfg_.tie_word_embeddings && st.contains("lm_head.weight")) {
        // Some tied checkpoints (stories260K) store the copy anyway; it must at least fit.
        used.insert("lm_head.weight");
        const auto &info = st.info("lm_head.weight");
        if (info.shape != std::vector<int64_t>{m->cfg_.vocab_size, m->cfg_.hidden_size})
            wrong.push_back(fmt::format("lm_head.weight has shape {}, expected [{}, {}]", shape_string(info.shape),
                                        m->cfg_.vocab_size, m->cfg_.hidden_size));
    }
    for (const auto &n : st.names()) {
        // transformers once saved rotary_emb.inv_freq buffers; it ignores them on load, and so do we.
        const std::string suffix = "rotary_emb.inv_freq";
        const bool inv_freq = n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (!used.count(n) && !inv_freq && !(compressed && compressed->is_qparam(n)))
            unexpected.push_back(n);
    }
    std::string problems;
    if (!missing.empty())
        problems += fmt::format("\n  missing tensors: {}", join_some(missing));
    if (!wrong.empty())
        problems += fmt::format("\n  mismatched tensors: {}", join_some(wrong));
    if (!unexpected.empty())
        problems += fmt::format("\n  unexpected tensors (not part of {} with this config): {}",
                                m->cfg_.architecture, join_some(unexpected));
    if (!problems.empty())
        fail("{}: checkpoint does not match config.json:{}", dir, problems);
    m->tie_weights();
    if (m->activation_quant_)
        for (module *mod : m->modules())
            if (!(lazy && in_layers.count(mod))) m->activation_quant_(*mod);
    return m;
}

std::unique_ptr<causal_lm> causal_lm::random(const model_config &cfg, uint64_t seed, at::ScalarType dtype) {
    std::unique_ptr<causal_lm> m(new causal_lm(cfg, dtype));
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const double std_dev = m->cfg_.initializer_range;
    for (module *mod : m->modules()) {
        const bool norm = mod->class_name().size() >= 7 &&
                          mod->class_name().compare(mod->class_name().size() - 7, 7, "RMSNorm") == 0;
        for (auto &[key, t] : mod->params) {
            at::Tensor v = norm ? at::ones(t.sizes(), at::kFloat)
                                : at::empty(t.sizes(), at::kFloat).normal_(0.0, std_dev, gen);
            t = v.to(dtype);
        }
    }
    m->tie_weights();
    return m;
}

module *causal_lm::find(const std::string &name) {
    module *m = root_.get();
    size_t start = 0;
    while (m && start < name.size()) {
        size_t dot = name.find('.', start);
        if (dot == std::string::npos)
            dot = name.size();
        m = m->child(name.substr(start, dot - start));
        start = dot + 1;
    }
    return m;
}

std::vector<module *> causal_lm::modules() {
    std::vector<module *> out;
    root_->walk([&](module &m) { out.push_back(&m); });
    return out;
}

module &causal_lm::layer(size_t i) {
    if (i >= layers_.size())
        fail("layer {} out of range: the model has {} layers", i, layers_.size());
    return *layers_[i];
}

at::Tensor causal_lm::embed(const at::Tensor &input_ids) {
    check_ids(*root_, input_ids);
    return embed_tokens_->call({input_ids});
}

std::pair<at::Tensor, at::Tensor> causal_lm::rotary(int64_t seq_len) {
    if (seq_len < 0)
        fail("rotary: negative sequence length {}", seq_len);
    const at::Tensor &w = embed_tokens_->params.at("weight");
    at::Tensor cs = rotary_emb_->call({at::arange(seq_len, at::TensorOptions().dtype(at::kLong).device(w.device()))});
    return {cs[0], cs[1]};
}

at::Tensor causal_lm::layer_forward(size_t i, const at::Tensor &hidden, const at::Tensor &attention_mask) {
    module &l = layer(i);
    expect_hidden(l, hidden, cfg_.hidden_size);
    auto [cos, sin] = rotary(hidden.size(1));
    std::vector<at::Tensor> in{hidden, cos, sin};
    if (attention_mask.defined())
        in.push_back(attention_mask);
    return l.call(in);
}

at::Tensor causal_lm::head(const at::Tensor &hidden) {
    expect_hidden(*norm_, hidden, cfg_.hidden_size);
    return lm_head_->call({norm_->call({hidden})});
}

at::Tensor causal_lm::forward(const at::Tensor &input_ids, const at::Tensor &attention_mask) {
    if (attention_mask.defined())
        return root_->call({input_ids, attention_mask});
    return root_->call({input_ids});
}

std::vector<std::pair<std::string, at::Tensor>> causal_lm::state_dict(bool include_tied) {
    return module_state(*root_, include_tied);
}

void causal_lm::save(const std::string &dir, uint64_t max_shard_bytes, const save_hooks &hooks) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
        fail("{}: cannot create directory: {}", dir, ec.message());
    // Layer by layer: a layer that is not resident is read from where it lives, written, and
    // released again, so saving needs one layer of memory.
    // Room for the header in front of each shard, so every byte is written once: an entry is
    // its name and under 100 bytes of JSON; a transform (the exporter) turns a weight into up to
    // three tensors (packed, shape, and one more). Too small only costs a copy.
    uint64_t header_reserve = 1024;
    for (module *mod : modules())
        for (const auto &[name, t] : own_state(*mod, false)) {
            const bool weight = name.size() >= 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
            header_reserve += (name.size() + 100) * (hooks.transform && weight ? 3 : 1);
        }
    safetensors_sharded_writer writer(dir, max_shard_bytes, {{"format", "pt"}}, header_reserve);
    // The file writes run on a thread of their own while the next module is compressed (all
    // intra-op threads stay on the compression: measured faster than giving the writer one).
    // Queued tensors stay in memory until written: room for about one module's output, so one
    // is written while the next is compressed, and a save's memory stays about one layer.
    tensor_write_queue queue(writer, uint64_t{64} << 20);
    // One module's own tensors, through the caller's transform.
    auto write_module = [&](module &mod) {
        std::vector<saved_tensor> own;
        for (auto &[name, t] : own_state(mod, false)) own.push_back({name, t, ""});
        if (hooks.transform) hooks.transform(mod, own);
        for (const auto &st : own) {
            if (!st.tensor.defined() || st.tensor.is_meta()) fail("cannot save: tensor '{}' has no data", st.name);
            queue.push(st.name, st.tensor, st.dtype);
        }
    };
    std::set<const module *> layer_set(layers_.begin(), layers_.end());
    bool layers_done = false;
    // Modules in named_modules order; each decoder layer as one unit.
    std::vector<module *> order = modules();
    for (size_t k = 0; k < order.size(); ++k) {
        module *mod = order[k];
        if (layer_set.count(mod)) {
            if (layers_done) continue;
            layers_done = true;
            progress bar("saving", layers_.size());
            for (size_t i = 0; i < layers_.size(); ++i) {
                const bool was = layer_resident(i);
                if (!was) layer_onload(i);
                layers_[i]->walk(write_module);
                if (!was) layer_release(i);
                bar.step();
            }
            continue;
        }
        bool inside_layer = false;
        for (module *p = mod->parent(); p != nullptr && !inside_layer; p = p->parent()) inside_layer = layer_set.count(p) != 0;
        if (inside_layer) continue;
        write_module(*mod);
    }
    queue.finish();
    writer.finish();

    model_config c = cfg_;
    c.torch_dtype = torch_dtype_name(dtype_);
    nlohmann::json j = c.to_json();
    // A quantization_config read with the checkpoint described how it was stored; what is written
    // here is what the model holds now, so only the caller's config_extra may describe it.
    j.erase("quantization_config");
    const bool extra = hooks.config_extra.is_object() && !hooks.config_extra.empty();
    if (extra)
        for (const auto &[key, value] : hooks.config_extra.items()) j[key] = value;
    const fs::path path = fs::path(dir) / "config.json";
    const fs::path tmp = fs::path(dir) / "config.json.partial";
    {
        std::ofstream out(tmp, std::ios::binary);
        // compressed-tensors rewrites config.json with json.dump(indent=2, sort_keys=True):
        // ASCII escapes and no final newline; transformers' own writer ends with one.
        if (extra) out << j.dump(2, ' ', true);
        else out << j.dump(2) << "\n";
        if (!out)
            fail("{}: cannot write", tmp.string());
    }
    fs::rename(tmp, path, ec);
    if (ec)
        fail("{}: cannot rename into place: {}", path.string(), ec.message());
}

} // namespace llmc
