// A small pool of threads that sleep when idle, for passes that run beside other busy threads.
// libgomp's team (behind at::parallel_for) spins between and at the end of its regions; when the
// export's writer thread takes a core, the spinning thread holds the other one, so the thread
// that still has work waits for a core while its partner burns one. Here idle threads block.
#pragma once

#include <functional>

namespace llmc {

// Runs fn(i) for every i in [0, tasks) and returns when all have returned. Up to
// at::get_num_threads() threads take tasks in order as they come free, the calling thread among
// them; where more than one does, at::parallel_for inside fn runs serially on its thread. The
// first exception fn throws is rethrown here once the running calls have returned; tasks not
// started by then are skipped. A call made inside fn, or while another thread's call runs, runs
// its tasks in turn on the calling thread.
void work_pool_run(int tasks, const std::function<void(int)> &fn);

} // namespace llmc
