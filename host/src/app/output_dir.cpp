#include "app/output_dir.h"

#include "util/error.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <random>

namespace llmc {

namespace fs = std::filesystem;

output_dir::output_dir(const std::string &target, bool overwrite) : target_(target), overwrite_(overwrite) {
    if (target.empty()) fail("no output directory given (--output)");
    fs::path t = fs::absolute(target).lexically_normal();
    if (t.filename().empty()) t = t.parent_path();
    std::error_code ec;
    if (fs::exists(t, ec) && !overwrite && !(fs::is_directory(t) && fs::is_empty(t)))
        fail("output {} already exists (pass --overwrite to replace it)", target);
    if (!fs::is_directory(t.parent_path(), ec)) fail("output {}: parent directory {} does not exist", target, t.parent_path().string());
    std::random_device rd;
    staging_ = (t.parent_path() / fmt::format(".{}.partial-{:08x}", t.filename().string(), rd())).string();
    fs::create_directory(staging_, ec);
    if (ec) fail("output {}: cannot create {}: {}", target, staging_, ec.message());
    target_ = t.string();
}

output_dir::~output_dir() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(staging_, ec);
}

void output_dir::copy_side_files(const std::string &model_dir) const {
    static const char *names[] = {"tokenizer.json",          "tokenizer_config.json", "special_tokens_map.json",
                                  "tokenizer.model",         "generation_config.json", "added_tokens.json",
                                  "chat_template.jinja",     "vocab.json",            "merges.txt"};
    for (const char *n : names) {
        fs::path src = fs::path(model_dir) / n;
        std::error_code ec;
        if (!fs::is_regular_file(src, ec)) continue;
        fs::copy_file(src, fs::path(staging_) / n, fs::copy_options::overwrite_existing, ec);
        if (ec) fail("cannot copy {} to the output: {}", src.string(), ec.message());
    }
}

void output_dir::commit() {
    std::error_code ec;
    fs::path old;
    if (fs::exists(target_, ec)) {
        old = fs::path(target_).parent_path() / fmt::format(".{}.old", fs::path(target_).filename().string());
        fs::remove_all(old, ec);
        fs::rename(target_, old, ec);
        if (ec) fail("cannot move the existing output {} aside: {}", target_, ec.message());
    }
    fs::rename(staging_, target_, ec);
    if (ec) fail("cannot move {} into place at {}: {}", staging_, target_, ec.message());
    committed_ = true;
    if (!old.empty()) fs::remove_all(old, ec);
}

} // namespace llmc
