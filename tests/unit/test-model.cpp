// The model: stories260K against its float64 reference logits, Hugging Face names and classes,
// the Qwen2/Qwen3/Mistral variants, save/load, hooks, rope scaling and load errors.
#include "io/safetensors.h"
#include "model/causal_lm.h"
#include "model/config.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace fs = std::filesystem;
using namespace llmc;

namespace {

const std::string stories_dir = std::string(LLMC_SHARED_DIR) + "/models/stories260K";

#define REQUIRE_STORIES()                                                                                      \
    if (!fs::exists(stories_dir + "/model.safetensors") || !fs::exists(stories_dir + "/reference_outputs.json")) \
    GTEST_SKIP() << "shared test data not found at " << stories_dir

class temp_dir {
  public:
    temp_dir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("llmc-test-model-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string str() const { return path_.string(); }
    fs::path operator/(const std::string &n) const { return path_ / n; }

  private:
    fs::path path_;
};

nlohmann::json tiny_config(const std::string &arch, const std::string &type) {
    return {{"architectures", {arch}},
            {"model_type", type},
            {"hidden_size", 32},
            {"intermediate_size", 48},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 2},
            {"vocab_size", 64},
            {"max_position_embeddings", 128},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},
            {"tie_word_embeddings", false}};
}

at::Tensor to_tensor(const nlohmann::json &rows) {
    std::vector<double> flat;
    for (const auto &r : rows)
        for (const auto &v : r)
            flat.push_back(v.get<double>());
    return at::tensor(flat, at::kDouble).reshape({static_cast<int64_t>(rows.size()), -1});
}

at::Tensor ids_tensor(const nlohmann::json &ids) {
    std::vector<int64_t> v = ids.get<std::vector<int64_t>>();
    return at::tensor(v, at::kLong).unsqueeze(0);
}

nlohmann::json reference() {
    std::ifstream in(stories_dir + "/reference_outputs.json");
    return nlohmann::json::parse(in);
}

template <class F> void expect_error(F &&f, std::initializer_list<std::string> needles) {
    try {
        f();
        ADD_FAILURE() << "no error thrown";
    } catch (const llmc::error &e) {
        const std::string msg = e.what();
        for (const auto &n : needles)
            EXPECT_NE(msg.find(n), std::string::npos) << "message lacks '" << n << "': " << msg;
    }
}

} // namespace

TEST(model, stories260k_matches_reference_logits) {
    REQUIRE_STORIES();
    auto m = causal_lm::load(stories_dir);
    const auto ref = reference();
    const auto &run = ref["runs"][0];
    at::Tensor ids = ids_tensor(run["ids"]);
    at::Tensor logits = m->forward(ids);
    ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{1, ids.size(1), 512}));
    EXPECT_EQ(logits.scalar_type(), at::kFloat);

    at::Tensor expected = to_tensor(run["logits_first16"]);
    ASSERT_EQ(expected.size(0), 16);
    at::Tensor got = logits[0].narrow(0, 0, 16).to(at::kDouble);
    const double max_diff = (got - expected).abs().max().item<double>();
    EXPECT_LT(max_diff, 1e-4);

    at::Tensor argmax = logits[0].argmax(-1);
    const auto want = run["argmax_per_position"].get<std::vector<int64_t>>();
    ASSERT_EQ(static_cast<int64_t>(want.size()), argmax.size(0));
    for (size_t i = 0; i < want.size(); ++i)
        EXPECT_EQ(argmax[i].item<int64_t>(), want[i]) << "position " << i;

    // The prompt run: argmax at every position.
    const auto &run1 = ref["runs"][1];
    at::Tensor logits1 = m->forward(ids_tensor(run1["ids"]));
    const auto want1 = run1["argmax_per_position"].get<std::vector<int64_t>>();
    at::Tensor argmax1 = logits1[0].argmax(-1);
    ASSERT_EQ(static_cast<int64_t>(want1.size()), argmax1.size(0));
    for (size_t i = 0; i < want1.size(); ++i)
        EXPECT_EQ(argmax1[i].item<int64_t>(), want1[i]) << "prompt run, position " << i;
}

