#include "tokenizer/tokenizer.h"

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/tokenizer_config.h"
#include "util/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace llmc {

std::unique_ptr<tokenizer> tokenizer::load(const std::string &dir_or_file) {
    std::error_code ec;
    // A path to tokenizer.json itself works too; its folder holds the config.
    const bool is_file = std::filesystem::is_regular_file(dir_or_file, ec);
    std::string dir = is_file ? std::filesystem::path(dir_or_file).parent_path().string() : dir_or_file;
    if (dir.empty()) dir = ".";
    const std::string path = is_file ? dir_or_file : dir + "/tokenizer.json";
    if (!is_file && !std::filesystem::is_regular_file(path, ec)) {
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
