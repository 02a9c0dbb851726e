// Recipes in llm-compressor's grammar: stages of modifier groups of `ClassName: {fields}`,
// flattened into one ordered list, and written back in its Recipe.yaml() layout.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace llmc {

struct recipe_modifier {
    std::string stage;           // stage name without "_stage" ("default" when none)
    std::string group;           // group name without "_modifiers" ("default" when none)
    std::string class_name;      // "GPTQModifier"
    nlohmann::ordered_json args; // the modifier's fields as given (object; key order preserved)
    std::string where;           // "recipe.yaml: quant_stage.quant_modifiers.GPTQModifier"
    int line = 0;                // 1-based position of the class name in the source; 0 if unknown
    int column = 0;
};

struct recipe {
    std::vector<recipe_modifier> modifiers; // flattened, in recipe order
    nlohmann::ordered_json args;            // top-level `args:` if any (object or null)
    std::string source;                     // file path or "<string>"
};

// Reads YAML, JSON, or Markdown with YAML front matter (a ".md" file, as llm-compressor does).
recipe recipe_load_file(const std::string &path);

// Accepted top level: `<name>_stage:` {`<group>_modifiers:` {ClassName: fields}}, and the older
// forms `<group>_modifiers:` and `modifiers:` (a mapping or a list of single-key mappings), plus
// `args:`. Text wrapped in front matter (`---` ... `---`) is unwrapped first.
// Throws llmc::error naming the source, line and column of whatever is wrong.
recipe recipe_parse(const std::string &yaml_text, const std::string &source = "<string>");

// `{<stage>_stage: {<group>_modifiers: {ClassName: args}}}` with null-valued, `*_` and `group`
// fields dropped, as llm-compressor's Recipe.yaml() writes it; `args:` first when non-empty.
// Modifiers sharing a stage and group share one mapping, so a class may appear once in each.
std::string recipe_to_yaml(const recipe &r);

} // namespace llmc