TEST(model, stories260k_layer_by_layer_equals_forward) {
    REQUIRE_STORIES();
    auto m = causal_lm::load(stories_dir);
    at::Tensor ids = ids_tensor(reference()["runs"][1]["ids"]);
    at::Tensor h = m->embed(ids);
    EXPECT_EQ(h.sizes(), (std::vector<int64_t>{1, ids.size(1), 64}));
    for (size_t i = 0; i < m->num_layers(); ++i)
        h = m->layer_forward(i, h);
    EXPECT_TRUE(at::equal(m->head(h), m->forward(ids)));
    auto [cos, sin] = m->rotary(7);
    EXPECT_EQ(cos.sizes(), (std::vector<int64_t>{7, 8}));
    EXPECT_EQ(sin.sizes(), (std::vector<int64_t>{7, 8}));
    EXPECT_FLOAT_EQ(cos[0][3].item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(sin[0][3].item<float>(), 0.0f);
}

TEST(model, stories260k_bfloat16) {
    REQUIRE_STORIES();
    auto m = causal_lm::load(stories_dir, at::kBFloat16);
    EXPECT_EQ(m->find("model.layers.0.self_attn.q_proj")->params.at("weight").scalar_type(), at::kBFloat16);
    const auto run = reference()["runs"][0];
    at::Tensor logits = m->forward(ids_tensor(run["ids"])).to(at::kFloat);
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{1, 201, 512}));
    const auto want = run["argmax_per_position"].get<std::vector<int64_t>>();
    at::Tensor argmax = logits[0].argmax(-1);
    int64_t same = 0;
    for (size_t i = 0; i < want.size(); ++i)
        same += argmax[i].item<int64_t>() == want[i];
    EXPECT_GE(same, static_cast<int64_t>(want.size() * 9 / 10)) << same << " of " << want.size();
}

TEST(model, stories260k_names_and_classes) {
    REQUIRE_STORIES();
    auto m = causal_lm::load(stories_dir);
    EXPECT_EQ(m->root().class_name(), "LlamaForCausalLM");
    EXPECT_EQ(m->root().name(), "");
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"model", "LlamaModel"},
        {"model.embed_tokens", "Embedding"},
        {"model.layers", "ModuleList"},
        {"model.layers.0", "LlamaDecoderLayer"},
        {"model.layers.4.self_attn", "LlamaAttention"},
        {"model.layers.2.self_attn.q_proj", "Linear"},
        {"model.layers.2.self_attn.o_proj", "Linear"},
        {"model.layers.1.mlp", "LlamaMLP"},
        {"model.layers.1.mlp.down_proj", "Linear"},
        {"model.layers.1.mlp.act_fn", "SiLU"},
        {"model.layers.3.input_layernorm", "LlamaRMSNorm"},
        {"model.layers.3.post_attention_layernorm", "LlamaRMSNorm"},
        {"model.norm", "LlamaRMSNorm"},
        {"model.rotary_emb", "LlamaRotaryEmbedding"},
        {"lm_head", "Linear"},
    };
    for (const auto &[name, cls] : expected) {
        module *mod = m->find(name);
        ASSERT_NE(mod, nullptr) << name;
        EXPECT_EQ(mod->name(), name);
        EXPECT_EQ(mod->class_name(), cls) << name;
    }
    EXPECT_EQ(m->find("model.layers.5"), nullptr);
    EXPECT_EQ(m->find("model.nothing"), nullptr);
    EXPECT_EQ(m->find(""), &m->root());

    // named_modules order: root, model, embed_tokens, layers, layers.0, its attention, q_proj...
    auto mods = m->modules();
    ASSERT_EQ(mods.size(), 4u + 5u * 13u + 3u);
    const std::vector<std::string> head = {"",
                                           "model",
                                           "model.embed_tokens",
                                           "model.layers",
                                           "model.layers.0",
                                           "model.layers.0.self_attn",
                                           "model.layers.0.self_attn.q_proj",
                                           "model.layers.0.self_attn.k_proj",
                                           "model.layers.0.self_attn.v_proj",
                                           "model.layers.0.self_attn.o_proj",
                                           "model.layers.0.mlp",
                                           "model.layers.0.mlp.gate_proj",
                                           "model.layers.0.mlp.up_proj",
                                           "model.layers.0.mlp.down_proj",
                                           "model.layers.0.mlp.act_fn",
                                           "model.layers.0.input_layernorm",
                                           "model.layers.0.post_attention_layernorm",
                                           "model.layers.1"};
    for (size_t i = 0; i < head.size(); ++i)
        EXPECT_EQ(mods[i]->name(), head[i]);
    EXPECT_EQ(mods[mods.size() - 3]->name(), "model.norm");
    EXPECT_EQ(mods.back()->name(), "lm_head");

    EXPECT_EQ(m->num_layers(), 5u);
    EXPECT_EQ(m->layer(3).name(), "model.layers.3");
    EXPECT_THROW(m->layer(5), llmc::error);

    // Parameters: shapes, no biases, tied lm_head sharing the embedding's storage.
    auto &q = *m->find("model.layers.0.self_attn.q_proj");
    EXPECT_EQ(q.params.at("weight").sizes(), (std::vector<int64_t>{64, 64}));
    EXPECT_EQ(q.params.count("bias"), 0u);
    EXPECT_EQ(m->find("model.layers.0.self_attn.k_proj")->params.at("weight").sizes(),
              (std::vector<int64_t>{32, 64}));
    EXPECT_TRUE(m->lm_head().params.at("weight").is_same(m->embed_tokens().params.at("weight")));
    auto sd = m->state_dict();
    EXPECT_EQ(sd.size(), 47u); // 48 stored tensors less the tied lm_head.weight
    EXPECT_EQ(sd.front().first, "model.embed_tokens.weight");
    EXPECT_EQ(m->state_dict(true).back().first, "lm_head.weight");
}

