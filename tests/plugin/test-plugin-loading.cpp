// Plugin discovery and loading against real plugin libraries: the broken corpus is reported and
// skipped, duplicates are an error naming both files, the host lists what it found, and the
// conformance kit names the failing check of each broken plugin.
#include "model/causal_lm.h"
#include "plugin/plugin_registry.h"
#include "session/session.h"
#include "test_support.h"
#include "util/error.h"

#include <llmc/version.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using namespace llmc;
namespace fs = std::filesystem;

namespace {

std::string broken(const std::string &name) { return std::string(LLMC_BROKEN_PLUGIN_DIR) + "/libllmc-broken_" + name + ".so"; }
std::string probe() { return std::string(LLMC_TEST_PLUGIN_DIR) + "/libllmc-services_probe.so"; }

std::string failure_for(const plugin_registry &reg, const std::string &path) {
    for (const auto &f : reg.failures())
        if (f.path == path) return f.reason;
    return "";
}

} // namespace

TEST(plugin_loading, broken_corpus_is_reported_and_skipped) {
    plugin_registry reg;
    reg.scan(LLMC_BROKEN_PLUGIN_DIR);
    ASSERT_EQ(reg.failures().size(), 3u);
    EXPECT_NE(failure_for(reg, broken("no_entry")).find("no entry symbol 'llmc_plugin_entry'"), std::string::npos);
    const std::string abi = failure_for(reg, broken("abi_major"));
    EXPECT_NE(abi.find("built for ABI 99."), std::string::npos) << abi;
    EXPECT_NE(abi.find("this host supports " + std::to_string(LLMC_ABI_VERSION_MAJOR) + "." +
                       std::to_string(LLMC_ABI_VERSION_MINOR)),
              std::string::npos)
        << abi;
    EXPECT_NE(failure_for(reg, broken("null_name")).find("'name' is missing"), std::string::npos);
    for (const auto &f : reg.failures()) EXPECT_NE(f.reason.find(f.path), std::string::npos) << "reason names the file";
    // The ones that break only when run still load and register.
    EXPECT_TRUE(reg.find("BrokenThrowsCreateModifier"));
    EXPECT_TRUE(reg.find("BrokenSegvHookModifier"));
}

TEST(plugin_loading, duplicate_names_are_an_error_naming_both_files) {
    test::temp_dir dir("dup");
    fs::copy_file(probe(), dir / "libllmc-a.so");
    fs::copy_file(probe(), dir / "libllmc-b.so");
    plugin_registry reg;
    try {
        reg.scan(dir.path());
        FAIL() << "expected an error";
    } catch (const error &e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("ServicesProbeModifier"), std::string::npos) << m;
        EXPECT_NE(m.find(dir / "libllmc-a.so"), std::string::npos) << m;
        EXPECT_NE(m.find(dir / "libllmc-b.so"), std::string::npos) << m;
    }
}

TEST(plugin_loading, missing_directory_and_unknown_modifier) {
    plugin_registry reg;
    EXPECT_THROW(reg.scan("/nonexistent/llmc/plugins"), error);
    reg.scan(LLMC_TEST_PLUGIN_DIR);
    try {
        reg.get("GPTQModifierr");
        FAIL();
    } catch (const error &e) {
        EXPECT_NE(std::string(e.what()).find("available: ServicesProbeModifier"), std::string::npos) << e.what();
    }
}

TEST(plugin_loading, descriptor_is_read) {
    auto lib = plugin_library::load(probe());
    EXPECT_EQ(lib->name(), "ServicesProbeModifier");
    EXPECT_EQ(lib->version(), "1.0.0");
    EXPECT_TRUE(lib->params().is_array());
    bool has_common = false;
    for (const auto &p : lib->params()) has_common = has_common || p["name"] == "start";
    EXPECT_TRUE(has_common) << "the SDK declares llm-compressor's common fields";
}

