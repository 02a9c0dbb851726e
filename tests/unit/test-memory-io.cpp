// The host's CPU allocator (own mappings for large tensors, freed ones reused up to a bound;
// chunks of huge pages for middle-sized ones) and
// the save's write queue (writes on a thread of their own, errors carried back).
#include "io/safetensors.h"
#include "io/tensor_write_queue.h"
#include "util/cpu_allocator.h"
#include "util/error.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>

using namespace llmc;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string &name) {
    const fs::path d = fs::temp_directory_path() / ("llmc-test-memory-io-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

} // namespace

TEST(cpu_allocator, large_tensors_get_own_mappings_and_reuse_freed_ones) {
    cpu_allocator_install();
    const cpu_allocator_stats s0 = cpu_allocator_stats_get();
    const void *first = nullptr;
    {
        at::Tensor a = at::empty({3 << 20}, at::kFloat); // 12 MiB: its own mapping, huge-page aligned
        first = a.data_ptr();
        EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % (2u << 20), 0u);
        a.fill_(1.5f);
        EXPECT_EQ(a.sum().item<double>(), 1.5 * (3 << 20));
    }
    const cpu_allocator_stats s1 = cpu_allocator_stats_get();
    EXPECT_EQ(s1.large_blocks, s0.large_blocks + 1);
    // The same length again: the freed mapping comes back.
    at::Tensor b = at::empty({3 << 20}, at::kFloat);
    EXPECT_EQ(b.data_ptr(), first);
    EXPECT_EQ(cpu_allocator_stats_get().reused_blocks, s1.reused_blocks + 1);
    // Small tensors come from malloc, 64-byte aligned, and work as ever.
    at::Tensor small = at::arange(1000, at::kLong);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(small.data_ptr()) % 64, 0u);
    EXPECT_EQ(small.sum().item<int64_t>(), 999 * 1000 / 2);
    EXPECT_EQ(cpu_allocator_stats_get().large_blocks, s1.large_blocks);
    // Empty tensors have no data and free cleanly.
    at::Tensor empty = at::empty({0}, at::kFloat);
    EXPECT_EQ(empty.numel(), 0);
}

// Below the middle size too, cpu_empty_cached gives a mapping of its own and takes a freed one of
// the same length back; middle sizes come from the chunks, reused by length: the exporter's
// per-module buffers are not faulted in anew.
TEST(cpu_allocator, cached_empty_reuses_small_mappings) {
    cpu_allocator_install();
    const cpu_allocator_stats s0 = cpu_allocator_stats_get();
    const void *first = nullptr;
    {
        at::Tensor a = cpu_empty_cached({20, 1000}, at::kBFloat16); // 40 KB
        ASSERT_EQ(a.sizes(), (std::vector<int64_t>{20, 1000}));
        EXPECT_EQ(a.scalar_type(), at::kBFloat16);
        EXPECT_TRUE(a.is_contiguous());
        first = a.data_ptr();
        a.fill_(2.0);
        EXPECT_TRUE((a == 2.0).all().item<bool>());
    }
    const cpu_allocator_stats s1 = cpu_allocator_stats_get();
    EXPECT_EQ(s1.large_blocks, s0.large_blocks + 1);
    at::Tensor b = cpu_empty_cached({1000, 20}, at::kHalf); // the same length
    EXPECT_EQ(b.data_ptr(), first);
    EXPECT_EQ(cpu_allocator_stats_get().reused_blocks, s1.reused_blocks + 1);
    at::Tensor none = cpu_empty_cached({0, 8}, at::kFloat);
    EXPECT_EQ(none.numel(), 0);
    EXPECT_EQ(cpu_allocator_stats_get().large_blocks, s1.large_blocks);
    const void *mid = nullptr;
    {
        at::Tensor c = cpu_empty_cached({100, 1000}, at::kBFloat16); // 200 KB: a chunk block
        mid = c.data_ptr();
        EXPECT_EQ(reinterpret_cast<uintptr_t>(mid) % 64, 0u);
        c.fill_(3.0);
        EXPECT_TRUE((c == 3.0).all().item<bool>());
    }
    const cpu_allocator_stats s2 = cpu_allocator_stats_get();
    EXPECT_EQ(s2.large_blocks, s1.large_blocks);
    at::Tensor d = cpu_empty_cached({50, 1000}, at::kFloat); // the same length again
    EXPECT_EQ(d.data_ptr(), mid);
    EXPECT_EQ(cpu_allocator_stats_get().chunk_blocks, s2.chunk_blocks);
}

