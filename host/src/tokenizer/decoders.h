// tokenizer.json "decoder": turns the token strings of a list of ids back into text.
#pragma once

#include "tokenizer/json_fields.h"

#include <memory>
#include <string>
#include <vector>

namespace llmc {

class decoder {
  public:
    virtual ~decoder() = default;
    // Rewrites the token strings; decoding concatenates what is left. Decoders work on the
    // list (not on each token) because some look at neighbours: ByteFallback gathers runs of
    // byte tokens, Fuse joins everything, Metaspace treats the first token specially.
    virtual void decode_chain(std::vector<std::string> &tokens) const = 0;
};

// Types: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder.
// nullptr for a JSON null; others throw llmc::error naming the file and the type.
std::unique_ptr<decoder> make_decoder(const nlohmann::json &j, const json_where &w);

// transformers' clean_up_tokenization_spaces: " ." -> ".", " n't" -> "n't", ... (applied by
// Python's decode when tokenizer_config.json asks; not part of tokenizer.json's decoder).
std::string clean_up_tokenization_spaces(std::string text);

} // namespace llmc
