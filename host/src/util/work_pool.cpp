#include "util/work_pool.h"

#include "util/runtime.h"

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>

namespace llmc {
namespace {

// True on a thread while it runs a pool's fn (always on the pool's own threads).
thread_local bool running_pool_fn = false;

// The width work_pool_run uses on a thread that holds a serial_aten_ops: the OpenMP count it
// replaced (0: none held).
thread_local int outer_threads = 0;

} // namespace

serial_aten_ops::serial_aten_ops() {
    runtime_init_thread_count(); // or ATen's lazy initialisation would undo ours
    saved_ = omp_get_max_threads();
    saved_outer_ = outer_threads;
    if (outer_threads == 0) outer_threads = saved_;
    omp_set_num_threads(1);
}

serial_aten_ops::~serial_aten_ops() {
    omp_set_num_threads(saved_);
    outer_threads = saved_outer_;
}

int work_pool_threads() { return outer_threads > 0 ? outer_threads : at::get_num_threads(); }

namespace {

class work_pool {
public:
    void run(int tasks, int threads, const std::function<void(int)> &fn) {
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (threads <= 1 || running_pool_fn || !busy.owns_lock()) {
            for (int i = 0; i < tasks; ++i) fn(i);
            return;
        }
        start_threads(threads - 1);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            fn_ = &fn;
            tasks_ = tasks;
            next_ = 0;
            helpers_ = threads - 1;
            remaining_ = threads - 1;
            error_ = nullptr;
            ++generation_;
        }
        work_ready_.notify_all();
        {
            serial_aten_ops serial;
            running_pool_fn = true;
            take_tasks();
            running_pool_fn = false;
        }
        std::unique_lock<std::mutex> lock(mutex_);
        all_done_.wait(lock, [&] { return remaining_ == 0; });
        fn_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    // Runs tasks until none is left or one has failed.
    void take_tasks() {
        for (int i = next_++; i < tasks_; i = next_++) {
            try {
                (*fn_)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
                next_ = tasks_;
            }
        }
    }

    // Called with run_mutex_ held, so started_ has one writer.
    void start_threads(int n) {
        for (; started_ < n; ++started_) {
            const int index = started_;
            std::thread([this, index] { thread_main(index); }).detach(); // lives as long as the process
        }
    }

    void thread_main(int index) {
        serial_aten_ops serial;
        running_pool_fn = true;
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            work_ready_.wait(lock, [&] { return generation_ != seen; });
            seen = generation_;
            if (index >= helpers_) continue;
            lock.unlock();
            take_tasks();
            lock.lock();
            if (--remaining_ == 0) all_done_.notify_one();
        }
    }

    std::mutex run_mutex_; // one run at a time
    std::mutex mutex_;     // guards the members below but next_
    std::condition_variable work_ready_, all_done_;
    int started_ = 0;
    const std::function<void(int)> *fn_ = nullptr;
    int tasks_ = 0;
    std::atomic<int> next_{0};
    uint64_t generation_ = 0;
    int helpers_ = 0, remaining_ = 0;
    std::exception_ptr error_;
};

} // namespace

void work_pool_run(int tasks, const std::function<void(int)> &fn) {
    if (tasks <= 0) return;
    // Never destroyed: its detached threads sleep on its members until the process exits, and a
    // static's destructor could run while another static's destructor still uses the pool.
    static work_pool *pool = new work_pool();
    pool->run(tasks, std::min(tasks, work_pool_threads()), fn);
}

} // namespace llmc