TEST(plugin_loading, host_lists_and_describes) {
    auto r = test::run_command(std::string(LLMC_HOST_EXE) + " --plugins " + LLMC_TEST_PLUGIN_DIR + " --plugins " +
                               LLMC_BROKEN_PLUGIN_DIR + " --list-plugins");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("ServicesProbeModifier"), std::string::npos);
    EXPECT_NE(r.output.find("BROKEN " + broken("abi_major")), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("BROKEN " + broken("no_entry")), std::string::npos) << r.output;
    auto d = test::run_command(std::string(LLMC_HOST_EXE) + " --plugins " + LLMC_TEST_PLUGIN_DIR +
                               " --describe ServicesProbeModifier");
    EXPECT_EQ(d.exit_code, 0) << d.output;
    EXPECT_NE(d.output.find("scheme"), std::string::npos);
    EXPECT_NE(d.output.find("default=\"W8A8\""), std::string::npos) << d.output;
}

TEST(plugin_loading, exception_thrown_through_create_is_reported) {
    plugin_registry reg;
    reg.add(broken("throws_create"));
    auto cfg = model_config::from_json({{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 16},
                                        {"intermediate_size", 32}, {"num_hidden_layers", 1},
                                        {"num_attention_heads", 2}, {"vocab_size", 32},
                                        {"max_position_embeddings", 32}});
    auto model = causal_lm::random(cfg, 1);
    session s(*model);
    try {
        s.add_modifier(reg.get("BrokenThrowsCreateModifier"), nlohmann::ordered_json::object(), "test");
        FAIL();
    } catch (const error &e) {
        EXPECT_NE(std::string(e.what()).find("exception escape"), std::string::npos) << e.what();
    }
}

namespace {
// Runs the kit with --json and returns the status of each check id.
std::map<std::string, std::string> kit(const std::string &plugin, const std::string &extra = "") {
    test::temp_dir dir("kit");
    auto r = test::run_command(std::string(LLMC_CONFORMANCE_EXE) + " " + plugin + " --json " + (dir / "r.json") + " " + extra);
    auto j = nlohmann::json::parse(test::read_file(dir / "r.json"), nullptr, false);
    std::map<std::string, std::string> out;
    if (j.is_discarded()) {
        ADD_FAILURE() << "no JSON report: " << r.output;
        return out;
    }
    for (const auto &c : j["checks"]) out[c["id"]] = c["status"];
    out["__exit"] = std::to_string(r.exit_code);
    return out;
}
} // namespace

TEST(conformance_kit, passes_on_the_probe) {
    auto r = kit(probe());
    EXPECT_EQ(r["__exit"], "0");
    for (const auto &kv : r)
        if (kv.first != "__exit") EXPECT_EQ(kv.second, "success") << kv.first;
    EXPECT_EQ(r.size(), 14u); // 13 checks and the exit code
}

TEST(conformance_kit, names_the_failing_check_of_each_broken_plugin) {
    auto no_entry = kit(broken("no_entry"));
    EXPECT_EQ(no_entry["__exit"], "1");
    EXPECT_EQ(no_entry["entry-symbol"], "failed");
    EXPECT_EQ(no_entry["load-rtld-now-local"], "success");

    auto abi = kit(broken("abi_major"));
    EXPECT_EQ(abi["abi-version"], "failed");

    auto null_name = kit(broken("null_name"));
    EXPECT_EQ(null_name["descriptor-fields"], "failed");

    auto throws = kit(broken("throws_create"));
    EXPECT_EQ(throws["create-destroy-defaults"], "failed");
    EXPECT_EQ(throws["__exit"], "1");

    auto segv = kit(broken("segv_hook"));
    EXPECT_EQ(segv["lifecycle-in-order"], "crashed");
    EXPECT_EQ(segv["create-destroy-defaults"], "success");
    EXPECT_EQ(segv["__exit"], "1");
}
