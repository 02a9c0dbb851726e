// The real llmc-eval on the real stories260K model and TinyStories validation text: the pinned
// perplexity (GPTQ protocol, windows of 256), the reference continuation's own nll, --base against
// itself (KL 0, top-1 1) and against a different model, and the errors a user meets first.
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

using namespace llmc;
using json = nlohmann::json;

namespace {

const std::string eval_exe = std::string(LLMC_BINARY_DIR) + "/host/llmc-eval";
const std::string make_model_exe = std::string(LLMC_BINARY_DIR) + "/host/llmc-make-model";

// Measured with this tool (float32, one thread); the reference continuation below anchors the
// numerics independently of it.
constexpr double tinystories_ppl_256 = 5.119927594385698;

std::string tinystories() { return test::shared_dir() + "/data/tinystories_valid_head.txt"; }

// "key: value" lines of the tool's stdout.
std::map<std::string, double> results(const std::string &output) {
    std::map<std::string, double> r;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);) {
        const auto colon = line.find(": ");
        if (colon == std::string::npos || line[0] == '[') continue; // log lines start with "[time]"
        try {
            r[line.substr(0, colon)] = std::stod(line.substr(colon + 2));
        } catch (const std::exception &) {
        }
    }
    return r;
}

test::command_result eval(const std::string &args) {
    return test::run_command(eval_exe + " --threads 1 --log-level warn " + args);
}

