#include "data/dataset.h"

#include "util/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>

namespace llmc {

std::vector<at::Tensor> dataset_load_ids(const dataset_options &opt, int64_t vocab_size) {
    std::ifstream in(opt.path);
    if (!in) fail("dataset {}: cannot open", opt.path);
    std::vector<std::vector<int64_t>> rows;
    std::string line;
    size_t lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object()) fail("dataset {}:{}: not a JSON object", opt.path, lineno);
        if (!j.contains("input_ids"))
            fail("dataset {}:{}: no 'input_ids' field (text rows need the tokenizer)", opt.path, lineno);
        const auto &ids = j["input_ids"];
        if (!ids.is_array() || ids.empty()) fail("dataset {}:{}: 'input_ids' must be a non-empty list", opt.path, lineno);
        std::vector<int64_t> row;
        for (const auto &v : ids) {
            if (!v.is_number_integer()) fail("dataset {}:{}: 'input_ids' holds a non-integer {}", opt.path, lineno, v.dump());
            int64_t id = v.get<int64_t>();
            if (id < 0 || id >= vocab_size)
                fail("dataset {}:{}: token id {} outside the vocabulary [0, {})", opt.path, lineno, id, vocab_size);
            row.push_back(id);
        }
        if (static_cast<int64_t>(row.size()) > opt.max_seq_length) row.resize(opt.max_seq_length);
        rows.push_back(std::move(row));
    }
    if (rows.empty()) fail("dataset {}: no samples", opt.path);
    std::vector<size_t> order(rows.size());
    std::iota(order.begin(), order.end(), 0);
    if (opt.shuffle) std::shuffle(order.begin(), order.end(), std::mt19937_64(opt.seed));
    std::vector<at::Tensor> out;
    for (size_t k = 0; k < order.size() && static_cast<int64_t>(out.size()) < opt.num_samples; ++k) {
        const auto &r = rows[order[k]];
        out.push_back(at::tensor(r, at::kLong).unsqueeze(0));
    }
    return out;
}

} // namespace llmc
