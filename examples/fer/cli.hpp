// fer/cli.hpp — a small command-line parser for the fer subcommands: `--name value`,
// `--name=value`, boolean `--flag`, positional arguments, and a generated --help text.
// Unknown flags and malformed numbers are errors naming the flag.
#pragma once

#include <algorithm>

#include <charconv>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <facet/core/error.hpp>

namespace fer {

class Cli {
  public:
    Cli(std::string command, std::string summary)
        : command_(std::move(command)), summary_(std::move(summary)) {}

    /// Declares a flag that takes a value (shown as `--name VALUE`, with its default in --help).
    Cli& option(const std::string& name, const std::string& value_name, const std::string& help,
                std::optional<std::string> fallback = std::nullopt) {
        specs_.push_back({name, value_name, help, std::move(fallback), false});
        return *this;
    }
    /// Declares a boolean flag.
    Cli& flag(const std::string& name, const std::string& help) {
        specs_.push_back({name, "", help, std::nullopt, true});
        return *this;
    }
    Cli& positional(const std::string& name, const std::string& help) {
        positional_name_ = name, positional_help_ = help;
        return *this;
    }

    /// Parses argv[first..argc). Returns false when --help was asked for (help() is then printed
    /// by the caller). Throws facet::Error on an unknown flag or a missing value.
    bool parse(int argc, char** argv, int first) {
        arguments_.assign(argv + std::min(first, argc), argv + argc);
        for (int i = first; i < argc; ++i) {
            std::string arg = argv[i];
            if (arg == "--help" || arg == "-h") return false;
            if (arg.size() == 2 && arg[0] == '-' && find(arg.substr(1)))
                arg = "-" + arg;  // -o FILE
            if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
                facet::check(!positional_name_.empty(), command_, ": unexpected argument '", arg,
                             "' (see --help)");
                positionals_.push_back(arg);
                continue;
            }
            std::string name = arg.substr(2), value;
            bool has_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1), name = name.substr(0, eq), has_value = true;
            }
            const Spec* spec = find(name);
            facet::check(spec != nullptr, command_, ": unknown option --", name, " (see --help)");
            if (spec->is_flag) {
                facet::check(!has_value, command_, ": --", name, " takes no value");
                values_[name] = "1";
                continue;
            }
            if (!has_value) {
                facet::check(i + 1 < argc, command_, ": --", name, " needs a value (",
                             spec->value_name, ")");
                value = argv[++i];
            }
            values_[name] = value;
            repeated_[name].push_back(value);
        }
        return true;
    }

    bool has(const std::string& name) const { return values_.count(name) != 0; }
    std::string str(const std::string& name) const {
        if (auto it = values_.find(name); it != values_.end()) return it->second;
        const Spec* spec = find(name);
        facet::check(spec != nullptr && spec->fallback.has_value(), command_, ": --", name,
                     " is required");
        return *spec->fallback;
    }
    long long integer(const std::string& name) const {
        const std::string s = str(name);
        long long v = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        facet::check(ec == std::errc() && p == s.data() + s.size(), command_, ": --", name,
                     " expects an integer, got '", s, "'");
        return v;
    }
    double number(const std::string& name) const {
        const std::string s = str(name);
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        facet::check(!s.empty() && end == s.c_str() + s.size(), command_, ": --", name,
                     " expects a number, got '", s, "'");
        return v;
    }
    /// Every value given for a flag that may be repeated (`--model A --model B`), in order; the
    /// default alone when none was given and it has one.
    std::vector<std::string> all(const std::string& name) const {
        if (auto it = repeated_.find(name); it != repeated_.end()) return it->second;
        return {str(name)};
    }
    const std::vector<std::string>& positionals() const { return positionals_; }
    /// The subcommand's name ("train", "predict", ...), for messages.
    const std::string& command() const { return command_; }
    /// The arguments parse() was given, as typed (for a model's provenance).
    const std::vector<std::string>& arguments() const { return arguments_; }

    std::string help() const {
        std::string h = "usage: fer " + command_ + " [options]" +
                        (positional_name_.empty() ? "" : " " + positional_name_ + "...") + "\n\n" +
                        summary_ + "\n\n";
        if (!positional_name_.empty())
            h += "  " + positional_name_ + "  " + positional_help_ + "\n";
        for (const auto& s : specs_) {
            std::string left = (s.name.size() == 1 ? "  -" : "  --") + s.name +
                               (s.is_flag ? "" : " " + s.value_name);
            if (left.size() < 28) left.resize(28, ' ');
            h += left + " " + s.help + (s.fallback ? " (default: " + *s.fallback + ")" : "") + "\n";
        }
        return h;
    }

  private:
    struct Spec {
        std::string name, value_name, help;
        std::optional<std::string> fallback;
        bool is_flag;
    };
    const Spec* find(const std::string& name) const {
        for (const auto& s : specs_)
            if (s.name == name) return &s;
        return nullptr;
    }
    std::string command_, summary_, positional_name_, positional_help_;
    std::vector<Spec> specs_;
    std::map<std::string, std::string> values_;
    std::map<std::string, std::vector<std::string>> repeated_;
    std::vector<std::string> positionals_;
    std::vector<std::string> arguments_;
};

}  // namespace fer