TEST(model, hooks_fire_on_linear_modules_and_respect_the_switch) {
    auto m = causal_lm::random(model_config::from_json(tiny_config("LlamaForCausalLM", "llama")), 1);
    int pre = 0, post = 0;
    std::vector<std::string> order;
    std::vector<uint64_t> ids;
    for (module *mod : m->modules()) {
        if (mod->class_name() != "Linear")
            continue;
        ids.push_back(mod->add_pre_hook([&](module &mm, const std::vector<at::Tensor> &in) {
            ++pre;
            order.push_back(mm.name());
            EXPECT_EQ(in.size(), 1u);
        }));
        ids.push_back(mod->add_post_hook([&](module &mm, const std::vector<at::Tensor> &, const at::Tensor &out) {
            ++post;
            EXPECT_EQ(out.size(-1), mm.params.at("weight").size(0));
        }));
    }
    at::Tensor input = at::randint(0, 64, {2, 5}, at::kLong);
    m->forward(input);
    EXPECT_EQ(pre, 2 * 7 + 1);
    EXPECT_EQ(post, 2 * 7 + 1);
    EXPECT_EQ(order.front(), "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(order.back(), "lm_head");

    m->hooks().enabled = false;
    m->forward(input);
    EXPECT_EQ(pre, 15);
    EXPECT_EQ(post, 15);
    m->hooks().enabled = true;

    // Hooks on the layer and the attention see {hidden, cos, sin}.
    size_t layer_inputs = 0;
    m->layer(1).add_pre_hook([&](module &, const std::vector<at::Tensor> &in) { layer_inputs = in.size(); });
    m->layer_forward(1, m->embed(input));
    EXPECT_EQ(layer_inputs, 3u);
    EXPECT_EQ(pre, 15 + 7);

    // Removed hooks are gone; ids are not reusable across modules.
    for (module *mod : m->modules())
        if (mod->class_name() == "Linear")
            for (uint64_t id : ids)
                mod->remove_hook(id);
    for (module *mod : m->modules())
        if (mod->class_name() == "Linear")
            EXPECT_EQ(mod->hook_count(), 0u) << mod->name();
    EXPECT_FALSE(m->root().remove_hook(ids.front()));
    m->forward(input);
    EXPECT_EQ(pre, 22);

    // A throwing hook surfaces to the caller.
    m->find("model.layers.0.mlp.up_proj")->add_pre_hook([](module &, const std::vector<at::Tensor> &) {
        throw llmc::error("hook failed");
    });
    EXPECT_THROW(m->forward(input), llmc::error);
}

TEST(model, qwen3_random_forward) {
    auto j = tiny_config("Qwen3ForCausalLM", "qwen3");
    j["head_dim"] = 16; // q_proj out (64) differs from hidden (32)
    auto cfg = model_config::from_json(j);
    EXPECT_TRUE(cfg.qk_norm);
    auto m = causal_lm::random(cfg, 3);
    EXPECT_EQ(m->root().class_name(), "Qwen3ForCausalLM");
    EXPECT_EQ(m->find("model")->class_name(), "Qwen3Model");
    EXPECT_EQ(m->layer(0).class_name(), "Qwen3DecoderLayer");
    EXPECT_EQ(m->find("model.layers.0.self_attn")->class_name(), "Qwen3Attention");
    EXPECT_EQ(m->find("model.layers.0.mlp")->class_name(), "Qwen3MLP");
    auto *qn = m->find("model.layers.1.self_attn.q_norm");
    ASSERT_NE(qn, nullptr);
    EXPECT_EQ(qn->class_name(), "Qwen3RMSNorm");
    EXPECT_EQ(qn->params.at("weight").sizes(), (std::vector<int64_t>{16}));
    ASSERT_NE(m->find("model.layers.1.self_attn.k_norm"), nullptr);
    // Qwen3's attention children: q, k, v, o, then q_norm, k_norm.
    const auto &kids = m->find("model.layers.0.self_attn")->children();
    ASSERT_EQ(kids.size(), 6u);
    EXPECT_EQ(kids[4].first, "q_norm");
    EXPECT_EQ(kids[5].first, "k_norm");
    EXPECT_EQ(m->find("model.layers.0.self_attn.q_proj")->params.at("weight").sizes(),
              (std::vector<int64_t>{64, 32}));
    EXPECT_EQ(m->find("model.layers.0.self_attn.o_proj")->params.at("weight").sizes(),
              (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(m->find("model.layers.0.self_attn.q_proj")->params.count("bias"), 0u);

    at::Tensor logits = m->forward(at::randint(0, 64, {3, 6}, at::kLong));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{3, 6, 64}));
    EXPECT_TRUE(at::isfinite(logits).all().item<bool>());
    // The q/k norms take part: changing q_norm's weight changes the output.
    at::Tensor ids = at::randint(0, 64, {1, 6}, at::kLong);
    at::Tensor before = m->forward(ids);
    qn->params["weight"] = qn->params["weight"] * 3;
    EXPECT_FALSE(at::allclose(before, m->forward(ids)));

    // Qwen3Config's head_dim default is 128, not hidden / heads.
    auto j2 = tiny_config("Qwen3ForCausalLM", "qwen3");
    EXPECT_EQ(model_config::from_json(j2).head_dim, 128);
}

TEST(model, qwen2_random_forward_has_qkv_bias) {
    auto cfg = model_config::from_json(tiny_config("Qwen2ForCausalLM", "qwen2"));
    auto m = causal_lm::random(cfg, 4);
    EXPECT_EQ(m->layer(1).class_name(), "Qwen2DecoderLayer");
    for (const char *p : {"q_proj", "k_proj", "v_proj"})
        EXPECT_EQ(m->find(std::string("model.layers.0.self_attn.") + p)->params.count("bias"), 1u) << p;
    EXPECT_EQ(m->find("model.layers.0.self_attn.o_proj")->params.count("bias"), 0u);
    EXPECT_EQ(m->find("model.layers.0.mlp.gate_proj")->params.count("bias"), 0u);
    EXPECT_EQ(m->find("model.layers.0.self_attn.k_proj")->params.at("bias").sizes(), (std::vector<int64_t>{16}));
    at::Tensor logits = m->forward(at::randint(0, 64, {2, 9}, at::kLong));
    EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, 9, 64}));
    EXPECT_EQ(m->find("model.layers.0.self_attn.q_norm"), nullptr);
}

