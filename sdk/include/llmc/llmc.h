/* llmc plugin ABI, version 1. Include this one header.
 *
 * Ownership rules, stated once:
 * 1. Whoever allocates frees: nothing is freed across the boundary except DLManagedTensor, whose
 *    receiver calls its deleter exactly once.
 * 2. Strings and arrays passed into a call are borrowed for that call; copy what you keep.
 * 3. What the plugin returns (descriptor, strings in it) is plugin-owned and lives as long as the
 *    library stays loaded; instance state lives until destroy.
 * 4. host_data belongs to the host, instance state to the plugin; neither touches the other's.
 * 5. Exceptions never cross: every callback returns a status and reports through the sink. */
#ifndef LLMC_LLMC_H
#define LLMC_LLMC_H

#include "event.h"
#include "host.h"
#include "plugin.h"
#include "status.h"
#include "version.h"

#endif
