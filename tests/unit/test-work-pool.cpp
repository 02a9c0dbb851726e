// The sleeping work pool (util/work_pool.h), the intra-op thread count it caps at
// (runtime_set_threads), and the float conversion spread over it (util/float_convert.h).
#include "util/float_convert.h"
#include "util/runtime.h"
#include "util/work_pool.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

TEST(RuntimeThreads, CountHoldsOnThisThreadAndOnNewOnes) {
    // 3 is nobody's default here, so a thread that fell back to ATen's default would show.
    llmc::runtime_set_threads(3);
    EXPECT_EQ(at::get_num_threads(), 3);
    int other = 0;
    std::thread([&] { other = at::get_num_threads(); }).join();
    EXPECT_EQ(other, 3);
}

TEST(WorkPool, EveryTaskRunsOnceOnUpToTheThreadCountTheCallerAmongThem) {
    llmc::runtime_set_threads(3);
    for (int round = 0; round < 20; ++round) {
        std::mutex m;
        std::vector<int> seen;
        std::set<std::thread::id> threads;
        std::atomic<int> running{0}, most{0};
        llmc::work_pool_run(7, [&](int i) {
            const int now = ++running;
            int h = most.load();
            while (now > h && !most.compare_exchange_weak(h, now)) {
            }
            // The first three tasks wait (up to 10 s) until three run at once: only three
            // threads can make that happen, and a loaded machine only delays it.
            if (i < 3) {
                const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                while (most.load() < 3 && std::chrono::steady_clock::now() < until)
                    std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
            {
                std::lock_guard<std::mutex> lock(m);
                seen.push_back(i);
                threads.insert(std::this_thread::get_id());
            }
            --running;
        });
        std::sort(seen.begin(), seen.end());
        ASSERT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6})) << "round " << round;
        EXPECT_EQ(most.load(), 3);
        EXPECT_EQ(threads.size(), 3u);
        EXPECT_TRUE(threads.count(std::this_thread::get_id()));
    }
}

TEST(WorkPool, ParallelForInsideRunsSeriallyAndTheCountComesBack) {
    llmc::runtime_set_threads(2);
    std::atomic<int> chunks{0}, nested_threads{0};
    llmc::work_pool_run(2, [&](int) {
        nested_threads += at::get_num_threads();
        at::parallel_for(0, 1 << 20, 1, [&](int64_t b, int64_t e) {
            EXPECT_EQ(b, 0);
            EXPECT_EQ(e, 1 << 20);
            ++chunks;
        });
    });
    EXPECT_EQ(nested_threads.load(), 2); // 1 in each task
    EXPECT_EQ(chunks.load(), 2);         // one whole-range chunk per task
    EXPECT_EQ(at::get_num_threads(), 2);
}

TEST(WorkPool, AnExceptionIsRethrownOnceTheRunningTasksReturn) {
    llmc::runtime_set_threads(2);
    std::atomic<int> finished{0}, started_late{0};
    EXPECT_THROW(llmc::work_pool_run(100,
                                     [&](int i) {
                                         if (i == 0) {
                                             std::this_thread::sleep_for(std::chrono::milliseconds(50));
                                             ++finished;
                                         } else if (i == 1) {
                                             throw std::runtime_error("task 1");
                                         } else {
                                             ++started_late;
                                         }
                                     }),
                 std::runtime_error);
    EXPECT_EQ(finished.load(), 1);     // the running call was waited for
    EXPECT_EQ(started_late.load(), 0); // no task starts after one has failed
    // The pool still runs afterwards.
    std::atomic<int> calls{0};
    llmc::work_pool_run(2, [&](int) { ++calls; });
    EXPECT_EQ(calls.load(), 2);
}

TEST(WorkPool, ARunInsideARunTakesItsTasksInTurn) {
    llmc::runtime_set_threads(2);
    std::mutex m;
    std::vector<std::pair<int, std::thread::id>> inner;
    llmc::work_pool_run(2, [&](int w) {
        const auto self = std::this_thread::get_id();
        llmc::work_pool_run(2, [&](int v) {
            EXPECT_EQ(std::this_thread::get_id(), self);
            std::lock_guard<std::mutex> lock(m);
            inner.emplace_back(w * 10 + v, self);
        });
    });
    std::vector<int> ids;
    for (const auto &p : inner) ids.push_back(p.first);
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<int>{0, 1, 10, 11}));
}

// Bit for bit what Tensor::to gives (a NaN for a NaN), on the pool or not: random values over the
// whole float range with halfway cases (round to even), ±0, infinities, NaN, values that overflow
// float16 and bfloat16, and float16 subnormals, at lengths on both sides of the pool's threshold.
TEST(FloatConvert, PooledConversionIsTensorTo) {
    llmc::runtime_set_threads(2);
    const int64_t min = llmc::float_convert_pooled_min;
    for (const int64_t n : {int64_t{1000}, min - 1, min, 3 * min + 12345}) {
        at::Tensor bits = at::randint(0, int64_t{1} << 32, {n}, at::kLong).to(at::kInt);
        at::Tensor x = bits.view(at::kFloat).clone();
        // Halfway between two bfloat16 values (the low 16 bits 0x8000), and between two float16
        // values near 1 (the low 13 bits 0x1000).
        x.slice(0, 0, 64).copy_(at::bitwise_or(at::bitwise_and(bits.slice(0, 0, 64), ~0xffff), 0x8000).view(at::kFloat));
        x.slice(0, 64, 128).copy_(1.0f + at::arange(64, at::kFloat) * (1.0f / 1024) + (1.0f / 2048));
        const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 70000.0f, -3.4e38f, 3e-6f, -6e-8f, 1e-40f};
        for (int i = 0; i < 10; ++i) x[128 + i] = specials[i];
        for (const at::ScalarType dt : {at::kBFloat16, at::kHalf}) {
            const at::Tensor got = llmc::float_convert_pooled(x, dt), want = x.to(dt);
            ASSERT_EQ(got.scalar_type(), dt);
            ASSERT_EQ(got.sizes(), x.sizes());
            // NaN stays NaN; its bits are not ATen's to promise (its vectorized loop writes 0xffff, its
            // scalar tail 0x7fc0).
            const at::Tensor nan = at::isnan(x);
            EXPECT_TRUE(at::equal(at::isnan(got), nan)) << n << " " << dt;
            EXPECT_TRUE(at::equal(got.view(at::kShort).masked_fill(nan, 0), want.view(at::kShort).masked_fill(nan, 0)))
                << n << " " << dt;
        }
    }
    // Not contiguous, or to float32: through ATen, and still a copy.
    const at::Tensor x = at::randn({2 * min, 2});
    const at::Tensor t = x.t();
    EXPECT_TRUE(at::equal(llmc::float_convert_pooled(t, at::kBFloat16), t.to(at::kBFloat16)));
    const at::Tensor same = llmc::float_convert_pooled(x, at::kFloat);
    EXPECT_TRUE(at::equal(same, x));
    EXPECT_NE(same.data_ptr(), x.data_ptr());
}

} // namespace