// Middle-sized tensors (64 KiB up to the large-block size) come from chunks of huge pages: 64-byte
// aligned, usable, and a freed block serves the next request of its 64 KiB step whatever its shape
// or dtype, without carving a new one. Smaller tensors stay with malloc.
TEST(cpu_allocator, middle_sized_tensors_come_from_chunks_and_are_reused_by_length) {
    cpu_allocator_install();
    const cpu_allocator_stats s0 = cpu_allocator_stats_get();
    const void *first = nullptr;
    {
        at::Tensor a = at::empty({300 << 10}, at::kByte); // 300 KiB: a block of 320 KiB with its header
        first = a.data_ptr();
        EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 64, 0u);
        at::Tensor b = at::empty({70000}, at::kFloat); // another step, alive beside it
        EXPECT_NE(b.data_ptr(), first);
        a.fill_(7);
        b.fill_(-1.0f);
        EXPECT_TRUE((a == 7).all().item<bool>());
        EXPECT_EQ(b.sum().item<double>(), -70000.0);
    }
    const cpu_allocator_stats s1 = cpu_allocator_stats_get();
    EXPECT_GE(s1.chunk_blocks, s0.chunk_blocks + 1) << "a freed one of either step may have served";
    EXPECT_EQ(s1.large_blocks, s0.large_blocks);
    // 150k bf16 values: 300,000 bytes, the first block's step (320 KiB): it comes back.
    at::Tensor c = at::empty({150000}, at::kBFloat16);
    EXPECT_EQ(c.data_ptr(), first);
    EXPECT_EQ(cpu_allocator_stats_get().chunk_blocks, s1.chunk_blocks);
    // Below 64 KiB: malloc, not a chunk.
    at::Tensor small = at::empty({1000}, at::kFloat);
    EXPECT_EQ(cpu_allocator_stats_get().chunk_blocks, s1.chunk_blocks);
    // Just under the large-block size: the largest step, still a chunk block.
    at::Tensor edge = at::empty({int64_t(cpu_allocator_large_bytes) - 1}, at::kByte);
    edge.fill_(1);
    EXPECT_TRUE((edge == 1).all().item<bool>());
    EXPECT_EQ(cpu_allocator_stats_get().large_blocks, s1.large_blocks);
}

TEST(cpu_allocator, freed_blocks_beyond_the_bound_are_unmapped) {
    cpu_allocator_install();
    // More than the cache holds (256 MiB) in blocks of one length: freeing them all keeps only
    // what fits, so allocating them again maps the rest anew.
    const int64_t n = 72, floats = 5 << 20; // 72 x 20 MiB
    std::vector<at::Tensor> held;
    for (int64_t i = 0; i < n; ++i) held.push_back(at::empty({floats}, at::kFloat));
    held.clear();
    const cpu_allocator_stats s0 = cpu_allocator_stats_get();
    for (int64_t i = 0; i < n; ++i) held.push_back(at::empty({floats}, at::kFloat));
    const cpu_allocator_stats s1 = cpu_allocator_stats_get();
    const uint64_t reused = s1.reused_blocks - s0.reused_blocks;
    EXPECT_GT(reused, 0u);
    EXPECT_LE(reused * (floats * 4), uint64_t{256} << 20);
    EXPECT_EQ(s1.large_blocks - s0.large_blocks, static_cast<uint64_t>(n) - reused);
}

TEST(tensor_write_queue, writes_in_order_and_keeps_tensors_alive) {
    const fs::path d = fresh_dir("order");
    {
        safetensors_sharded_writer w(d.string());
        tensor_write_queue q(w, 1 << 20); // small bound: pushes wait on the writer
        for (int i = 0; i < 20; ++i) {
            at::Tensor t = at::full({64 << 10}, static_cast<float>(i)); // 256 KiB each
            q.push("t" + std::to_string(i), t);
        } // each t goes out of scope here: the queue holds its own reference
        q.push("codes", at::arange(16, at::kByte), "U8");
        q.finish();
        w.finish();
    }
    safetensors_file f((d / "model.safetensors").string());
    ASSERT_EQ(f.names().size(), 21u);
    uint64_t last_begin = 0;
    for (int i = 0; i < 20; ++i) {
        const std::string n = "t" + std::to_string(i);
        EXPECT_TRUE(at::equal(f.tensor(n), at::full({64 << 10}, static_cast<float>(i)))) << n;
        if (i > 0) EXPECT_GT(f.info(n).begin, last_begin) << "written out of order";
        last_begin = f.info(n).begin;
    }
    EXPECT_EQ(f.info("codes").dtype, "U8");
    fs::remove_all(d);
}

