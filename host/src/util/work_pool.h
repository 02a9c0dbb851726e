// A small pool of threads that sleep when idle, for passes that run beside other busy threads.
// libgomp's team (behind at::parallel_for) spins between and at the end of its regions; when the
// export's writer thread takes a core, the spinning thread holds the other one, so the thread
// that still has work waits for a core while its partner burns one. Here idle threads block.
#pragma once

#include <functional>

namespace llmc {

// Runs fn(i) for every i in [0, tasks) and returns when all have returned. Up to
// work_pool_threads() threads take tasks in order as they come free, the calling thread among
// them; where more than one does, at::parallel_for inside fn runs serially on its thread. The
// first exception fn throws is rethrown here once the running calls have returned; tasks not
// started by then are skipped. A call made inside fn, or while another thread's call runs, runs
// its tasks in turn on the calling thread.
void work_pool_run(int tasks, const std::function<void(int)> &fn);

// at::get_num_threads() of the calling thread, or the count a serial_aten_ops of it replaced.
int work_pool_threads();

// While it lives, at::parallel_for and ATen's ops run serially on the constructing thread (its
// OpenMP thread count is 1), while work_pool_run still spreads over work_pool_threads(). For the
// small tensor ops around a pass over a weight (scales, zero points): each parallel region wakes
// libgomp's team, which then spins for a while beside the pool's threads and the export's writer
// (a third of a core through an NVFP4 save). Lives and dies on one thread.
class serial_aten_ops {
public:
    serial_aten_ops();
    ~serial_aten_ops();
    serial_aten_ops(const serial_aten_ops &) = delete;
    serial_aten_ops &operator=(const serial_aten_ops &) = delete;

private:
    int saved_ = 1, saved_outer_ = 0;
};

} // namespace llmc
