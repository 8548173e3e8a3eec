// Tests for metrics/classification.hpp: every figure against values computed by hand.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "facet/metrics/classification.hpp"
#include "facet/metrics/classification_json.hpp"

using facet::ClassificationReport;
using facet::ConfusionMatrix;

TEST_CASE("confusion matrix: rows are true classes, columns predictions") {
    // truth  0 0 0 1 1 2 2 2 2 0
    // pred   0 1 0 1 2 2 2 0 2 0   ->  [[3,1,0],[0,1,1],[1,0,3]]
    const std::vector<int> truth = {0, 0, 0, 1, 1, 2, 2, 2, 2, 0};
    const std::vector<int> pred = {0, 1, 0, 1, 2, 2, 2, 0, 2, 0};
    ConfusionMatrix m(3);
    m.add(truth, pred);
    const int expected[3][3] = {{3, 1, 0}, {0, 1, 1}, {1, 0, 3}};
    for (int t = 0; t < 3; ++t)
        for (int p = 0; p < 3; ++p)
            CHECK(m.count(t, p) == static_cast<std::size_t>(expected[t][p]));
    CHECK(m.total() == 10);
    CHECK(m.support(0) == 4);
    CHECK(m.predicted_count(0) == 4);
    CHECK(m.predicted_count(1) == 2);
    CHECK(m.accuracy() == doctest::Approx(0.7));
    CHECK(facet::accuracy(truth, pred) == doctest::Approx(0.7));

    const ClassificationReport r = facet::classification_report(m, {"a", "b", "c"});
    CHECK(r.per_class[0].precision == doctest::Approx(0.75));
    CHECK(r.per_class[1].precision == doctest::Approx(0.5));
    CHECK(r.per_class[2].precision == doctest::Approx(0.75));
    CHECK(r.per_class[0].recall == doctest::Approx(0.75));
    CHECK(r.per_class[1].recall == doctest::Approx(0.5));
    CHECK(r.per_class[1].f1 == doctest::Approx(0.5));
    CHECK(r.per_class[2].support == 4);
    CHECK(r.macro_f1 == doctest::Approx(2.0 / 3.0));
    CHECK(r.weighted_f1 == doctest::Approx(0.7));
}

TEST_CASE("precision and recall differ when errors are one-sided") {
    // truth 0 0 0 1, pred 0 1 1 1: [[1,2],[0,1]]
    const auto r = facet::classification_report({0, 0, 0, 1}, {0, 1, 1, 1}, {"x", "y"});
    CHECK(r.confusion.count(0, 1) == 2);
    CHECK(r.confusion.count(1, 0) == 0);
    CHECK(r.per_class[0].precision == doctest::Approx(1.0));
    CHECK(r.per_class[0].recall == doctest::Approx(1.0 / 3.0));
    CHECK(r.per_class[0].f1 == doctest::Approx(0.5));
    CHECK(r.per_class[1].precision == doctest::Approx(1.0 / 3.0));
    CHECK(r.per_class[1].recall == doctest::Approx(1.0));
    CHECK(r.macro_precision == doctest::Approx(2.0 / 3.0));
    CHECK(r.macro_recall == doctest::Approx(2.0 / 3.0));
    CHECK(r.weighted_f1 == doctest::Approx(0.5));
    CHECK(r.accuracy == doctest::Approx(0.5));
}

TEST_CASE("a class never predicted and never present scores 0, not NaN") {
    const auto r = facet::classification_report({0, 1, 0}, {0, 1, 1}, {"p", "q", "never"});
    CHECK(r.per_class[2].precision == 0.0);
    CHECK(r.per_class[2].recall == 0.0);
    CHECK(r.per_class[2].f1 == 0.0);
    CHECK(r.per_class[2].support == 0);
    // macro averages include the empty class: F1s are 2/3, 2/3, 0
    CHECK(r.macro_f1 == doctest::Approx(4.0 / 9.0));
    const auto empty = facet::classification_report(ConfusionMatrix(2), {"a", "b"});
    CHECK(empty.accuracy == 0.0);
    CHECK(empty.weighted_f1 == 0.0);
}