// A large tensor still in its input file is copied from it in pieces while the tensors pushed
// after it are written (so they do not wait in memory behind it); the file is as pushed.
TEST(tensor_write_queue, input_views_are_copied_between_later_tensors) {
    const fs::path d = fresh_dir("deferred");
    const at::Tensor big = at::randn({6 << 20}); // 24 MiB: three pieces
    {
        safetensors_writer w((d / "in.safetensors").string());
        w.add("big", big);
        w.finish();
    }
    {
        safetensors_file f((d / "in.safetensors").string());
        safetensors_sharded_writer w((d / "out").string());
        tensor_write_queue q(w, 1 << 20);
        q.push("first", at::ones({8}));
        q.push("big", f.tensor("big"));
        for (int i = 0; i < 20; ++i) q.push("t" + std::to_string(i), at::full({64 << 10}, static_cast<float>(i)));
        q.finish();
        EXPECT_EQ(w.copy_pending(0), 0u) << "finish() returned before the copy was done";
        w.finish();
    }
    safetensors_file out((d / "out" / "model.safetensors").string());
    ASSERT_EQ(out.names().size(), 22u);
    EXPECT_TRUE(at::equal(out.tensor("big"), big));
    EXPECT_LT(out.info("first").begin, out.info("big").begin);
    uint64_t last_begin = out.info("big").begin;
    for (int i = 0; i < 20; ++i) {
        const std::string n = "t" + std::to_string(i);
        EXPECT_TRUE(at::equal(out.tensor(n), at::full({64 << 10}, static_cast<float>(i)))) << n;
        EXPECT_GT(out.info(n).begin, last_begin) << "written out of order";
        last_begin = out.info(n).begin;
    }
    fs::remove_all(d);
}

TEST(tensor_write_queue, a_failed_write_is_rethrown_to_the_caller) {
    const fs::path d = fresh_dir("error");
    safetensors_sharded_writer w(d.string());
    tensor_write_queue q(w, 64 << 20);
    q.push("a", at::ones({4}));
    q.push("a", at::ones({4})); // a duplicate name: the writer refuses it
    bool thrown = false;
    try {
        q.push("b", at::ones({4}));
        q.finish();
    } catch (const std::exception &e) {
        thrown = true;
        EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(thrown);
    fs::remove_all(d);
}

TEST(tensor_write_queue, dropped_without_finish_stops_cleanly) {
    const fs::path d = fresh_dir("drop");
    {
        safetensors_sharded_writer w(d.string());
        tensor_write_queue q(w, 64 << 20);
        for (int i = 0; i < 50; ++i) q.push("t" + std::to_string(i), at::ones({1 << 16}));
        // No finish(): an error elsewhere unwinds; the queue's thread must stop, not hang.
    }
    // The unfinished writer leaves no checkpoint behind.
    EXPECT_FALSE(fs::exists(d / "model.safetensors"));
    fs::remove_all(d);
}

TEST(cpu_allocator, the_oldest_freed_blocks_leave_first) {
    cpu_allocator_install();
    const int64_t old_floats = 3 << 20, new_floats = 5 << 20; // 12 MiB, then 20 MiB blocks
    at::Tensor old_block = at::empty({old_floats}, at::kFloat);
    old_block = at::Tensor(); // cached
    std::vector<at::Tensor> held;
    for (int i = 0; i < 16; ++i) held.push_back(at::empty({new_floats}, at::kFloat)); // 320 MiB
    held.clear(); // freed after the old block: they push it out of the 256 MiB bound
    const cpu_allocator_stats s0 = cpu_allocator_stats_get();
    at::Tensor again = at::empty({old_floats}, at::kFloat);
    EXPECT_EQ(cpu_allocator_stats_get().reused_blocks, s0.reused_blocks) << "the stale length should be gone";
    at::Tensor recent = at::empty({new_floats}, at::kFloat);
    EXPECT_EQ(cpu_allocator_stats_get().reused_blocks, s0.reused_blocks + 1) << "a recent length comes back";
}
