#include "data/dataset.h"

#include "util/error.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

namespace llmc {

namespace {

using json = nlohmann::json;

bool blank(const std::string &s) { return s.find_first_not_of(" \t\r\n\f\v") == std::string::npos; }

bool is_jsonl_name(const std::string &path) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".jsonl" || ext == ".json";
}

std::ifstream open_file(const std::string &path) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail("dataset {}: is a directory, not a file", path);
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("dataset {}: cannot open", path);
    return in;
}

// Seeded Fisher-Yates: std::shuffle's algorithm is the standard library's choice, so the same seed
// could select different samples elsewhere; this order depends on std::mt19937_64 alone.
template <class T> void seeded_shuffle(std::vector<T> &v, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (size_t i = v.size(); i > 1; --i) {
        // Unbiased draw in [0, i): reject the top sliver that would favour small values.
        const uint64_t bound = i, limit = UINT64_MAX - UINT64_MAX % bound;
        uint64_t r;
        do r = rng(); while (r >= limit);
        std::swap(v[i - 1], v[r % bound]);
    }
}

void check_options(const dataset_options &opt) {
    if (opt.num_samples < 1) fail("dataset {}: num_samples must be at least 1 (got {})", opt.path, opt.num_samples);
    if (opt.max_seq_length < 1)
        fail("dataset {}: max_seq_length must be at least 1 (got {})", opt.path, opt.max_seq_length);
}

void check_ids(const std::vector<int64_t> &ids, int64_t vocab_size, const std::string &where) {
    for (int64_t id : ids)
        if (id < 0 || id >= vocab_size)
            fail("dataset {}: the tokenizer gave id {}, outside the model's vocabulary [0, {})", where, id, vocab_size);
}

// A JSONL file read row by row; blank lines are skipped, every other line must be a JSON object.
class jsonl_reader {
  public:
    explicit jsonl_reader(const std::string &path) : path_(path), in_(open_file(path)) {}

    // The next row; false at the end of the file.
    bool next(json &row) {
        while (true) {
            row_offset_ = offset_;
            if (!std::getline(in_, line_)) return false;
            offset_ += line_.size() + 1; // binary mode: the line and its '\n'
            ++lineno_;
            if (blank(line_)) continue;
            if (first_row_ && line_[line_.find_first_not_of(" \t\r\n\f\v")] == '[')
                fail("dataset {}: a JSON array; write one JSON object per line (JSONL)", where());
            first_row_ = false;
            try {
                row = json::parse(line_);
            } catch (const json::parse_error &e) {
                fail("dataset {}: malformed JSON at column {} (JSONL holds one object per line)", where(), e.byte);
            }
            if (!row.is_object()) fail("dataset {}: not a JSON object", where());
            return true;
        }
    }
    // Back to a row found before (by its offset and line number), to read it again.
    void seek(uint64_t offset, size_t lineno) {
        in_.clear();
        in_.seekg(static_cast<std::streamoff>(offset));
        offset_ = offset;
        lineno_ = lineno - 1;
    }
    std::string where() const { return fmt::format("{}:{}", path_, lineno_); }
    size_t line() const { return lineno_; }
    uint64_t offset() const { return row_offset_; }

  private:
    std::string path_;
    std::ifstream in_;
    std::string line_;
    uint64_t offset_ = 0, row_offset_ = 0;
    size_t lineno_ = 0;
    bool first_row_ = true;
};

dataset_format kind_of(const json &row, const std::string &text_column, const std::string &where) {
    if (row.contains("input_ids")) return dataset_format::jsonl_ids;
    if (row.contains(text_column)) return dataset_format::jsonl_text;
    std::string keys;
    for (auto it = row.begin(); it != row.end(); ++it) keys += (keys.empty() ? "" : ", ") + it.key();
    fail("dataset {}: neither 'input_ids' nor '{}' in the row (its keys: {}); --text-column names the text field",
         where, text_column, keys.empty() ? "none" : keys);
}

std::vector<int64_t> row_ids(const json &row, int64_t vocab_size, const std::string &where) {
    auto it = row.find("input_ids");
    if (it == row.end()) fail("dataset {}: no 'input_ids' (the first row has them)", where);
    if (!it->is_array() || it->empty()) fail("dataset {}: 'input_ids' must be a non-empty list", where);
    std::vector<int64_t> ids;
    ids.reserve(it->size());
    for (const auto &v : *it) {
        if (!v.is_number_integer()) fail("dataset {}: 'input_ids' holds a non-integer {}", where, v.dump());
        const int64_t id = v.get<int64_t>();
        if (id < 0 || id >= vocab_size)
            fail("dataset {}: token id {} outside the vocabulary [0, {})", where, id, vocab_size);
        ids.push_back(id);
    }
    return ids;
}

const std::string &row_text(const json &row, const std::string &text_column, const std::string &where) {
    auto it = row.find(text_column);
    if (it == row.end()) fail("dataset {}: no '{}' field (the first row has it)", where, text_column);
    if (!it->is_string()) fail("dataset {}: '{}' must be a string, not {}", where, text_column, it->type_name());
    return it->get_ref<const std::string &>();
}

