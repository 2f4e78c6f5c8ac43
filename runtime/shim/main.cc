// crisp-shim: the single-threaded helper that does all process set-up for
// crispd (see ARCHITECTURE.md). No gRPC, no protobuf, no threads.
#include <cstdio>
#include <cstring>

#include "runtime/shim/shim.h"

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "pause") == 0) return crisp::shim::PauseMode();
  if (argc >= 2 && std::strcmp(argv[1], "container") == 0) return crisp::shim::ContainerMode();
  if (argc >= 2 && std::strcmp(argv[1], "exec") == 0) return crisp::shim::ExecMode();
  std::fprintf(stderr,
               "usage: crisp-shim pause|container|exec   (started by crispd with a plan on fd 3)\n"
               "crisp-shim is an internal helper of crispd; it is not meant to be run by hand.\n");
  return 2;
}
