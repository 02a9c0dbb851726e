// llmc-eval: perplexity of a model on a text (GPTQ protocol: non-overlapping windows of
// --max-seq-length tokens over the whole tokenized text), and with --base the KL divergence and
// top-1 agreement against a reference model on the same windows.
#include "data/dataset.h"
#include "eval/perplexity.h"
#include "model/causal_lm.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/runtime.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

at::ScalarType parse_dtype(const std::string &s) {
    if (s == "float32" || s == "fp32") return at::kFloat;
    if (s == "bfloat16" || s == "bf16") return at::kBFloat16;
    llmc::fail("unknown --dtype '{}' (valid: float32, bfloat16)", s);
}

std::string file_text(const std::filesystem::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Scores compare only when both models read the same ids; a differing tokenizer.json is worth a
// warning even when the vocabulary sizes agree.
void check_same_tokenizer(const std::string &model, const std::string &base) {
    const auto a = std::filesystem::path(model) / "tokenizer.json", b = std::filesystem::path(base) / "tokenizer.json";
    std::error_code ec;
    if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec) && file_text(a) != file_text(b))
        spdlog::warn("{} and {} differ: the models may not share the tokenizer", a.string(), b.string());
}

} // namespace

int main(int argc, char **argv) {
    CLI::App app{"llmc-eval: perplexity (GPTQ protocol) and KL divergence against a base model"};
    std::string model_dir, base_dir, dataset, json_path;
    std::string dtype_name = "float32", text_column = "text", log_level = "info";
    int64_t seq_len = 0, max_windows = 0;
    int threads = 0;
    app.add_option("--model", model_dir, "Hugging Face model directory")->required();
    app.add_option("--dataset", dataset,
                   "evaluation text: plain text, JSONL text rows (joined with \"\\n\\n\") or JSONL input_ids rows "
                   "(concatenated)")
        ->required();
    app.add_option("--max-seq-length", seq_len, "window length in tokens (default: min(2048, the model's context))");
    app.add_option("--base", base_dir, "reference model: also report base_perplexity, kl_divergence, top1_agreement");
    app.add_option("--json", json_path, "also write the results as JSON");
    app.add_option("--max-windows", max_windows, "evaluate at most N windows (default: all)");
    app.add_option("--dtype", dtype_name, "compute dtype: float32 (default) or bfloat16");
    app.add_option("--text-column", text_column, "JSONL text field (default: text)");
    app.add_option("--threads", threads, "intra-op threads (default: all cores)");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
    CLI11_PARSE(app, argc, argv);

    try {
        llmc::runtime_init_memory();
        llmc::runtime_init_logging(log_level);
        llmc::runtime_set_threads(threads);
        llmc::runtime_check_blas();
        const auto start = std::chrono::steady_clock::now();
        const at::ScalarType dtype = parse_dtype(dtype_name);
        if (max_windows < 0) llmc::fail("--max-windows must not be negative (got {})", max_windows);

        auto model = llmc::causal_lm::load(model_dir, dtype);
        const auto &cfg = model->config();
        if (seq_len == 0) seq_len = std::min<int64_t>(2048, cfg.max_position_embeddings);
        if (seq_len < 2) llmc::fail("--max-seq-length must be at least 2 (got {})", seq_len);
        if (seq_len > cfg.max_position_embeddings)
            llmc::fail("--max-seq-length {} exceeds the model's max_position_embeddings {}", seq_len,
                       cfg.max_position_embeddings);
        std::unique_ptr<llmc::causal_lm> base;
        if (!base_dir.empty()) {
            base = llmc::causal_lm::load(base_dir, dtype);
            if (base->config().vocab_size != cfg.vocab_size)
                llmc::fail("--base {} has a vocabulary of {} tokens, --model {} of {}: they must share the tokenizer",
                           base_dir, base->config().vocab_size, model_dir, cfg.vocab_size);
            check_same_tokenizer(model_dir, base_dir);
        }

        // input_ids need no tokenizer, so a model directory without one can still be evaluated on them.
        std::unique_ptr<llmc::tokenizer> tok;
        if (llmc::dataset_detect(dataset, text_column) != llmc::dataset_format::jsonl_ids)
            tok = llmc::tokenizer::load(model_dir);
        const std::vector<int64_t> tokens = llmc::dataset_token_stream(dataset, cfg.vocab_size, tok.get(), text_column);
        spdlog::info("{}: {} tokens, windows of {}", dataset, tokens.size(), seq_len);

        llmc::perplexity_options popt;
        popt.seq_len = seq_len;
        popt.max_windows = max_windows;
        popt.on_window = [](int64_t done, int64_t total) {
            if (done % 50 == 0 || done == total) spdlog::debug("window {}/{}", done, total);
        };
        const llmc::perplexity_result r = llmc::perplexity_evaluate(*model, tokens, popt, base.get());

        // Shortest round-trip form: stdout and --json carry the same numbers.
        fmt::print("perplexity: {}\n", r.perplexity);
        nlohmann::json out = {{"model", model_dir},        {"dataset", dataset},
                              {"max_seq_length", seq_len}, {"dtype", dtype_name},
                              {"perplexity", r.perplexity}, {"windows", r.windows},
                              {"tokens", r.tokens},        {"stream_tokens", tokens.size()}};
        if (r.has_base) {
            fmt::print("base_perplexity: {}\nkl_divergence: {}\ntop1_agreement: {}\n", r.base_perplexity,
                       r.kl_divergence, r.top1_agreement);
            out["base"] = base_dir;
            out["base_perplexity"] = r.base_perplexity;
            out["kl_divergence"] = r.kl_divergence;
            out["top1_agreement"] = r.top1_agreement;
        }
        fmt::print("windows: {}\ntokens: {}\n", r.windows, r.tokens);
        std::fflush(stdout);
        if (!json_path.empty()) {
            std::ofstream f(json_path);
            f << out.dump(1) << "\n";
            if (!f) llmc::fail("cannot write {}", json_path);
        }
        spdlog::info("evaluated {} windows in {:.1f} s", r.windows,
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "llmc-eval: %s\n", e.what());
        return 1;
    }
}