TEST(model, llama_bias_flags_and_mistral) {
    auto j = tiny_config("LlamaForCausalLM", "llama");
    j["attention_bias"] = true;
    j["mlp_bias"] = true;
    auto m = causal_lm::random(model_config::from_json(j), 5);
    EXPECT_EQ(m->find("model.layers.0.self_attn.o_proj")->params.count("bias"), 1u);
    EXPECT_EQ(m->find("model.layers.0.mlp.down_proj")->params.count("bias"), 1u);

    auto mj = tiny_config("MistralForCausalLM", "mistral");
    mj["sliding_window"] = 3;
    auto mistral = causal_lm::random(model_config::from_json(mj), 6);
    EXPECT_EQ(mistral->layer(0).class_name(), "MistralDecoderLayer");
    EXPECT_EQ(mistral->find("model.layers.0.self_attn.q_proj")->params.count("bias"), 0u);
    // With a window of 3, position 5 no longer sees token 0.
    at::Tensor ids = at::randint(0, 64, {1, 6}, at::kLong);
    at::Tensor changed = ids.clone();
    changed[0][0] = (ids[0][0].item<int64_t>() + 1) % 64;
    at::Tensor a = mistral->forward(ids), b = mistral->forward(changed);
    // Each layer reaches back 2 positions: position 2 sees token 0, but after 2 layers
    // position 5 sees tokens 1..5 only.
    EXPECT_FALSE(at::allclose(a[0][2], b[0][2]));
    EXPECT_TRUE(at::allclose(a[0][5], b[0][5], 1e-6, 1e-6));
    EXPECT_EQ(model_config::from_json(tiny_config("MistralForCausalLM", "mistral")).layer_sliding_window[0], 4096);
}

