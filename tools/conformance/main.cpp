// llmc-conformance PLUGIN [--params JSON] [--json FILE] [--include REGEX] [--list]
// Tells a plugin author whether a modifier plugin is well-behaved. Exit status 1 when any check
// failed or crashed.
#include "checks.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <regex>

int main(int argc, char **argv) {
    CLI::App app{"llmc-conformance: checks that a modifier plugin is well-behaved"};
    llmc::kit::kit_options opt;
    std::string json_path, include = ".*";
    bool list = false;
    int timeout = 120;
    app.add_option("plugin", opt.plugin, "the plugin library (.so)");
    app.add_option("--params", opt.params, "recipe fields (JSON object) used to create instances");
    app.add_option("--json", json_path, "write the report as JSON");
    app.add_option("--include", include, "run only checks whose id matches this regex");
    app.add_option("--timeout", timeout, "seconds per check (default 120)");
    app.add_flag("--list", list, "list the checks and exit");
    CLI11_PARSE(app, argc, argv);

    const auto &all = llmc::kit::checks_all();
    if (list) {
        for (const auto &c : all) std::printf("%-26s %s\n", c.id.c_str(), c.description.c_str());
        return 0;
    }
    if (opt.plugin.empty()) {
        std::fprintf(stderr, "llmc-conformance: give the plugin library to check\n");
        return 2;
    }
    auto params = nlohmann::json::parse(opt.params, nullptr, false);
    if (params.is_discarded() || !params.is_object()) {
        std::fprintf(stderr, "llmc-conformance: --params must be a JSON object\n");
        return 2;
    }
    spdlog::set_level(spdlog::level::warn);
    std::regex inc(include);
    nlohmann::json report = {{"plugin", opt.plugin}, {"checks", nlohmann::json::array()}};
    int failed = 0, passed = 0, other = 0;
    for (const auto &c : all) {
        if (!std::regex_search(c.id, inc)) continue;
        auto r = llmc::kit::child_run([&] { return c.run(opt); }, timeout);
        if (r.status == llmc::kit::check_status::success && !r.stdout_captured.empty()) {
            r.status = llmc::kit::check_status::warning;
            r.details += (r.details.empty() ? "" : "; ") + std::string("the plugin wrote to stdout (use the host's log)");
        }
        const char *st = llmc::kit::check_status_name(r.status);
        std::printf("%-9s %-26s %s\n", st, c.id.c_str(), r.details.c_str());
        nlohmann::json j = {{"id", c.id}, {"description", c.description}, {"status", st}, {"details", r.details}};
        if (r.signal != 0) j["signal"] = r.signal;
        report["checks"].push_back(j);
        if (r.status == llmc::kit::check_status::failed || r.status == llmc::kit::check_status::crashed) ++failed;
        else if (r.status == llmc::kit::check_status::success) ++passed;
        else ++other;
    }
    report["summary"] = {{"passed", passed}, {"failed", failed}, {"other", other}};
    std::printf("%d passed, %d failed\n", passed, failed);
    if (!json_path.empty()) std::ofstream(json_path) << report.dump(2) << "\n";
    return failed == 0 ? 0 : 1;
}
