// The public C headers compiled as C++17 with -Wall -Wextra -pedantic -Werror.
#include <llmc/llmc.h>

static_assert(sizeof(llmc_modifier_descriptor_t) == 152, "descriptor size changed");
static_assert(LLMC_ABI_VERSION_MAJOR == 1, "ABI major");

int llmc_abi_headers_cxx17() { return LLMC_ABI_VERSION_MINOR; }