TEST(model, causal_and_padding_masks) {
    auto m = causal_lm::random(model_config::from_json(tiny_config("LlamaForCausalLM", "llama")), 8);
    at::Tensor ids = at::randint(0, 64, {1, 7}, at::kLong);
    at::Tensor changed = ids.clone();
    changed[0][6] = (ids[0][6].item<int64_t>() + 1) % 64;
    at::Tensor a = m->forward(ids), b = m->forward(changed);
    EXPECT_TRUE(at::allclose(a.narrow(1, 0, 6), b.narrow(1, 0, 6), 1e-5, 1e-6));
    EXPECT_FALSE(at::allclose(a.narrow(1, 6, 1), b.narrow(1, 6, 1)));

    // Right padding: the real tokens' logits equal the unpadded run.
    at::Tensor batch = at::cat({ids, at::cat({ids.narrow(1, 0, 4), at::zeros({1, 3}, at::kLong)}, 1)});
    at::Tensor mask = at::ones({2, 7}, at::kLong);
    mask[1].narrow(0, 4, 3).zero_();
    at::Tensor padded = m->forward(batch, mask);
    at::Tensor alone = m->forward(ids.narrow(1, 0, 4));
    EXPECT_TRUE(at::allclose(padded[1].narrow(0, 0, 4), alone[0], 1e-5, 1e-5));
    EXPECT_TRUE(at::allclose(padded[0], a[0], 1e-5, 1e-5));
    // Left padding keeps every row finite.
    at::Tensor left = at::ones({1, 7}, at::kLong);
    left[0][0] = 0;
    EXPECT_TRUE(at::isfinite(m->forward(ids, left)).all().item<bool>());

    expect_error([&] { m->forward(at::full({1, 3}, 64, at::kLong)); }, {"model.embed_tokens", "64"});
    expect_error([&] { m->forward(at::zeros({3}, at::kLong)); }, {"input_ids"});
}

TEST(model, random_is_deterministic) {
    auto cfg = model_config::from_json(tiny_config("LlamaForCausalLM", "llama"));
    auto a = causal_lm::random(cfg, 42), b = causal_lm::random(cfg, 42), c = causal_lm::random(cfg, 43);
    auto sa = a->state_dict(), sb = b->state_dict(), sc = c->state_dict();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i)
        EXPECT_TRUE(at::equal(sa[i].second, sb[i].second)) << sa[i].first;
    EXPECT_FALSE(at::equal(sa[0].second, sc[0].second));
    auto &w = a->find("model.layers.0.self_attn.q_proj")->params.at("weight");
    EXPECT_NEAR(w.std().item<double>(), 0.02, 0.003);
    EXPECT_TRUE(at::equal(a->final_norm().params.at("weight"), at::ones({32})));
}

