#include "tokenizer/tokenizer.h"

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer_config.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace llmc {

std::unique_ptr<tokenizer> tokenizer::load(const std::string &dir) {
    const std::string path = dir + "/tokenizer.json";
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
        if (std::filesystem::is_regular_file(dir + "/tokenizer.model", ec))
            fail("tokenizer {}: no tokenizer.json (a SentencePiece tokenizer.model alone is not supported; "
                 "convert it with transformers' AutoTokenizer.from_pretrained(...).save_pretrained(...))",
                 dir);
        fail("tokenizer {}: no tokenizer.json", dir);
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("tokenizer {}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::parse_error &e) {
        fail("tokenizer {}: not valid JSON: {}", path, e.what());
    }
    return std::make_unique<hf_tokenizer>(j, path, read_tokenizer_config(dir));
}

} // namespace llmc
