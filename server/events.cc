#include "server/events.h"

#include "common/log.h"

namespace crisp::server {

bool EventBroker::Subscription::Next(::runtime::v1::ContainerEventResponse* out, absl::Duration wait) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, absl::ToChronoMilliseconds(wait), [&] { return !queue_.empty(); })) return false;
  *out = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

uint64_t EventBroker::Subscription::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

std::shared_ptr<EventBroker::Subscription> EventBroker::Subscribe() {
  auto sub = std::make_shared<Subscription>();
  std::lock_guard<std::mutex> lock(mu_);
  subs_.push_back(sub);
  return sub;
}

bool EventBroker::HasSubscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& w : subs_) {
    if (!w.expired()) return true;
  }
  return false;
}

void EventBroker::Publish(const ::runtime::v1::ContainerEventResponse& event) {
  std::vector<std::shared_ptr<Subscription>> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(subs_, [](const std::weak_ptr<Subscription>& w) { return w.expired(); });
    for (const auto& w : subs_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (const auto& s : live) {
    bool first_drop = false;
    {
      std::lock_guard<std::mutex> lock(s->mu_);
      if (s->queue_.size() >= limit_) {
        s->queue_.pop_front();
        first_drop = s->dropped_++ == 0;
      }
      s->queue_.push_back(event);
    }
    s->cv_.notify_one();
    if (first_drop)
      Logger("server")->warn("an event subscriber is not keeping up: its oldest events are being dropped");
  }
}

}  // namespace crisp::server
