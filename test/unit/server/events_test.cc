// EventBroker: every subscriber gets every event in order; one that does not
// read loses its oldest events and never blocks the publisher.
#include "server/events.h"

#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace crisp::server {
namespace {

namespace cri = ::runtime::v1;

cri::ContainerEventResponse Event(int i) {
  cri::ContainerEventResponse ev;
  ev.set_container_id("c" + std::to_string(i));
  ev.set_created_at(i);
  return ev;
}

TEST(EventBroker, EverySubscriberSeesEveryEventInOrder) {
  EventBroker broker;
  EXPECT_FALSE(broker.HasSubscribers());
  auto a = broker.Subscribe();
  auto b = broker.Subscribe();
  EXPECT_TRUE(broker.HasSubscribers());
  for (int i = 0; i < 5; ++i) broker.Publish(Event(i));
  for (auto* s : {&a, &b}) {
    cri::ContainerEventResponse ev;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE((*s)->Next(&ev, absl::Milliseconds(100)));
      EXPECT_EQ(ev.created_at(), i);
    }
    EXPECT_FALSE((*s)->Next(&ev, absl::Milliseconds(10))) << "nothing more";
  }
  a.reset();
  b.reset();
  EXPECT_FALSE(broker.HasSubscribers()) << "a released subscription ends";
}

TEST(EventBroker, ASlowSubscriberLosesItsOldestEventsWithoutBlocking) {
  EventBroker broker(3);
  auto slow = broker.Subscribe();
  auto fast = broker.Subscribe();
  std::vector<int64_t> fast_seen;
  std::thread reader([&] {
    cri::ContainerEventResponse ev;
    while (fast_seen.size() < 10 && fast->Next(&ev, absl::Seconds(5))) fast_seen.push_back(ev.created_at());
  });
  absl::Time start = absl::Now();
  for (int i = 0; i < 10; ++i) {
    broker.Publish(Event(i));
    absl::SleepFor(absl::Milliseconds(2));  // lets the fast reader keep up
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "publishing never waits for a subscriber";
  reader.join();
  EXPECT_EQ(fast_seen.size(), 10u);
  EXPECT_EQ(slow->dropped(), 7u);
  cri::ContainerEventResponse ev;
  for (int want : {7, 8, 9}) {
    ASSERT_TRUE(slow->Next(&ev, absl::Milliseconds(100)));
    EXPECT_EQ(ev.created_at(), want);
  }
}

TEST(EventBroker, NextWaitsForAnEvent) {
  EventBroker broker;
  auto sub = broker.Subscribe();
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(50));
    broker.Publish(Event(42));
  });
  cri::ContainerEventResponse ev;
  EXPECT_TRUE(sub->Next(&ev, absl::Seconds(5)));
  EXPECT_EQ(ev.created_at(), 42);
  later.join();
}

}  // namespace
}  // namespace crisp::server
