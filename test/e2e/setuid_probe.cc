// A static binary that prints its real and effective uid ("uid=R euid=E").
// The no_new_privs e2e test makes a setuid-root copy of it and runs it as a
// non-root user inside a container: the effective uid says whether the
// setuid bit took effect.
#include <unistd.h>

#include <cstdio>

int main() {
  std::printf("uid=%d euid=%d\n", static_cast<int>(::getuid()), static_cast<int>(::geteuid()));
  return 0;
}
