#pragma once
// Small pieces shared by the benchmarks: latency series and their table.
#include <algorithm>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace crisp::bench {

struct Series {
  std::vector<double> ms;
  void Add(absl::Duration d) { ms.push_back(absl::ToDoubleMilliseconds(d)); }
  // Nearest-rank percentile, p in [0, 1].
  double Pct(double p) {
    if (ms.empty()) return 0;
    std::sort(ms.begin(), ms.end());
    size_t i = static_cast<size_t>(p * (ms.size() - 1) + 0.5);
    return ms[std::min(i, ms.size() - 1)];
  }
};

template <typename F>
absl::Duration Time(F f) {
  absl::Time t = absl::Now();
  f();
  return absl::Now() - t;
}

// Throws (the benchmarks' way out) when a call failed.
inline void Check(const grpc::Status& st, const std::string& what) {
  if (!st.ok()) throw std::runtime_error(absl::StrCat(what, " failed: ", st.error_message()));
}

// "operation  p50  p90  max  n" for every series.
inline void PrintTable(std::map<std::string, Series>& s) {
  std::printf("%-44s %9s %9s %9s %6s\n", "operation", "p50 ms", "p90 ms", "max ms", "n");
  for (auto& [name, series] : s) {
    std::printf("%-44s %9.2f %9.2f %9.2f %6zu\n", name.c_str(), series.Pct(0.5), series.Pct(0.9),
                series.Pct(1.0), series.ms.size());
  }
}

}  // namespace crisp::bench
