// The host table handed to a plugin instance: C functions over the session. Every function is an
// exception barrier (host exceptions never unwind through plugin frames).
#pragma once

#include <llmc/host.h>

namespace llmc {

class modifier_instance;

// host_data points at `inst`; the table is valid while `inst` lives.
llmc_host_t host_services_table(modifier_instance &inst);

} // namespace llmc
