// llmc-tokenize --model DIR [--jsonl] [--add-special-tokens] [--decode]: the model's tokenizer
// on stdin, for people (ids and tokens) and for tests (JSON lines in the format of the
// reference vectors: {"text": ..., "ids": [...]}).
#include "tokenizer/decoders.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

namespace {

using ordered_json = nlohmann::ordered_json; // keeps "text" before "ids", as the vectors files

std::string read_stdin() {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
}

// The text as a JSON string: invisible characters (spaces, newlines) become visible.
std::string quoted(const std::string &s) {
    return ordered_json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Ids for --decode: integers separated by spaces, commas or brackets ("[1, 2]" or "1 2").
std::vector<int64_t> parse_ids(const std::string &text) {
    std::vector<int64_t> ids;
    size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        if (std::isspace(static_cast<unsigned char>(c)) || c == ',' || c == '[' || c == ']') {
            ++i;
            continue;
        }
        size_t used = 0;
        try {
            ids.push_back(std::stoll(text.substr(i, 24), &used));
        } catch (const std::exception &) {
            llmc::fail("stdin: expected token ids, got '{}' at byte {}", text.substr(i, 16), i);
        }
        i += used;
    }
    return ids;
}

// Left-aligned in `width` columns counted in characters, not bytes (tokens are UTF-8).
std::string pad(const std::string &s, size_t width) {
    size_t chars = 0;
    for (char c : s) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return chars >= width ? s : s + std::string(width - chars, ' ');
}

void print_tokens(const llmc::tokenizer &tok, const std::vector<int64_t> &ids) {
    std::printf("ids (%zu): %s\n", ids.size(), ordered_json(ids).dump().c_str());
    // One row per token: position, id, the vocabulary string, and the text it decodes to alone.
    std::printf("%6s  %8s  %s  %s\n", "#", "id", pad("token", 24).c_str(), "text (decoded alone)");
    for (size_t i = 0; i < ids.size(); ++i) {
        const std::string token = tok.id_to_token(ids[i]).value_or("<not in vocabulary>");
        std::printf("%6zu  %8lld  %s  %s%s\n", i, static_cast<long long>(ids[i]), pad(quoted(token), 24).c_str(),
                    quoted(tok.decode({ids[i]})).c_str(), tok.is_special(ids[i]) ? "  (special)" : "");
    }
}

int run_jsonl(const llmc::tokenizer &tok, bool add_special, bool decode) {
    std::string line;
    size_t line_no = 0;
    while (std::getline(std::cin, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        ordered_json in = ordered_json::parse(line, nullptr, false);
        if (in.is_discarded()) llmc::fail("stdin line {}: not valid JSON", line_no);
        if (!in.is_object()) llmc::fail("stdin line {}: expected a JSON object", line_no);
        ordered_json out;
        if (decode) {
            auto it = in.find("ids");
            if (it == in.end() || !it->is_array()) llmc::fail("stdin line {}: expected an \"ids\" array", line_no);
            std::vector<int64_t> ids;
            for (const auto &v : *it) {
                if (!v.is_number_integer()) llmc::fail("stdin line {}: \"ids\" must hold integers", line_no);
                ids.push_back(v.get<int64_t>());
            }
            out["text"] = tok.decode(ids);
            out["ids"] = ids;
        } else {
            auto it = in.find("text");
            if (it == in.end() || !it->is_string()) llmc::fail("stdin line {}: expected a \"text\" string", line_no);
            try {
                out["text"] = *it;
                out["ids"] = tok.encode(it->get<std::string>(), add_special);
            } catch (const llmc::error &e) {
                llmc::fail("stdin line {}: {}", line_no, e.what());
            }
        }
        const std::string s = out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fputc('\n', stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char **argv) {
    CLI::App app{"llmc-tokenize: a model's tokenizer (tokenizer.json) on stdin"};
    std::string dir;
    bool jsonl = false, add_special = false, decode = false, skip_special = false;
    app.add_option("--model", dir, "directory holding tokenizer.json (and tokenizer_config.json)")->required();
    app.add_flag(
        "--jsonl", jsonl,
        "read JSON lines with a \"text\" field (\"ids\" with --decode), write {\"text\": ..., \"ids\": [...]}");
    app.add_flag("--add-special-tokens", add_special, "add BOS/EOS as the tokenizer is configured to");
    app.add_flag("--decode", decode, "read token ids (plain: integers; --jsonl: an \"ids\" field) and write text");
    app.add_flag("--skip-special-tokens", skip_special, "with --decode without --jsonl: drop special tokens");
    CLI11_PARSE(app, argc, argv);
    try {
        const std::unique_ptr<llmc::tokenizer> tok = llmc::tokenizer::load(dir);
        if (jsonl) return run_jsonl(*tok, add_special, decode);
        const std::string input = read_stdin();
        if (decode) {
            const std::string text = tok->decode(parse_ids(input), skip_special);
            std::fwrite(text.data(), 1, text.size(), stdout);
            return 0;
        }
        print_tokens(*tok, tok->encode(input, add_special));
        return 0;
    } catch (const std::exception &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "llmc-tokenize: %s\n", e.what());
        return 1;
    }
}
