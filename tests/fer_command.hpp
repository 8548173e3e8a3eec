// tests/fer_command.hpp — runs one of fer's subcommands in the test's own process, as
// `fer <command> ARGS...` would, with its standard output captured.
#pragma once

#include <doctest/doctest.h>

#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "fer/cli.hpp"

namespace facet_test {

/// What a subcommand returned and printed.
struct CommandRun {
    int status = -1;
    std::string output;
};

/// Parses `args` with `cli` (the test fails when they do not parse) and runs `body` on them. An
/// exception from `body` passes through, with std::cout restored.
inline CommandRun run_fer_command(fer::Cli cli, int (*body)(const fer::Cli&),
                                  std::vector<std::string> args) {
    std::vector<char*> argv;
    args.insert(args.begin(), {"fer", "cmd"});
    for (auto& a : args) argv.push_back(a.data());
    REQUIRE(cli.parse(static_cast<int>(argv.size()), argv.data(), 2));
    std::ostringstream captured;
    auto* old = std::cout.rdbuf(captured.rdbuf());
    CommandRun run;
    try {
        run.status = body(cli);
    } catch (...) {
        std::cout.rdbuf(old);
        throw;
    }
    std::cout.rdbuf(old);
    run.output = captured.str();
    return run;
}

}  // namespace facet_test
