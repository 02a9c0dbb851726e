// A data-free export writes the same bytes as the exporter did before its fused quantize-and-pack
// path and single-copy shard writer: FNV-1a hashes of model.safetensors and config.json, pinned
// from that code, for stories260K under a symmetric group and an asymmetric channel W4 recipe in
// float32 and bfloat16. The shard writer now reserves room for the header and pads it with spaces
// (the format allows trailing whitespace), so model.safetensors is hashed as its header without
// the trailing spaces followed by its data section: the same tensors, names, offsets and order.
#include "test_support.h"

#include <cstdint>
#include <string>

using namespace llmc;

namespace {

uint64_t fnv1a(const std::string &bytes) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

// The header's JSON without trailing spaces, then the data section. The header stays a multiple
// of 8 bytes long, so the data is aligned.
std::string without_header_padding(const std::string &file) {
    if (file.size() < 8) return file;
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[static_cast<size_t>(i)]);
    EXPECT_EQ(n % 8, 0u) << "header length " << n;
    if (8 + n > file.size()) return file;
    std::string header = file.substr(8, n);
    while (!header.empty() && header.back() == ' ') header.pop_back();
    EXPECT_EQ(header.find(' '), std::string::npos) << "spaces inside the header JSON";
    return header + file.substr(8 + n);
}

struct golden {
    const char *weights;
    const char *dtype;
    uint64_t model, config;
};

} // namespace

TEST(export_bytes, datafree_w4_checkpoints_are_unchanged) {
    LLMC_REQUIRE_SHARED();
    test::temp_dir dir("export-bytes");
    const golden cases[] = {
        {"{num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 4}", "float32",
         0xb3f9a7eaf2f55f09ull, 0xd9304e0e7db44a47ull},
        {"{num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 4}", "bfloat16",
         0xc901933fcf1847d0ull, 0x6f7bd83cf569e4fbull},
        {"{num_bits: 4, type: int, symmetric: false, strategy: channel}", "float32", 0x9a8b89cd3a27ed72ull,
         0x5ed9f29311fcf1a5ull},
        {"{num_bits: 4, type: int, symmetric: false, strategy: channel}", "bfloat16", 0xfb3d5115dc807d4cull,
         0xfe62de0bf3b992bdull},
    };
    int k = 0;
    for (const auto &c : cases) {
        const std::string recipe = dir / ("r" + std::to_string(k) + ".yaml");
        const std::string out = dir / ("out" + std::to_string(k++));
        test::write_file(recipe, std::string("quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n"
                                             "      ignore: [lm_head]\n      config_groups:\n        group_0:\n"
                                             "          targets: [Linear]\n          weights: ") +
                                     c.weights + "\n");
        auto r = test::run_command(std::string(LLMC_HOST_EXE) + " --plugins " + LLMC_PLUGIN_DIR + " --recipe " +
                                   recipe + " --model " + test::stories_dir() + " --output " + out +
                                   " --pipeline datafree --dtype " + c.dtype + " --log-level warn");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_EQ(fnv1a(without_header_padding(test::read_file(out + "/model.safetensors"))), c.model) << c.weights << " " << c.dtype;
        EXPECT_EQ(fnv1a(test::read_file(out + "/config.json")), c.config) << c.weights << " " << c.dtype;
    }
}
