#include "recipe/recipe.h"

#include "recipe/yaml_json.h"
#include "util/error.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace llmc {

using nlohmann::ordered_json;

namespace {

const char *const allowed_top_level = "'<name>_stage', '<group>_modifiers', 'modifiers', 'args'";

bool ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "<stem><suffix>" with a non-empty stem.
bool named(const std::string &key, const std::string &suffix) {
    return key.size() > suffix.size() && ends_with(key, suffix);
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

std::string trim(const std::string &s) {
    size_t b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos)
        return "";
    return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::string rtrim(const std::string &s) { return s.substr(0, s.find_last_not_of(" \t\r") + 1); }

// Returns the YAML inside front matter (`---` ... `---`), with the lines before it left blank so
// that line numbers in errors still point into the file. A Markdown recipe card must have front
// matter, found anywhere as llm-compressor's regex does (`+++` too); other text is unwrapped only
// when it starts with a `---` line closed by another `---` line, which YAML would read as the
// first document anyway.
std::string unwrap_front_matter(const std::string &text, const std::string &source) {
    bool markdown = ends_with(lower(source), ".md");
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        lines.push_back(l);

    auto is_delimiter = [&](const std::string &l, bool opening) {
        if (markdown)
            return trim(l) == "---" || trim(l) == "+++";
        return (opening ? trim(l) : rtrim(l)) == "---";
    };
    size_t open = 0;
    while (open < lines.size() && (markdown ? !is_delimiter(lines[open], true) : trim(lines[open]).empty()))
        ++open;
    size_t close = open + 1;
    bool found = open < lines.size() && is_delimiter(lines[open], true);
    while (found && close < lines.size() && !is_delimiter(lines[close], false))
        ++close;
    found = found && close < lines.size();
    if (!found) {
        if (markdown)
            fail("{}: no YAML front matter ('---' ... '---') in the Markdown recipe", source);
        return text;
    }
    std::string yaml(open + 1, '\n');
    for (size_t i = open + 1; i < close; ++i)
        yaml += lines[i] + "\n";
    return yaml;
}

const char *kind_of(const YAML::Node &n) {
    switch (n.Type()) {
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a scalar";
    default: return "empty";
    }
}

class parser {
  public:
    explicit parser(const std::string &source) { r_.source = source; }

    recipe parse(const YAML::Node &root) {
        if (!root.IsDefined() || root.IsNull())
            fail("{}: empty recipe: no modifiers (expected keys {})", r_.source, allowed_top_level);
        if (!root.IsMap())
            fail("{}: a recipe must be a mapping with keys {}, not {}{}", at(root), allowed_top_level, kind_of(root),
                 root.IsScalar() ? " (if it names a recipe file, that file was not found)" : "");
        std::set<std::string> seen;
        for (const auto &kv : root) {
            std::string key = key_name(kv.first, seen, "top-level key");
            const YAML::Node &value = kv.second;
            if (key == "args")
                read_args(kv.first, value);
            else if (key == "modifiers")
                read_modifiers(kv.first, value);
            else if (named(key, "_stage"))
                read_stage(key, kv.first, value);
            else if (named(key, "_modifiers"))
                read_group("default", key, key, kv.first, value);
            else
                fail("{}: unknown top-level key '{}' (allowed: {})", at(kv.first), key, allowed_top_level);
        }
        if (r_.modifiers.empty())
            fail("{}: empty recipe: no modifiers found in it", r_.source);
        return std::move(r_);
    }

  private:
    recipe r_;

    std::string at(const YAML::Node &n) const { return yaml_location(r_.source, n.Mark()); }

    // An empty value's mark lies on the next token; the key's mark is where the user looks.
    std::string at_value(const YAML::Node &key, const YAML::Node &value) const {
        return value.IsNull() ? at(key) : at(value);
    }

    std::string key_name(const YAML::Node &key, std::set<std::string> &seen, const char *what) const {
        if (!key.IsScalar() || key.Scalar().empty())
            fail("{}: each {} must be a plain name", at(key), what);
        const std::string &name = key.Scalar();
        if (!seen.insert(name).second)
            fail("{}: duplicate {} '{}'", at(key), what, name);
        return name;
    }

    void read_args(const YAML::Node &key, const YAML::Node &value) {
        if (!value.IsNull() && !value.IsMap())
            fail("{}: 'args' must be a mapping, not {}", at_value(key, value), kind_of(value));
        r_.args = value.IsNull() ? ordered_json::object() : yaml_to_json(value, r_.source);
    }

    void read_stage(const std::string &key, const YAML::Node &key_node, const YAML::Node &value) {
        if (!value.IsMap())
            fail("{}: stage '{}' must be a mapping of '<group>_modifiers' groups, not {}", at_value(key_node, value),
                 key, kind_of(value));
        std::string stage = key.substr(0, key.size() - std::string("_stage").size());
        std::set<std::string> seen;
        for (const auto &kv : value) {
            std::string group_key = key_name(kv.first, seen, "key in a stage");
            if (named(group_key, "_modifiers"))
                read_group(stage, group_key, key + "." + group_key, kv.first, kv.second);
            else if (group_key != "run_type") // older recipes mark stages oneshot/train; one pipeline here
                fail("{}: unknown key '{}' in stage '{}' (allowed: '<group>_modifiers')", at(kv.first), group_key,
                     key);
        }
    }

    void read_group(const std::string &stage, const std::string &key, const std::string &path,
                    const YAML::Node &key_node, const YAML::Node &value) {
        if (!value.IsMap())
            fail("{}: modifier group '{}' must be a mapping of ClassName: {{fields}}, not {}",
                 at_value(key_node, value), path, kind_of(value));
        std::string group = key.substr(0, key.size() - std::string("_modifiers").size());
        std::set<std::string> seen;
        for (const auto &kv : value) {
            key_name(kv.first, seen, fmt::format("modifier in '{}'", path).c_str());
            add_modifier(stage, group, path, kv.first, kv.second);
        }
    }

    // `modifiers:` as {ClassName: fields} or [{ClassName: fields}, ...]: stage and group "default".
    void read_modifiers(const YAML::Node &key, const YAML::Node &value) {
        if (value.IsMap()) {
            read_group("default", "default_modifiers", "modifiers", key, value);
            return;
        }
        if (!value.IsSequence())
            fail("{}: 'modifiers' must be a mapping of ClassName: {{fields}} or a list of them, not {}",
                 at_value(key, value), kind_of(value));
        for (size_t i = 0; i < value.size(); ++i) {
            const YAML::Node &entry = value[i];
            if (!entry.IsMap() || entry.size() != 1) {
                std::string keys;
                if (entry.IsMap())
                    for (const auto &kv : entry)
                        keys += (keys.empty() ? "" : ", ") + fmt::format("'{}'", kv.first.Scalar());
                fail("{}: entry {} of 'modifiers' must be a single-key mapping {{ClassName: {{fields}}}}, not {}{}",
                     at_value(key, entry), i, kind_of(entry),
                     keys.empty() ? "" : " with keys " + keys + " (indent the fields under the class name)");
            }
            auto kv = *entry.begin();
            std::set<std::string> seen;
            key_name(kv.first, seen, "modifier class name");
            add_modifier("default", "default", fmt::format("modifiers[{}]", i), kv.first, kv.second);
        }
    }

    void add_modifier(const std::string &stage, std::string group, const std::string &path,
                      const YAML::Node &class_key, const YAML::Node &fields) {
        recipe_modifier m;
        m.class_name = class_key.Scalar();
        m.line = class_key.Mark().line + 1;
        m.column = class_key.Mark().line < 0 ? 0 : class_key.Mark().column + 1;
        m.where = m.line > 0 ? fmt::format("{}:{}:{}: {}.{}", r_.source, m.line, m.column, path, m.class_name)
                             : fmt::format("{}: {}.{}", r_.source, path, m.class_name);
        if (fields.IsNull())
            m.args = ordered_json::object();
        else if (fields.IsMap())
            m.args = yaml_to_json(fields, r_.source);
        else
            fail("{}: fields of modifier '{}' ({}) must be a mapping, not {}", at(fields), m.class_name, path,
                 kind_of(fields));
        // `group:` names the group the modifier belongs to; it is not a modifier field here.
        if (m.args.contains("group")) {
            const ordered_json &g = m.args["group"];
            if (g.is_string() && !g.get<std::string>().empty())
                group = g.get<std::string>();
            else if (!g.is_null())
                fail("{}: 'group' of modifier '{}' must be a non-empty string, not {}", at(fields["group"]),
                     m.class_name, g.dump());
            m.args.erase("group");
        }
        m.stage = stage;
        m.group = std::move(group);
        r_.modifiers.push_back(std::move(m));
    }
};

// The fields llm-compressor writes: not None, not private (`*_`), not `group`.
ordered_json saved_args(const recipe_modifier &m) {
    if (m.args.is_null())
        return ordered_json::object();
    if (!m.args.is_object())
        fail("{}: modifier args must be a mapping, not {}", m.where, m.args.type_name());
    ordered_json out = ordered_json::object();
    for (const auto &item : m.args.items())
        if (!item.value().is_null() && !ends_with(item.key(), "_") && item.key() != "group")
            out[item.key()] = item.value();
    return out;
}

} // namespace

recipe recipe_parse(const std::string &yaml_text, const std::string &source) {
    std::string text = unwrap_front_matter(yaml_text, source);
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception &e) {
        fail("{}: invalid YAML: {}", yaml_location(source, e.mark), e.msg);
    }
    return parser(source).parse(root);
}

recipe recipe_load_file(const std::string &path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        fail("recipe file '{}' not found or not a regular file", path);
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in)
        fail("cannot read recipe file '{}': {}", path, std::strerror(errno));
    return recipe_parse(text.str(), path);
}

std::string recipe_to_yaml(const recipe &r) {
    ordered_json doc = ordered_json::object();
    if (r.args.is_object() && !r.args.empty())
        doc["args"] = r.args;
    for (const recipe_modifier &m : r.modifiers) {
        std::string stage = (m.stage.empty() ? "default" : m.stage) + "_stage";
        std::string group = (m.group.empty() ? "default" : m.group) + "_modifiers";
        ordered_json &mods = doc[stage][group];
        if (mods.contains(m.class_name))
            fail("{}: cannot write the recipe: {}.{} already holds a {} (one modifier per class per group; "
                 "put the second in another group)",
                 m.where, stage, group, m.class_name);
        mods[m.class_name] = saved_args(m);
    }
    return yaml_dump(doc);
}

} // namespace llmc
