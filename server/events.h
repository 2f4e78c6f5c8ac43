#pragma once
// Container and sandbox lifecycle events for GetContainerEvents (kubelet's
// Evented PLEG): a broker that fans each event out to every subscriber. A
// subscriber has a bounded queue: one that does not keep up loses its oldest
// events (counted, logged) and never slows crispd down.
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <vector>

#include "absl/time/time.h"
#include "api/cri/api.pb.h"

namespace crisp::server {

class EventBroker {
 public:
  class Subscription {
   public:
    // Waits up to `wait` for the next event. False if none came.
    bool Next(::runtime::v1::ContainerEventResponse* out, absl::Duration wait);
    uint64_t dropped() const;

   private:
    friend class EventBroker;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<::runtime::v1::ContainerEventResponse> queue_;
    uint64_t dropped_ = 0;
  };

  explicit EventBroker(size_t queue_limit = 1000) : limit_(queue_limit) {}

  // The subscription ends when the returned pointer is released.
  std::shared_ptr<Subscription> Subscribe();
  void Publish(const ::runtime::v1::ContainerEventResponse& event);
  bool HasSubscribers() const;

 private:
  const size_t limit_;
  mutable std::mutex mu_;
  std::vector<std::weak_ptr<Subscription>> subs_;
};

}  // namespace crisp::server