// The whitespace-separated words of the first table line that starts with `first`.
static std::vector<std::string> tokens_of_row(const std::string& table, const std::string& first) {
    std::istringstream lines(table);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream words(line);
        std::vector<std::string> tokens;
        for (std::string w; words >> w;) tokens.push_back(w);
        if (!tokens.empty() && tokens[0] == first) return tokens;
    }
    return {};
}

TEST_CASE("tables are labelled with class names and hold the counts") {
    const auto r =
        facet::classification_report({0, 0, 1, 2}, {0, 1, 1, 2}, {"angry", "happy", "sad"});
    const std::string cm = r.confusion_table();
    CHECK(cm.find("true\\pred") != std::string::npos);
    CHECK(cm.find("angry") != std::string::npos);
    // The row of "angry": one right, one predicted happy, none sad.
    CHECK(tokens_of_row(cm, "angry") == std::vector<std::string>{"angry", "1", "1", "0"});
    CHECK(tokens_of_row(cm, "sad") == std::vector<std::string>{"sad", "0", "0", "1"});
    const std::string table = r.metrics_table();
    CHECK(table.find("precision") != std::string::npos);
    CHECK(tokens_of_row(table, "happy") ==
          std::vector<std::string>{"happy", "0.5000", "1.0000", "0.6667", "1"});
    CHECK(tokens_of_row(table, "macro") ==
          std::vector<std::string>{"macro", "avg", "0.8333", "0.8333", "0.7778", "4"});
    CHECK(table.find("accuracy") != std::string::npos);
    CHECK(table.find("0.7500") != std::string::npos);
}

TEST_CASE("JSON output carries the same numbers and escapes names") {
    const auto r = facet::classification_report({0, 1, 1}, {0, 1, 0}, {"a\"b", "c\\d\n"});
    const nlohmann::json j = r;
    const std::string text = j.dump(2);
    CHECK(text.find("\"a\\\"b\"") != std::string::npos);  // the names, escaped
    CHECK(text.find("\"c\\\\d\\n\"") != std::string::npos);
    // Parsed back: the same numbers, to the last bit.
    const nlohmann::json back = nlohmann::json::parse(text);
    CHECK(back.at("accuracy").get<double>() == r.accuracy);
    CHECK(back.at("accuracy").get<double>() == 2.0 / 3.0);
    CHECK(back.at("total").get<std::size_t>() == 3);
    CHECK(back.at("classes") == nlohmann::json({"a\"b", "c\\d\n"}));
    CHECK(back.at("confusion") == nlohmann::json({{1, 0}, {1, 1}}));
    CHECK(back.at("per_class").at(1).at("support").get<std::size_t>() == 2);
    CHECK(back.at("per_class").at(1).at("class") == "c\\d\n");
    CHECK(back.at("per_class").at(0).at("recall").get<double>() == r.per_class[0].recall);
    CHECK(back.at("weighted_f1").get<double>() == r.weighted_f1);
    // JSON has no NaN: a non-finite metric is null.
    CHECK(facet::detail::json_number(0.0 / 0.0).is_null());
    CHECK(facet::detail::json_number(1.0 / 0.0).is_null());
}

TEST_CASE("bad input is reported") {
    ConfusionMatrix m(3);
    CHECK_THROWS_WITH_AS(m.add(3, 0), doctest::Contains("true class 3"), facet::Error);
    CHECK_THROWS_WITH_AS(m.add(0, -1), doctest::Contains("predicted class -1"), facet::Error);
    CHECK_THROWS_AS(m.add({0, 1}, {0}), facet::Error);
    CHECK_THROWS_AS(facet::accuracy({0}, {}), facet::Error);
    CHECK_THROWS_WITH_AS(facet::classification_report(m, {"a", "b"}),
                         doctest::Contains("2 class names for 3 classes"), facet::Error);
    CHECK_THROWS_AS(ConfusionMatrix(0), facet::Error);
}
