// The doctest main every test executable shares, and a listener that gives every test case (and
// every pass through it for a subcase) the default process context: a case that changes the
// process-wide settings and then fails cannot hand them on to the next one.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "facet/core/context.hpp"

namespace {

struct DefaultContextEachCase : doctest::IReporter {
    explicit DefaultContextEachCase(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData&) override { reset(); }
    void test_case_reenter(const doctest::TestCaseData&) override { reset(); }
    void test_case_end(const doctest::CurrentTestCaseStats&) override { reset(); }
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}

  private:
    static void reset() { facet::process_context() = facet::Context{}; }
};

}  // namespace

REGISTER_LISTENER("default_context_each_case", 1, DefaultContextEachCase);
