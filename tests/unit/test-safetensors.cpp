// Safetensors reader/writer: round trips of every dtype, sharding, and hostile files that must
// give llmc::error (naming the file and tensor), never a crash.
#include "io/file_regions.h"
#include "io/safetensors.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;
using namespace llmc;

namespace {

class temp_dir {
  public:
    temp_dir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("llmc-test-st-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    fs::path operator/(const std::string &name) const { return path_ / name; }
    const fs::path &path() const { return path_; }

  private:
    fs::path path_;
};

// A file with the given header text and data bytes; header_len overrides the length field.
void write_raw(const fs::path &p, const std::string &header, const std::string &data, int64_t header_len = -1) {
    std::ofstream out(p, std::ios::binary);
    uint64_t n = header_len < 0 ? header.size() : static_cast<uint64_t>(header_len);
    for (int i = 0; i < 8; ++i)
        out.put(static_cast<char>(n >> (8 * i)));
    out << header << data;
}

// Expects llmc::error whose message holds every one of `needles`.
template <class F> void expect_error(F &&f, std::initializer_list<std::string> needles) {
    try {
        f();
        ADD_FAILURE() << "no error thrown";
    } catch (const llmc::error &e) {
        const std::string msg = e.what();
        for (const auto &n : needles)
            EXPECT_NE(msg.find(n), std::string::npos) << "message lacks '" << n << "': " << msg;
    } catch (const std::exception &e) {
        ADD_FAILURE() << "wrong exception type: " << e.what();
    }
}

std::string read_file(const fs::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST(safetensors, round_trip_every_dtype) {
    temp_dir dir;
    const fs::path p = dir / "all.safetensors";
    at::manual_seed(0);
    std::vector<std::pair<std::string, at::Tensor>> tensors = {
        {"f32", at::randn({3, 4})},
        {"f64", at::randn({2, 3}, at::kDouble)},
        {"f16", at::randn({5}).to(at::kHalf)},
        {"bf16", at::randn({2, 2, 2}).to(at::kBFloat16)},
        {"i8", at::randint(-128, 127, {7}, at::kChar)},
        {"u8", at::randint(0, 255, {3}, at::kByte)},
        {"i16", at::randint(-1000, 1000, {4}, at::kShort)},
        {"i32", at::randint(-100000, 100000, {2, 3}, at::kInt)},
        {"i64", at::randint(-100000, 100000, {3}, at::kLong)},
        {"bool", at::randint(0, 2, {6}, at::kLong).to(at::kBool)},
        {"scalar", at::scalar_tensor(3.5, at::kFloat)},
        {"empty", at::empty({0, 4}, at::kFloat)},
        {"strided", at::randn({4, 3}).t()}, // non-contiguous input
    };
    at::Tensor e4m3 = at::randint(0, 255, {2, 8}, at::kByte);
    at::Tensor e5m2 = at::randint(0, 255, {3}, at::kByte);
    {
        safetensors_writer w(p.string());
        for (const auto &[n, t] : tensors)
            w.add(n, t);
        w.add("f8_e4m3", e4m3, "F8_E4M3");
        w.add("f8_e5m2", e5m2, "F8_E5M2");
        w.finish();
    }
    EXPECT_FALSE(fs::exists(p.string() + ".partial"));
    EXPECT_FALSE(fs::exists(p.string() + ".data.partial"));

    // The header is space-padded to a multiple of 8.
    const std::string bytes = read_file(p);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i)
        hlen |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    EXPECT_EQ(hlen % 8, 0u);

    safetensors_file f(p.string());
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    std::vector<std::string> expected_names;
    for (const auto &[n, t] : tensors)
        expected_names.push_back(n);
    expected_names.push_back("f8_e4m3");
    expected_names.push_back("f8_e5m2");
    EXPECT_EQ(f.names(), expected_names);
    for (const auto &[n, t] : tensors) {
        at::Tensor r = f.tensor(n);
        EXPECT_EQ(r.scalar_type(), t.scalar_type()) << n;
        EXPECT_EQ(r.sizes(), t.sizes()) << n;
        EXPECT_TRUE(at::equal(r, t)) << n;
        EXPECT_EQ(f.info(n).dtype, safetensors_dtype_name(t.scalar_type())) << n;
        EXPECT_FALSE(f.info(n).raw_codes) << n;
    }
    EXPECT_EQ(f.info("bf16").dtype, "BF16");
    for (const auto &[n, codes, dt] : {std::tuple{"f8_e4m3", e4m3, "F8_E4M3"}, std::tuple{"f8_e5m2", e5m2, "F8_E5M2"}}) {
        const auto &i = f.info(n);
        EXPECT_EQ(i.dtype, dt);
        EXPECT_TRUE(i.raw_codes);
        EXPECT_EQ(i.scalar_type, at::kByte);
        at::Tensor r = f.tensor(n);
        EXPECT_EQ(r.scalar_type(), at::kByte);
        EXPECT_TRUE(at::equal(r, codes));
        byte_span raw = f.raw(n);
        ASSERT_EQ(raw.size, static_cast<size_t>(codes.numel()));
        EXPECT_EQ(std::memcmp(raw.data, codes.data_ptr(), raw.size), 0);
    }
}

TEST(safetensors, tensors_are_zero_copy_and_outlive_the_file_object) {
    temp_dir dir;
    const fs::path p = dir / "a.safetensors";
    at::Tensor src = at::arange(16, at::kFloat).reshape({4, 4});
    {
        safetensors_writer w(p.string());
        w.add("a", src);
        w.finish();
    }
    at::Tensor t;
    {
        safetensors_file f(p.string());
        t = f.tensor("a");
        EXPECT_EQ(t.data_ptr(), static_cast<const void *>(f.raw("a").data)); // a view, not a copy
    }
    EXPECT_TRUE(at::equal(t, src)); // the mapping lives on in the tensor
    // Copy-on-write: writable in memory, the file is untouched.
    t.add_(1);
    safetensors_file again(p.string());
    EXPECT_TRUE(at::equal(again.tensor("a"), src));
}

// A view no one wrote to is known to be its file's bytes (io/file_regions.h): the writer copies
// it from the file inside the kernel, and the exporter reads it from there. A view written to is
// not, and what is saved is then the memory, not the file.
TEST(safetensors, unmodified_views_are_written_from_their_file) {
    temp_dir dir;
    const fs::path p = dir / "in.safetensors";
    const at::Tensor small = at::arange(6, at::kFloat);
    const at::Tensor big = at::randn({512, 1024}); // 2 MiB: large enough to be copied in the kernel
    {
        safetensors_writer w(p.string());
        w.add("small", small);
        w.add("big", big);
        w.add("other", big * 2);
        w.finish();
    }
    safetensors_file f(p.string());
    at::Tensor clean = f.tensor("big"), dirty = f.tensor("other");
    const auto range = file_range_clean(clean.data_ptr(), clean.nbytes());
    ASSERT_TRUE(range.has_value()) << "a fresh view must be recognised (is /proc/self/pagemap readable?)";
    EXPECT_EQ(range->offset, f.data_offset() + f.info("big").begin);
    ASSERT_TRUE(file_range_clean(dirty.data_ptr(), dirty.nbytes()).has_value());
    dirty.index_put_({300, 7}, 42.0f); // one page becomes the process's own copy
    EXPECT_FALSE(file_range_clean(dirty.data_ptr(), dirty.nbytes()).has_value());
    EXPECT_TRUE(file_range_clean(dirty.data_ptr(), 4096).has_value()); // its first rows are untouched
    const at::Tensor heap = at::randn({512, 1024});
    EXPECT_FALSE(file_range_clean(heap.data_ptr(), heap.nbytes()).has_value());

    const fs::path q = dir / "out.safetensors";
    {
        safetensors_writer w(q.string(), {{"format", "pt"}}, 4096);
        w.add("small", f.tensor("small"));
        w.add("clean", clean);
        w.add("dirty", dirty);
        w.add("heap", heap);
        w.finish();
    }
    safetensors_file out(q.string());
    EXPECT_TRUE(at::equal(out.tensor("small"), small));
    EXPECT_TRUE(at::equal(out.tensor("clean"), big));
    EXPECT_TRUE(at::equal(out.tensor("dirty"), dirty));
    EXPECT_EQ(out.tensor("dirty")[300][7].item<float>(), 42.0f);
    EXPECT_TRUE(at::equal(out.tensor("heap"), heap));
}

// add_deferred: a large view still in its file gets its place at once and its bytes later, in
// pieces, from the file; what is added after it goes behind that place. The file is the one
// add() writes, byte for byte; a view written to, or a small one, is written at once.
TEST(safetensors, deferred_copies_write_the_same_file) {
    temp_dir dir;
    const fs::path p = dir / "in.safetensors";
    const at::Tensor big = at::randn({768, 1024}); // 3 MiB
    const at::Tensor other = at::randn({512, 1024});
    {
        safetensors_writer w(p.string());
        w.add("big", big);
        w.add("other", other);
        w.add("small", at::arange(6, at::kFloat));
        w.finish();
    }
    safetensors_file f(p.string());
    at::Tensor dirty = f.tensor("other");
    dirty.index_put_({3, 3}, 7.0f);
    const at::Tensor after = at::randn({300, 1024});
    auto write = [&](const fs::path &q, bool deferred, uint64_t reserve) {
        safetensors_writer w(q.string(), {{"format", "pt"}}, reserve);
        if (!deferred) {
            w.add("big", f.tensor("big"));
            w.add("dirty", dirty);
            w.add("small", f.tensor("small"));
            w.add("after", after);
            w.finish();
            return;
        }
        EXPECT_TRUE(w.add_deferred("big", f.tensor("big"), "F32"));
        EXPECT_EQ(w.copy_pending(0), big.nbytes()); // nothing copied yet
        EXPECT_FALSE(w.add_deferred("dirty", dirty, "F32"));
        EXPECT_FALSE(w.add_deferred("small", f.tensor("small"), "F32"));
        EXPECT_EQ(w.copy_pending(1 << 20), big.nbytes() - (1 << 20)); // a piece
        w.add("after", after);
        EXPECT_THROW(w.add_deferred("big", f.tensor("big"), "F32"), error); // a name twice
        w.finish(); // the rest
        EXPECT_EQ(w.copy_pending(UINT64_MAX), 0u);
    };
    for (const uint64_t reserve : {uint64_t{0}, uint64_t{4096}}) {
        const fs::path a = dir / "added.safetensors", b = dir / "deferred.safetensors";
        write(a, false, reserve);
        write(b, true, reserve);
        std::ifstream ia(a, std::ios::binary), ib(b, std::ios::binary);
        const std::string sa((std::istreambuf_iterator<char>(ia)), {}), sb((std::istreambuf_iterator<char>(ib)), {});
        EXPECT_EQ(sa.size(), sb.size()) << "reserve " << reserve;
        EXPECT_TRUE(sa == sb) << "reserve " << reserve;
        safetensors_file out(b.string());
        EXPECT_TRUE(at::equal(out.tensor("big"), big));
        EXPECT_TRUE(at::equal(out.tensor("after"), after));
        EXPECT_EQ(out.tensor("dirty")[3][3].item<float>(), 7.0f);
    }
    // Dropped before finish: no file, nothing copied later.
    {
        safetensors_writer w((dir / "dropped.safetensors").string(), {{"format", "pt"}}, 4096);
        EXPECT_TRUE(w.add_deferred("big", f.tensor("big"), "F32"));
    }
    for (const auto &e : fs::directory_iterator(dir.path()))
        EXPECT_EQ(e.path().filename().string().find("dropped"), std::string::npos) << e.path();
}

// Where copy_file_range cannot copy between the two files (another file system: EXDEV), the
// deferred copy goes through a buffer. Needs a second file system: /dev/shm where it is one.
TEST(safetensors, deferred_copies_cross_file_systems) {
    temp_dir dir;
    struct stat shm {}, tmp {};
    if (::stat("/dev/shm", &shm) != 0 || ::stat(dir.path().c_str(), &tmp) != 0 || shm.st_dev == tmp.st_dev ||
        ::access("/dev/shm", W_OK) != 0)
        GTEST_SKIP() << "no second writable file system at /dev/shm";
    const fs::path in = fs::path("/dev/shm") / ("llmc-test-st-" + std::to_string(::getpid()) + ".safetensors");
    const at::Tensor big = at::randn({768, 1024});
    {
        safetensors_writer w(in.string());
        w.add("big", big);
        w.finish();
    }
    {
        safetensors_file f(in.string());
        safetensors_writer w((dir / "out.safetensors").string(), {{"format", "pt"}}, 4096);
        EXPECT_TRUE(w.add_deferred("big", f.tensor("big"), "F32"));
        w.add("after", at::ones({4}));
        EXPECT_EQ(w.copy_pending(1 << 20), big.nbytes() - (1 << 20));
        w.finish();
    }
    fs::remove(in);
    safetensors_file out((dir / "out.safetensors").string());
    EXPECT_TRUE(at::equal(out.tensor("big"), big));
    EXPECT_TRUE(at::equal(out.tensor("after"), at::ones({4})));
}

// The sharded writer completes a shard's deferred copies when it closes the shard for the next.
TEST(safetensors, deferred_copies_finish_with_their_shard) {
    temp_dir dir;
    const fs::path p = dir / "in.safetensors";
    const at::Tensor a = at::randn({512, 1024}), b = at::randn({512, 1024}); // 2 MiB each
    {
        safetensors_writer w(p.string());
        w.add("a", a);
        w.add("b", b);
        w.finish();
    }
    safetensors_file f(p.string());
    const fs::path out_dir = dir / "out";
    {
        safetensors_sharded_writer w(out_dir.string(), 3 << 20);
        EXPECT_TRUE(w.add_deferred("a", f.tensor("a"), ""));
        EXPECT_TRUE(w.add_deferred("b", f.tensor("b"), "")); // a's shard is full: closed, a copied
        EXPECT_EQ(w.copy_pending(0), b.nbytes());
        w.add("c", at::ones({4}));
        w.finish();
    }
    safetensors_model m(out_dir.string());
    EXPECT_TRUE(m.sharded());
    EXPECT_TRUE(at::equal(m.file_of("a").tensor("a"), a));
    EXPECT_TRUE(at::equal(m.file_of("b").tensor("b"), b));
    EXPECT_TRUE(at::equal(m.file_of("c").tensor("c"), at::ones({4})));
}

TEST(safetensors, misaligned_data_is_copied) {
    temp_dir dir;
    const fs::path p = dir / "m.safetensors";
    at::Tensor one = at::ones({1}, at::kByte);
    at::Tensor f = at::randn({5});
    {
        safetensors_writer w(p.string());
        w.add("byte", one);
        w.add("float", f); // starts at data offset 1
        w.finish();
    }
    safetensors_file file(p.string());
    EXPECT_EQ(file.info("float").begin, 1u);
    EXPECT_TRUE(at::equal(file.tensor("float"), f));
}

// With a header reserve the data is written once, in place, and the header is padded with
// spaces to the reserve; a header that outgrows the reserve moves the data behind it instead.
// Either way the file reads back the same tensors as one written without a reserve, and the
// same bytes apart from the header's trailing spaces.
TEST(safetensors, header_reserve_fits_or_falls_back) {
    temp_dir dir;
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (int i = 0; i < 6; ++i)
        tensors.emplace_back("block." + std::to_string(i) + ".weight", at::randn({7 + i, 3}).to(i % 2 ? at::kBFloat16 : at::kFloat));
    auto write = [&](const fs::path &p, uint64_t reserve) {
        safetensors_writer w(p.string(), {{"format", "pt"}}, reserve);
        for (const auto &[n, t] : tensors) w.add(n, t);
        w.finish();
        EXPECT_FALSE(fs::exists(p.string() + ".partial"));
        EXPECT_FALSE(fs::exists(p.string() + ".data.partial"));
    };
    const fs::path plain = dir / "plain.safetensors", roomy = dir / "roomy.safetensors",
                   tight = dir / "tight.safetensors", odd = dir / "odd.safetensors";
    write(plain, 0);
    write(roomy, 4096);
    write(tight, 16);   // far too small: the fallback copy
    write(odd, 1001);   // rounded up to a multiple of 8
    const std::string base = read_file(plain);
    auto header_len = [](const std::string &b) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(b[static_cast<size_t>(i)]);
        return n;
    };
    auto strip = [&](const std::string &b) {
        const uint64_t n = header_len(b);
        std::string h = b.substr(8, n);
        while (!h.empty() && h.back() == ' ') h.pop_back();
        return h + "|" + b.substr(8 + n);
    };
    for (const fs::path &p : {roomy, tight, odd}) {
        const std::string b = read_file(p);
        EXPECT_EQ(header_len(b) % 8, 0u) << p;
        EXPECT_EQ(strip(b), strip(base)) << p;
        safetensors_file f(p.string());
        for (const auto &[n, t] : tensors) EXPECT_TRUE(at::equal(f.tensor(n), t)) << p << " " << n;
        EXPECT_EQ(f.metadata().at("format"), "pt");
    }
    EXPECT_EQ(header_len(read_file(roomy)), 4096u);
    EXPECT_EQ(header_len(read_file(odd)), 1008u);
    EXPECT_EQ(read_file(tight), base); // the fallback writes what no reserve writes
}

// An unfinished writer with a reserve leaves nothing behind either.
TEST(safetensors, header_reserve_abandoned_leaves_nothing) {
    temp_dir dir;
    const fs::path p = dir / "a.safetensors";
    {
        safetensors_writer w(p.string(), {{"format", "pt"}}, 4096);
        w.add("x", at::ones({100}));
    }
    EXPECT_FALSE(fs::exists(p));
    EXPECT_FALSE(fs::exists(p.string() + ".partial"));
    EXPECT_FALSE(fs::exists(p.string() + ".data.partial"));
}

// view_and_drop: a view of the mapping when the dtype matches (writes stay private to it), a
// converted copy otherwise; after the view is freed its pages read the file again.
TEST(safetensors, view_and_drop_views_matching_dtypes_only) {
    temp_dir dir;
    const fs::path p = dir / "v.safetensors";
    const at::Tensor big = at::randn({512, 512}); // 1 MiB: whole pages to drop
    const at::Tensor half = at::randn({64}).to(at::kBFloat16);
    {
        safetensors_writer w(p.string());
        w.add("big", big);
        w.add("half", half);
        w.finish();
    }
    safetensors_file f(p.string());
    {
        at::Tensor v = f.view_and_drop("big", at::kFloat);
        EXPECT_EQ(v.data_ptr(), static_cast<const void *>(f.raw("big").data));
        EXPECT_TRUE(at::equal(v, big));
        v.fill_(7); // copy-on-write pages, freed with the view
    }
    EXPECT_TRUE(at::equal(f.tensor("big"), big)); // dropped pages show the file again
    at::Tensor c = f.view_and_drop("half", at::kFloat);
    EXPECT_NE(c.data_ptr(), static_cast<const void *>(f.raw("half").data));
    EXPECT_TRUE(at::equal(c, half.to(at::kFloat)));
    EXPECT_TRUE(at::equal(f.tensor("big"), big));
}

TEST(safetensors, writer_rejects_bad_input) {
    temp_dir dir;
    const fs::path p = dir / "w.safetensors";
    {
        safetensors_writer w(p.string());
        w.add("x", at::ones({2}));
        expect_error([&] { w.add("x", at::ones({2})); }, {"'x'", "twice"});
        expect_error([&] { w.add("y", at::ones({2}), "F8_E4M3"); }, {"'y'", "F8_E4M3"});
        expect_error([&] { w.add("z", at::ones({2}), "F4"); }, {"'z'", "F4"});
        std::vector<uint8_t> bytes(3);
        expect_error([&] { w.add_raw("r", "F32", {1}, bytes.data(), bytes.size()); }, {"'r'"});
        // Not finished: nothing is left behind.
    }
    EXPECT_FALSE(fs::exists(p));
    EXPECT_FALSE(fs::exists(p.string() + ".partial"));
    EXPECT_FALSE(fs::exists(p.string() + ".data.partial"));
}

TEST(safetensors, sharded_writer_and_model_directory) {
    temp_dir dir;
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (int i = 0; i < 5; ++i)
        tensors.emplace_back("layer." + std::to_string(i) + ".weight", at::randn({10, 10})); // 400 bytes each
    {
        safetensors_sharded_writer w(dir.path().string(), 1000);
        for (const auto &[n, t] : tensors)
            w.add(n, t);
        at::Tensor codes = at::randint(0, 255, {16}, at::kByte);
        w.add("fp8", codes, "F8_E4M3");
        auto files = w.finish();
        EXPECT_EQ(files, (std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                                   "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
    }
    nlohmann::json index = nlohmann::json::parse(read_file(dir / "model.safetensors.index.json"));
    EXPECT_EQ(index["metadata"]["total_size"], 5 * 400 + 16);
    EXPECT_EQ(index["weight_map"]["layer.0.weight"], "model-00001-of-00003.safetensors");
    EXPECT_EQ(index["weight_map"]["layer.2.weight"], "model-00002-of-00003.safetensors");
    EXPECT_EQ(index["weight_map"]["fp8"], "model-00003-of-00003.safetensors");
    EXPECT_FALSE(fs::exists(dir / "model.safetensors"));

    safetensors_model m(dir.path().string());
    EXPECT_TRUE(m.sharded());
    EXPECT_EQ(m.files().size(), 3u);
    EXPECT_EQ(m.names().size(), 6u);
    for (const auto &[n, t] : tensors)
        EXPECT_TRUE(at::equal(m.tensor(n), t)) << n;
    EXPECT_EQ(m.info("fp8").dtype, "F8_E4M3");
    EXPECT_EQ(m.index_metadata().at("total_size"), "2016");

    // Saving again into the same directory as a single shard removes the old index and shards.
    {
        safetensors_sharded_writer w(dir.path().string());
        w.add("only", at::ones({3}));
        EXPECT_EQ(w.finish(), std::vector<std::string>{"model.safetensors"});
    }
    EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(dir / "model-00001-of-00003.safetensors"));
    safetensors_model single(dir.path().string());
    EXPECT_FALSE(single.sharded());
    EXPECT_EQ(single.names(), std::vector<std::string>{"only"});
}

TEST(safetensors, hostile_files_give_errors) {
    temp_dir dir;
    const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    const std::string data8(8, '\0');
    struct hostile {
        const char *what;
        std::string header;
        std::string data;
        int64_t header_len;
        std::vector<std::string> needles;
    };
    const std::vector<hostile> cases = {
        {"header length larger than file", "{" + ok_entry + "}", data8, 1 << 20, {"header length"}},
        {"header length over 100 MB", "{}", "", 200ll * 1000 * 1000, {"header length"}},
        {"not JSON", "{\"t\": [1, 2", "", -1, {"not valid JSON"}},
        {"binary garbage", std::string("\xff\xfe\x00\x01", 4), "", -1, {"not valid JSON"}},
        {"JSON array", "[1,2,3]", "", -1, {"not a JSON object"}},
        {"deep nesting", std::string(1000, '[') + std::string(1000, ']'), "", -1, {"nested"}},
        {"offsets outside data", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234", -1,
         {"'t'", "outside the data"}},
        {"begin after end", R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", data8, -1, {"'t'", "begin"}},
        {"length does not match shape", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8 + data8,
         -1, {"'t'", "needs 12"}},
        {"overlapping tensors",
         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
         data8 + data8, -1, {"overlaps", "'a'", "'b'"}},
        {"unknown dtype", R"({"t":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", data8, -1, {"'t'", "F4"}},
        {"missing data_offsets", R"({"t":{"dtype":"F32","shape":[2]}})", data8, -1, {"'t'", "data_offsets"}},
        {"negative dimension", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8, -1, {"'t'"}},
        {"float dimension", R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", data8, -1, {"'t'"}},
        {"shape overflow", R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data8, -1,
         {"'t'", "overflow"}},
        {"entry not an object", R"({"t":5})", data8, -1, {"'t'"}},
        {"duplicate tensor name",
         R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"t":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
         data8 + data8, -1, {"'t'", "twice"}},
        {"metadata not strings", R"({"__metadata__":{"format":1}})", "", -1, {"__metadata__"}},
    };
    int i = 0;
    for (const auto &c : cases) {
        SCOPED_TRACE(c.what);
        const fs::path p = dir / ("h" + std::to_string(i++) + ".safetensors");
        write_raw(p, c.header, c.data, c.header_len);
        std::vector<std::string> needles = c.needles;
        needles.push_back(p.string());
        try {
            safetensors_file f(p.string());
            ADD_FAILURE() << "no error";
        } catch (const llmc::error &e) {
            const std::string msg = e.what();
            for (const auto &n : needles)
                EXPECT_NE(msg.find(n), std::string::npos) << "message lacks '" << n << "': " << msg;
        }
    }

    // Files shorter than the length field, and a valid file cut in half.
    {
        const fs::path p = dir / "tiny.safetensors";
        std::ofstream(p, std::ios::binary) << "abc";
        expect_error([&] { safetensors_file f(p.string()); }, {p.string(), "truncated"});
        const fs::path empty = dir / "empty.safetensors";
        std::ofstream(empty, std::ios::binary).close();
        expect_error([&] { safetensors_file f(empty.string()); }, {"truncated"});
    }
    {
        const fs::path p = dir / "cut.safetensors";
        {
            safetensors_writer w(p.string());
            w.add("big", at::randn({64}));
            w.finish();
        }
        fs::resize_file(p, fs::file_size(p) - 100);
        expect_error([&] { safetensors_file f(p.string()); }, {p.string(), "'big'", "outside"});
    }
    {
        // A header length past the 100 MB limit in a (sparse) file that is big enough for it.
        const fs::path p = dir / "huge.safetensors";
        const uint64_t len = 150ull * 1000 * 1000;
        write_raw(p, "{}", "", static_cast<int64_t>(len));
        fs::resize_file(p, 8 + len + 16);
        expect_error([&] { safetensors_file f(p.string()); }, {p.string(), "100 MB"});
    }
    expect_error([&] { safetensors_file f((dir / "absent.safetensors").string()); }, {"cannot open"});
    expect_error([&] { safetensors_file f(dir.path().string()); }, {"not a regular file"});
}

TEST(safetensors, bool_bytes_must_be_0_or_1) {
    temp_dir dir;
    const fs::path p = dir / "b.safetensors";
    write_raw(p, R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x07", 2));
    safetensors_file f(p.string());
    expect_error([&] { f.tensor("b"); }, {"'b'"});
    expect_error([&] { f.tensor("nope"); }, {"'nope'"});
}

TEST(safetensors, shard_names_must_stay_inside_the_directory) {
    temp_dir outer;
    const fs::path model = outer / "model";
    fs::create_directories(model);
    // A real safetensors file outside the model directory, so only containment can reject it.
    const fs::path outside = outer / "x.safetensors";
    {
        safetensors_writer w(outside.string());
        w.add("w", at::ones({2}));
        w.finish();
    }
    auto write_index = [&](const std::string &shard) {
        nlohmann::json j;
        j["metadata"] = {{"total_size", 8}};
        j["weight_map"] = {{"w", shard}};
        std::ofstream(model / "model.safetensors.index.json") << j.dump();
    };
    write_index("../x.safetensors");
    expect_error([&] { safetensors_model m(model.string()); }, {"../x.safetensors", "escapes"});
    write_index("sub/../../x.safetensors");
    expect_error([&] { safetensors_model m(model.string()); }, {"escapes"});
    write_index(outside.string());
    expect_error([&] { safetensors_model m(model.string()); }, {outside.string(), "relative"});
    fs::create_symlink(outside, model / "link.safetensors");
    write_index("link.safetensors");
    expect_error([&] { safetensors_model m(model.string()); }, {"link.safetensors", "outside the model directory"});
    // A symlink that stays inside is fine.
    fs::copy_file(outside, model / "real.safetensors");
    fs::create_symlink(model / "real.safetensors", model / "inside.safetensors");
    write_index("inside.safetensors");
    safetensors_model ok(model.string());
    EXPECT_TRUE(at::equal(ok.tensor("w"), at::ones({2})));
    // The index naming a tensor its shard lacks, a missing shard, a malformed index.
    nlohmann::json j;
    j["weight_map"] = {{"w", "real.safetensors"}, {"ghost", "real.safetensors"}};
    std::ofstream(model / "model.safetensors.index.json") << j.dump();
    expect_error([&] { safetensors_model m(model.string()); }, {"'ghost'"});
    write_index("missing.safetensors");
    expect_error([&] { safetensors_model m(model.string()); }, {"missing.safetensors", "does not exist"});
    std::ofstream(model / "model.safetensors.index.json") << "{\"weight_map\": 3}";
    expect_error([&] { safetensors_model m(model.string()); }, {"weight_map"});
}

TEST(safetensors, hugging_face_cache_links_are_followed) {
    // <repo>/snapshots/<rev>/ holds links into <repo>/blobs/, as huggingface_hub lays it out.
    temp_dir cache;
    const fs::path repo = cache / "models--org--name";
    const fs::path snap = repo / "snapshots" / "0123abcd";
    fs::create_directories(snap);
    fs::create_directories(repo / "blobs");
    {
        safetensors_writer w((repo / "blobs" / "feedbeef").string());
        w.add("w", at::ones({2}));
        w.finish();
    }
    fs::create_symlink("../../blobs/feedbeef", snap / "model-00001-of-00001.safetensors");
    nlohmann::json j;
    j["weight_map"] = {{"w", "model-00001-of-00001.safetensors"}};
    std::ofstream(snap / "model.safetensors.index.json") << j.dump();
    safetensors_model m(snap.string());
    EXPECT_TRUE(at::equal(m.tensor("w"), at::ones({2})));
    // But not links out of the repository.
    fs::create_symlink(cache / "x.safetensors", snap / "out.safetensors");
    {
        safetensors_writer w((cache / "x.safetensors").string());
        w.add("w", at::ones({2}));
        w.finish();
    }
    j["weight_map"] = {{"w", "out.safetensors"}};
    std::ofstream(snap / "model.safetensors.index.json") << j.dump();
    expect_error([&] { safetensors_model bad(snap.string()); }, {"outside the model directory"});
}

TEST(safetensors, pickle_checkpoints_are_refused) {
    temp_dir dir;
    std::ofstream(dir / "config.json") << "{}";
    std::ofstream(dir / "pytorch_model.bin") << "not really a pickle";
    expect_error([&] { safetensors_model m(dir.path().string()); },
                 {"pytorch_model.bin", "pickle", "Convert", "safetensors"});
    temp_dir pt;
    std::ofstream(pt / "consolidated.pt") << "x";
    expect_error([&] { safetensors_model m(pt.path().string()); }, {"consolidated.pt", "safetensors"});
    temp_dir none;
    expect_error([&] { safetensors_model m(none.path().string()); }, {"no model.safetensors"});
    expect_error([&] { safetensors_model m((none / "absent").string()); }, {"not a model directory"});
}
