// Fuzzes the layer extractor with arbitrary (possibly gzip/zstd-compressed)
// tar streams. Property checked besides memory safety: nothing is created
// or changed next to the extraction directory.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "common/file_util.h"
#include "common/log.h"
#include "images/stream.h"
#include "images/unpack.h"

namespace {

struct Sandbox {
  std::string base, victim;
  Sandbox() {
    // tmpfs when there is one: every input is extracted to disk and removed.
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr                  ? tmp
                                   : crisp::PathExists("/dev/shm") ? "/dev/shm"
                                                                   : "/tmp") +
                       "/crisp-tar-fuzz.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) abort();
    base = tmpl;
    if (!crisp::MkdirAll(base + "/outside").ok()) abort();
    victim = base + "/outside/victim";
    if (!crisp::WriteFileAtomic(victim, "original", 0644, false).ok()) abort();
    (void)crisp::SetLogLevel("off");
  }
  ~Sandbox() { (void)crisp::RemoveAll(base); }
};

Sandbox* sb = nullptr;

}  // namespace

// libFuzzer leaves through exit(): remove the sandbox then.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  sb = new Sandbox();
  std::atexit([] { delete sb; });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string dir = sb->base + "/x";
  if (!crisp::MkdirAll(dir).ok()) abort();
  crisp::images::StringSource src(std::string(reinterpret_cast<const char*>(data), size));
  crisp::images::DecompressingSource dec(&src, nullptr);
  crisp::images::ExtractOptions opts;
  opts.preserve_owner = ::geteuid() == 0;
  (void)crisp::images::ExtractTar(dec, dir, opts);
  // Nothing escaped: the sibling tree is exactly as it was.
  auto names = crisp::ListDir(sb->base);
  auto outside = crisp::ListDir(sb->base + "/outside");
  auto victim = crisp::ReadFile(sb->victim);
  if (!names.ok() || names->size() != 2 || !outside.ok() || outside->size() != 1 || !victim.ok() ||
      *victim != "original")
    __builtin_trap();
  // Directories without write/search permission must not stop the cleanup.
  if (!crisp::RemoveAll(dir).ok()) {
    std::string cmd = "chmod -R u+rwx '" + dir + "' 2>/dev/null; rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0 || crisp::PathExists(dir)) abort();
  }
  return 0;
}
