#include "tokenizer/tokenizer_config.h"

#include "util/error.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace llmc {

namespace {

std::optional<nlohmann::json> read_json_if_present(const std::string &path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("tokenizer {}: cannot open", path);
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) fail("tokenizer {}: not valid JSON", path);
    if (!j.is_object()) fail("tokenizer {}: expected a JSON object", path);
    return j;
}

// "bos_token": "<s>", or {"content": "<s>", ...} (an AddedToken), or null.
std::optional<std::string> token_string(const nlohmann::json &j, const char *key, const std::string &path) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    fail("tokenizer {}: {}: expected a string or {{\"content\": ...}}", path, key);
}

std::optional<bool> optional_bool(const nlohmann::json &j, const char *key, const std::string &path) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_boolean()) fail("tokenizer {}: {}: expected true or false", path, key);
    return it->get<bool>();
}

} // namespace

tokenizer_config read_tokenizer_config(const std::string &dir) {
    tokenizer_config c;
    const std::string config_path = dir + "/tokenizer_config.json";
    const std::string map_path = dir + "/special_tokens_map.json";
    // A key present in tokenizer_config.json decides, even as null (Qwen: "bos_token": null).
    if (auto j = read_json_if_present(config_path)) {
        c.bos_named = j->contains("bos_token");
        c.eos_named = j->contains("eos_token");
        c.add_bos_token = optional_bool(*j, "add_bos_token", config_path);
        c.add_eos_token = optional_bool(*j, "add_eos_token", config_path);
        c.bos_token = token_string(*j, "bos_token", config_path);
        c.eos_token = token_string(*j, "eos_token", config_path);
        c.clean_up_tokenization_spaces = optional_bool(*j, "clean_up_tokenization_spaces", config_path).value_or(false);
    }
    if (!c.bos_named || !c.eos_named) {
        if (auto j = read_json_if_present(map_path)) {
            if (!c.bos_named) {
                c.bos_token = token_string(*j, "bos_token", map_path);
                c.bos_named = j->contains("bos_token");
            }
            if (!c.eos_named) {
                c.eos_token = token_string(*j, "eos_token", map_path);
                c.eos_named = j->contains("eos_token");
            }
        }
    }
    return c;
}

} // namespace llmc