std::string read_all(const std::string &path) {
    std::ifstream in = open_file(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<int64_t> encode_checked(const tokenizer &tok, const std::string &text, int64_t vocab_size,
                                    const std::string &where) {
    std::vector<int64_t> ids = tok.encode(text, true);
    check_ids(ids, vocab_size, where);
    return ids;
}

std::vector<at::Tensor> load_plain_text(const dataset_options &opt, int64_t vocab_size, const tokenizer *tok) {
    const std::vector<int64_t> ids = dataset_token_stream(opt.path, vocab_size, tok, opt.text_column);
    const int64_t len = opt.max_seq_length;
    const int64_t chunks = static_cast<int64_t>(ids.size()) / len;
    if (chunks == 0)
        fail("dataset {}: {} tokens, fewer than max_seq_length {}: not one complete sample", opt.path, ids.size(), len);
    std::vector<int64_t> order(chunks);
    std::iota(order.begin(), order.end(), 0);
    if (opt.shuffle) seeded_shuffle(order, opt.seed);
    order.resize(std::min<int64_t>(chunks, opt.num_samples));
    std::vector<at::Tensor> out;
    out.reserve(order.size());
    for (int64_t c : order)
        out.push_back(at::tensor(at::ArrayRef<int64_t>(ids.data() + c * len, len), at::kLong).unsqueeze(0));
    return out;
}

std::vector<at::Tensor> load_jsonl(const dataset_options &opt, int64_t vocab_size, const tokenizer *tok) {
    // First pass: validate rows and remember where the usable ones are (offset, line), so only the
    // kept rows are held and tokenized. Without shuffle the first num_samples usable rows are the
    // samples, so reading stops there.
    struct row_ref {
        uint64_t offset;
        size_t line;
    };
    jsonl_reader reader(opt.path);
    std::optional<dataset_format> kind;
    std::vector<row_ref> refs;
    size_t skipped = 0;
    json row;
    while ((opt.shuffle || static_cast<int64_t>(refs.size()) < opt.num_samples) && reader.next(row)) {
        const std::string where = reader.where();
        if (!kind) {
            kind = kind_of(row, opt.text_column, where);
            if (*kind == dataset_format::jsonl_text && tok == nullptr)
                fail("dataset {}: rows hold '{}' text, which needs the model's tokenizer", where, opt.text_column);
        }
        if (*kind == dataset_format::jsonl_ids) {
            row_ids(row, vocab_size, where);
        } else if (blank(row_text(row, opt.text_column, where))) {
            ++skipped;
            continue;
        }
        refs.push_back({reader.offset(), reader.line()});
    }
    if (!kind) fail("dataset {}: no rows (the file is empty)", opt.path);
    if (skipped > 0) spdlog::info("dataset {}: skipped {} rows with an empty '{}'", opt.path, skipped, opt.text_column);
    if (refs.empty()) fail("dataset {}: every row's '{}' is empty", opt.path, opt.text_column);
    if (opt.shuffle) seeded_shuffle(refs, opt.seed);
    refs.resize(std::min<size_t>(refs.size(), static_cast<size_t>(opt.num_samples)));

    // Second pass: read the kept rows again, in sample order.
    std::vector<at::Tensor> out;
    out.reserve(refs.size());
    for (const auto &r : refs) {
        reader.seek(r.offset, r.line);
        if (!reader.next(row)) fail("dataset {}: changed while being read", reader.where());
        const std::string where = reader.where();
        std::vector<int64_t> ids = *kind == dataset_format::jsonl_ids
                                       ? row_ids(row, vocab_size, where)
                                       : encode_checked(*tok, row_text(row, opt.text_column, where), vocab_size, where);
        if (ids.empty()) fail("dataset {}: the text tokenizes to no tokens", where);
        if (static_cast<int64_t>(ids.size()) > opt.max_seq_length) ids.resize(opt.max_seq_length);
        out.push_back(at::tensor(ids, at::kLong).unsqueeze(0));
    }
    return out;
}

} // namespace

dataset_format dataset_detect(const std::string &path, const std::string &text_column) {
    if (!is_jsonl_name(path)) {
        open_file(path); // readable
        return dataset_format::plain_text;
    }
    jsonl_reader reader(path);
    json row;
    if (!reader.next(row)) fail("dataset {}: no rows (the file is empty)", path);
    return kind_of(row, text_column, reader.where());
}

std::vector<at::Tensor> dataset_load(const dataset_options &opt, int64_t vocab_size, const tokenizer *tok) {
    check_options(opt);
    return is_jsonl_name(opt.path) ? load_jsonl(opt, vocab_size, tok) : load_plain_text(opt, vocab_size, tok);
}

std::vector<int64_t> dataset_token_stream(const std::string &path, int64_t vocab_size, const tokenizer *tok,
                                          const std::string &text_column) {
    if (!is_jsonl_name(path)) {
        if (tok == nullptr) fail("dataset {}: plain text needs the model's tokenizer", path);
        const std::string text = read_all(path);
        if (blank(text)) fail("dataset {}: no text (the file is empty or blank)", path);
        return encode_checked(*tok, text, vocab_size, path);
    }
    jsonl_reader reader(path);
    std::optional<dataset_format> kind;
    std::vector<int64_t> ids;
    std::string text;
    json row;
    while (reader.next(row)) {
        const std::string where = reader.where();
        if (!kind) {
            kind = kind_of(row, text_column, where);
            if (*kind == dataset_format::jsonl_text && tok == nullptr)
                fail("dataset {}: rows hold '{}' text, which needs the model's tokenizer", where, text_column);
        } else if (*kind == dataset_format::jsonl_text) {
            text += "\n\n";
        }
        if (*kind == dataset_format::jsonl_ids) {
            const auto r = row_ids(row, vocab_size, where);
            ids.insert(ids.end(), r.begin(), r.end());
        } else {
            text += row_text(row, text_column, where);
        }
    }
    if (!kind) fail("dataset {}: no rows (the file is empty)", path);
    if (*kind == dataset_format::jsonl_ids) return ids;
    if (blank(text)) fail("dataset {}: every row's '{}' is empty", path, text_column);
    return encode_checked(*tok, text, vocab_size, path);
}

} // namespace llmc
