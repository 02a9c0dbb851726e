// llmc-make-model: writes a small random model of a supported family in Hugging Face layout
// (config.json + safetensors), for tests and the demo; nothing is downloaded.
#include "model/causal_lm.h"
#include "util/error.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

int main(int argc, char **argv) {
    CLI::App app{"llmc-make-model: write a small random model in Hugging Face layout"};
    std::string family = "llama", output, dtype = "float32";
    int64_t layers = 4, hidden = 64, intermediate = 172, heads = 8, kv_heads = 4, vocab = 512, ctx = 512;
    uint64_t seed = 1;
    app.add_option("--family", family, "llama, mistral, qwen2 or qwen3");
    app.add_option("--layers", layers);
    app.add_option("--hidden", hidden);
    app.add_option("--intermediate", intermediate);
    app.add_option("--heads", heads);
    app.add_option("--kv-heads", kv_heads);
    app.add_option("--vocab", vocab);
    app.add_option("--context", ctx);
    app.add_option("--seed", seed);
    app.add_option("--dtype", dtype, "float32 or bfloat16");
    app.add_option("--output", output, "directory to write")->required();
    CLI11_PARSE(app, argc, argv);
    try {
        static const std::map<std::string, std::pair<std::string, std::string>> names = {
            {"llama", {"LlamaForCausalLM", "llama"}},
            {"mistral", {"MistralForCausalLM", "mistral"}},
            {"qwen2", {"Qwen2ForCausalLM", "qwen2"}},
            {"qwen3", {"Qwen3ForCausalLM", "qwen3"}}};
        auto it = names.find(family);
        if (it == names.end()) throw llmc::error("unknown --family '" + family + "' (llama, mistral, qwen2, qwen3)");
        nlohmann::json cfg = {{"architectures", {it->second.first}},
                              {"model_type", it->second.second},
                              {"hidden_size", hidden},
                              {"intermediate_size", intermediate},
                              {"num_hidden_layers", layers},
                              {"num_attention_heads", heads},
                              {"num_key_value_heads", kv_heads},
                              {"head_dim", hidden / heads},
                              {"vocab_size", vocab},
                              {"max_position_embeddings", ctx},
                              {"rms_norm_eps", 1e-5},
                              {"rope_theta", 10000.0},
                              {"tie_word_embeddings", false},
                              {"bos_token_id", 1},
                              {"eos_token_id", 2}};
        at::ScalarType t = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
        if (dtype != "bfloat16" && dtype != "float32") throw llmc::error("--dtype must be float32 or bfloat16");
        auto model = llmc::causal_lm::random(llmc::model_config::from_json(cfg, "llmc-make-model"), seed, t);
        std::filesystem::create_directories(output);
        model->save(output);
        std::printf("wrote a random %s model (%lld layers, hidden %lld) to %s\n", it->second.first.c_str(),
                    static_cast<long long>(layers), static_cast<long long>(hidden), output.c_str());
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "llmc-make-model: %s\n", e.what());
        return 1;
    }
}