class eval_tool : public ::testing::Test {
  protected:
    void SetUp() override {
        LLMC_REQUIRE_SHARED();
        for (const auto &exe : {eval_exe, make_model_exe})
            ASSERT_TRUE(std::filesystem::exists(exe)) << exe << " is not built (cmake --build ... --target "
                                                      << std::filesystem::path(exe).filename().string() << ")";
    }
    // A random model in Hugging Face layout, with stories260K's tokenizer files when asked.
    std::string make_model(const std::string &name, int64_t vocab, bool with_tokenizer) {
        const std::string out = dir / name;
        auto r = test::run_command(make_model_exe + " --vocab " + std::to_string(vocab) +
                                   " --layers 2 --hidden 64 --heads 8 --kv-heads 4 --context 512 --seed 5 --output " + out);
        EXPECT_EQ(r.exit_code, 0) << r.output;
        if (with_tokenizer)
            for (const char *f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
                std::filesystem::copy_file(test::stories_dir() + "/" + f, out + "/" + f);
        return out;
    }
    test::temp_dir dir{"eval"};
};

TEST_F(eval_tool, pinned_perplexity_on_tinystories) {
    const std::string js = dir / "ppl.json";
    auto r = eval("--model " + test::stories_dir() + " --dataset " + tinystories() + " --max-seq-length 256 --json " + js);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto v = results(r.output);
    EXPECT_NEAR(v["perplexity"], tinystories_ppl_256, 1e-3 * tinystories_ppl_256) << r.output;
    EXPECT_EQ(v["windows"], 1535);  // 393,019 tokens with the one BOS, the partial window dropped
    EXPECT_EQ(v["tokens"], 392960); // 1535 * 256
    EXPECT_EQ(v.count("kl_divergence"), 0u);
    EXPECT_NE(r.output.find("perplexity: "), std::string::npos);
    json j = json::parse(test::read_file(js));
    EXPECT_DOUBLE_EQ(j["perplexity"].get<double>(), v["perplexity"]);
    EXPECT_EQ(j["windows"], 1535);
    EXPECT_EQ(j["tokens"], 392960);
    EXPECT_EQ(j["stream_tokens"], 393019);
    EXPECT_EQ(j["max_seq_length"], 256);
}

TEST_F(eval_tool, reference_continuation_nll_as_ids_and_as_text) {
    // reference_outputs.json: the greedy continuation of BOS and the mean nll of its own tokens
    // (float64). One window over exactly those ids is the same quantity; the decoded text
    // tokenized again (BOS once) must give the same ids, hence the same number.
    json ref = json::parse(test::read_file(test::stories_dir() + "/reference_outputs.json"));
    const auto &run = ref["runs"][0];
    const std::vector<int64_t> ids = run["ids"];
    const double expected = std::exp(run["mean_nll_of_own_greedy_continuation"].get<double>());
    test::write_file(dir / "ids.jsonl", json{{"input_ids", ids}}.dump() + "\n");
    test::write_file(dir / "text.txt", run["text"].get<std::string>());
    test::write_file(dir / "rows.jsonl", json{{"text", run["text"]}}.dump() + "\n");
    for (const char *f : {"ids.jsonl", "text.txt", "rows.jsonl"}) {
        auto r = eval("--model " + test::stories_dir() + " --dataset " + (dir / f) + " --max-seq-length " +
                      std::to_string(ids.size()));
        ASSERT_EQ(r.exit_code, 0) << f << ": " << r.output;
        auto v = results(r.output);
        EXPECT_NEAR(v["perplexity"], expected, 1e-5 * expected) << f;
        EXPECT_EQ(v["windows"], 1) << f;
    }
}

TEST_F(eval_tool, base_itself_gives_zero_kl_and_full_agreement) {
    const std::string js = dir / "self.json";
    auto r = eval("--model " + test::stories_dir() + " --base " + test::stories_dir() + " --dataset " + tinystories() +
                  " --max-seq-length 256 --max-windows 64 --json " + js);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto v = results(r.output);
    EXPECT_EQ(v["windows"], 64);
    EXPECT_LT(std::abs(v["kl_divergence"]), 1e-9);
    EXPECT_EQ(v["top1_agreement"], 1.0);
    EXPECT_EQ(v["base_perplexity"], v["perplexity"]);
    json j = json::parse(test::read_file(js));
    EXPECT_EQ(j["top1_agreement"], 1.0);
    EXPECT_LT(std::abs(j["kl_divergence"].get<double>()), 1e-9);
    EXPECT_EQ(j["base"], test::stories_dir());
}

TEST_F(eval_tool, a_different_model_diverges_from_the_base) {
    const std::string other = make_model("random512", 512, true);
    auto r = eval("--model " + other + " --base " + test::stories_dir() + " --dataset " + tinystories() +
                  " --max-seq-length 256 --max-windows 16");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto v = results(r.output);
    EXPECT_GT(v["kl_divergence"], 0.1);
    EXPECT_LT(v["top1_agreement"], 0.5);
    EXPECT_GT(v["perplexity"], 100.0); // near-uniform over 512 tokens
    EXPECT_LT(v["base_perplexity"], 10.0);
    EXPECT_EQ(v["windows"], 16);
}

TEST_F(eval_tool, wikitext_rows_jsonl_equals_the_joined_text) {
    const std::string shared = test::shared_dir() + "/data/";
    auto a = eval("--model " + test::stories_dir() + " --dataset " + shared + "wikitext-2-raw-v1.test.joined.txt" +
                  " --max-seq-length 256 --max-windows 8");
    auto b = eval("--model " + test::stories_dir() + " --dataset " + shared + "wikitext-2-raw-v1.test.rows.jsonl" +
                  " --max-seq-length 256 --max-windows 8");
    ASSERT_EQ(a.exit_code, 0) << a.output;
    ASSERT_EQ(b.exit_code, 0) << b.output;
    EXPECT_EQ(results(a.output)["perplexity"], results(b.output)["perplexity"]);
}

TEST_F(eval_tool, input_ids_need_no_tokenizer) {
    const std::string model = make_model("notok", 512, false);
    test::write_file(dir / "ids.jsonl", "{\"input_ids\": [1, 5, 9, 300]}\n{\"input_ids\": [7, 8, 9, 10, 11]}\n");
    auto r = eval("--model " + model + " --dataset " + (dir / "ids.jsonl") + " --max-seq-length 4");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(results(r.output)["windows"], 2); // 9 ids concatenated
}

TEST_F(eval_tool, errors_say_what_and_where) {
    const std::string small = make_model("vocab256", 256, false);
    auto r = eval("--model " + test::stories_dir() + " --base " + small + " --dataset " + tinystories() +
                  " --max-seq-length 64 --max-windows 1");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("vocabulary of 256 tokens"), std::string::npos) << r.output;

    r = eval("--model " + test::stories_dir() + " --dataset " + tinystories() + " --max-seq-length 1024");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("exceeds the model's max_position_embeddings 512"), std::string::npos) << r.output;

    test::write_file(dir / "short.txt", "Once upon a time");
    r = eval("--model " + test::stories_dir() + " --dataset " + (dir / "short.txt") + " --max-seq-length 256");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("fewer than one window of 256"), std::string::npos) << r.output;

    test::write_file(dir / "bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n");
    r = eval("--model " + test::stories_dir() + " --dataset " + (dir / "bad.jsonl") + " --max-seq-length 2");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("bad.jsonl:2: malformed JSON"), std::string::npos) << r.output;

    r = eval("--model " + test::stories_dir() + " --dataset " + tinystories() + " --dtype float16");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("unknown --dtype 'float16'"), std::string::npos) << r.output;
}

} // namespace