TEST(model, random_save_load_round_trip) {
    for (auto [arch, type, tied, dtype] :
         {std::tuple{"Qwen2ForCausalLM", "qwen2", false, at::kFloat}, std::tuple{"LlamaForCausalLM", "llama", true, at::kFloat},
          std::tuple{"Qwen3ForCausalLM", "qwen3", false, at::kBFloat16}}) {
        SCOPED_TRACE(arch);
        auto j = tiny_config(arch, type);
        j["tie_word_embeddings"] = tied;
        j["head_dim"] = 8;
        j["some_unknown_key"] = "kept";
        auto m = causal_lm::random(model_config::from_json(j), 11, dtype);
        temp_dir dir;
        m->save(dir.str());
        EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
        EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
        nlohmann::json saved;
        std::ifstream(dir / "config.json") >> saved;
        EXPECT_EQ(saved["torch_dtype"], dtype == at::kFloat ? "float32" : "bfloat16");
        EXPECT_EQ(saved["some_unknown_key"], "kept");
        EXPECT_EQ(saved["architectures"][0], arch);
        safetensors_model st(dir.str());
        EXPECT_EQ(st.contains("lm_head.weight"), !tied);
        EXPECT_EQ(st.info("model.embed_tokens.weight").dtype, dtype == at::kFloat ? "F32" : "BF16");

        auto back = causal_lm::load(dir.str(), dtype);
        at::Tensor ids = at::randint(0, 64, {2, 6}, at::kLong);
        EXPECT_TRUE(at::equal(m->forward(ids), back->forward(ids)));
        EXPECT_EQ(back->config().tie_word_embeddings, tied);
        EXPECT_EQ(back->source_dir(), dir.str());
    }
}

TEST(model, sharded_save_loads_back) {
    auto m = causal_lm::random(model_config::from_json(tiny_config("LlamaForCausalLM", "llama")), 12);
    temp_dir dir;
    m->save(dir.str(), 20000);
    EXPECT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
    auto back = causal_lm::load(dir.str());
    at::Tensor ids = at::randint(0, 64, {1, 5}, at::kLong);
    EXPECT_TRUE(at::equal(m->forward(ids), back->forward(ids)));
}

TEST(model, load_rejects_mismatched_checkpoints) {
    auto j = tiny_config("LlamaForCausalLM", "llama");
    auto m = causal_lm::random(model_config::from_json(j), 13);
    temp_dir dir;
    m->save(dir.str());
    auto rewrite = [&](const std::function<void(safetensors_writer &, const std::string &, const at::Tensor &)> &fn) {
        {
            safetensors_writer w((dir / "model.safetensors").string());
            for (const auto &[n, t] : m->state_dict())
                fn(w, n, t);
            w.finish();
        }
    };
    rewrite([](safetensors_writer &w, const std::string &n, const at::Tensor &t) {
        if (n != "model.layers.1.mlp.up_proj.weight")
            w.add(n, t);
    });
    expect_error([&] { causal_lm::load(dir.str()); }, {"missing", "model.layers.1.mlp.up_proj.weight"});
    rewrite([](safetensors_writer &w, const std::string &n, const at::Tensor &t) {
        w.add(n, n == "model.norm.weight" ? at::ones({31}) : t);
    });
    expect_error([&] { causal_lm::load(dir.str()); }, {"model.norm.weight", "[31]", "[32]"});
    rewrite([](safetensors_writer &w, const std::string &n, const at::Tensor &t) {
        w.add(n, t);
        if (n == "lm_head.weight")
            w.add("model.layers.0.self_attn.q_proj.weight_scale", at::ones({1}));
    });
    expect_error([&] { causal_lm::load(dir.str()); }, {"unexpected", "weight_scale"});
    // Old checkpoints' rotary_emb.inv_freq is ignored, as transformers does.
    rewrite([](safetensors_writer &w, const std::string &n, const at::Tensor &t) {
        w.add(n, t);
        if (n == "lm_head.weight")
            w.add("model.layers.0.self_attn.rotary_emb.inv_freq", at::ones({4}));
    });
    EXPECT_NO_THROW(causal_lm::load(dir.str()));
    expect_error([&] { causal_lm::load(dir.str(), at::kLong); }, {"dtype"});
}

