// tokenizer.json "post_processor": the special tokens put around an encoded sequence when
// add_special_tokens is asked for. Only single sequences are encoded here, so every supported
// processor reduces to a prefix and a suffix of ids.
#pragma once

#include "tokenizer/json_fields.h"

#include <cstdint>
#include <vector>

namespace llmc {

struct special_wrap {
    std::vector<int64_t> prefix; // e.g. BOS
    std::vector<int64_t> suffix; // e.g. EOS
};

// Types: TemplateProcessing, ByteLevel (adds nothing), BertProcessing, RobertaProcessing,
// Sequence; JSON null adds nothing. Others throw llmc::error naming the file and the type.
special_wrap make_post_processor(const nlohmann::json &j, const json_where &w);

} // namespace llmc
