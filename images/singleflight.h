#pragma once
// Deduplicates concurrent work by key: while a call for a key is running,
// further calls for the same key wait for it and share its result instead
// of doing the work again (two pulls of one layer download it once).
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace crisp::images {

template <typename T>
class Singleflight {
 public:
  // Runs `fn` unless a call with `key` is already in flight, in which case
  // it waits for that call and returns a copy of its result. `*shared` (if
  // given) tells which happened. The key is free again once the running
  // call returns, so a later call runs `fn` again.
  T Do(const std::string& key, const std::function<T()>& fn, bool* shared = nullptr) {
    std::shared_ptr<Call> call;
    bool leader = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = calls_.find(key);
      if (it == calls_.end()) {
        call = std::make_shared<Call>();
        calls_.emplace(key, call);
        leader = true;
      } else {
        call = it->second;
      }
    }
    if (shared != nullptr) *shared = !leader;
    if (!leader) {
      std::unique_lock<std::mutex> l(call->mu);
      call->cv.wait(l, [&] { return call->result.has_value(); });
      return *call->result;
    }
    T result = fn();
    {
      std::lock_guard<std::mutex> l(mu_);
      calls_.erase(key);
    }
    {
      std::lock_guard<std::mutex> l(call->mu);
      call->result = result;
    }
    call->cv.notify_all();
    return result;
  }

  // Number of keys in flight (tests).
  size_t InFlight() const {
    std::lock_guard<std::mutex> l(mu_);
    return calls_.size();
  }

 private:
  struct Call {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<T> result;
  };
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Call>> calls_;
};

}  // namespace crisp::images