TEST(config, unsupported_architecture_and_bad_fields) {
    auto j = tiny_config("GPT2LMHeadModel", "gpt2");
    expect_error([&] { model_config::from_json(j, "x/config.json"); },
                 {"x/config.json", "GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                  "Qwen3ForCausalLM"});
    auto k = tiny_config("LlamaForCausalLM", "llama");
    k.erase("hidden_size");
    expect_error([&] { model_config::from_json(k); }, {"hidden_size"});
    k = tiny_config("LlamaForCausalLM", "llama");
    k["num_key_value_heads"] = 3;
    expect_error([&] { model_config::from_json(k); }, {"num_key_value_heads"});
    k = tiny_config("LlamaForCausalLM", "llama");
    k["vocab_size"] = "many";
    expect_error([&] { model_config::from_json(k); }, {"vocab_size"});
    k = tiny_config("LlamaForCausalLM", "llama");
    k["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    expect_error([&] { model_config::from_json(k); }, {"yarn"});
    // No architectures: model_type decides.
    k = tiny_config("LlamaForCausalLM", "qwen2");
    k.erase("architectures");
    EXPECT_EQ(model_config::from_json(k).architecture, "Qwen2ForCausalLM");
    // Defaults.
    k = tiny_config("LlamaForCausalLM", "llama");
    k.erase("num_key_value_heads");
    auto c = model_config::from_json(k);
    EXPECT_EQ(c.num_key_value_heads, 4);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_FALSE(c.rope_scaling.has_value());
    // Qwen2Config and MistralConfig have fixed defaults instead.
    k["model_type"] = "qwen2";
    k["architectures"] = {"Qwen2ForCausalLM"};
    k["num_attention_heads"] = 64;
    k["hidden_size"] = 512;
    EXPECT_EQ(model_config::from_json(k).num_key_value_heads, 32);
    EXPECT_EQ(model_config::from_json(k).to_json().contains("num_key_value_heads"), false);
}

TEST(config, llama3_rope_scaling_matches_transformers) {
    auto j = tiny_config("LlamaForCausalLM", "llama");
    j["hidden_size"] = 64;
    j["num_attention_heads"] = 8; // head_dim 8: inv_freq has 4 entries
    j["num_key_value_heads"] = 8;
    j["rope_theta"] = 500000.0;
    auto plain = model_config::from_json(j);
    j["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
    auto cfg = model_config::from_json(j);
    ASSERT_TRUE(cfg.rope_scaling.has_value());
    EXPECT_EQ(cfg.rope_scaling->type, "llama3");
    at::Tensor base = rope_inv_freq(plain), scaled = rope_inv_freq(cfg);
    ASSERT_EQ(scaled.size(0), 4);
    // Worked by hand: inv_freq = 500000^(-2i/8); wavelength 2*pi/inv_freq against
    // low_freq_wavelen 8192 and high_freq_wavelen 8192/4 = 2048.
    //  i=0,1: wavelengths 6.28 and 167.1 < 2048: high frequency, unchanged.
    EXPECT_FLOAT_EQ(scaled[0].item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(scaled[1].item<float>(), base[1].item<float>());
    //  i=2: inv 1/sqrt(500000) = 0.00141421356, wavelength 4442.88 (between): smooth factor
    //  s = (8192/4442.88 - 1)/(4 - 1) = 0.2812844, result inv*((1-s)/8 + s) = 0.000524846161.
    EXPECT_NEAR(scaled[2].item<float>(), 0.000524846161, 0.000524846161 * 1e-5);
    //  i=3: inv 5.318296e-05, wavelength 118142.8 > 8192: low frequency, divided by 8.
    EXPECT_NEAR(scaled[3].item<float>(), 6.64786987e-06, 6.64786987e-06 * 1e-5);
    EXPECT_NEAR(base[3].item<float>(), 5.318295897e-05, 5.318295897e-05 * 1e-5);

    // The model's rotary uses it.
    auto m = causal_lm::random(cfg, 1);
    auto [cos, sin] = m->rotary(3);
    EXPECT_FLOAT_EQ(sin[2][3].item<float>(), std::sin(2 * scaled[3].item<float>()));
    // Linear scaling divides every frequency.
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    EXPECT_TRUE(at::allclose(rope_inv_freq(model_config::from_json(j)), base / 2));
}

TEST(config, load_and_to_json) {
    REQUIRE_STORIES();
    auto c = model_config::load(stories_dir);
    EXPECT_EQ(c.architecture, "LlamaForCausalLM");
    EXPECT_EQ(c.hidden_size, 64);
    EXPECT_EQ(c.intermediate_size, 172);
    EXPECT_EQ(c.num_hidden_layers, 5);
    EXPECT_EQ(c.num_attention_heads, 8);
    EXPECT_EQ(c.num_key_value_heads, 4);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.vocab_size, 512);
    EXPECT_EQ(c.max_position_embeddings, 512);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
    EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_EQ(c.torch_dtype, "float32");
    EXPECT_EQ(c.raw["bos_token_id"], 1);
    // Written back unchanged.
    EXPECT_EQ(c.to_json(), c.raw);
}
