#include "server/sandbox_store.h"

#include "absl/strings/str_cat.h"

namespace crisp::server {

std::string SandboxName(const ::runtime::v1::PodSandboxMetadata& md) {
  return absl::StrCat(md.name(), "_", md.namespace_(), "_", md.uid(), "_", md.attempt());
}

}  // namespace crisp::server
