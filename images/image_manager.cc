#include "images/image_manager.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "images/digest.h"
#include "images/stream.h"
#include "images/unpack.h"
#include "nlohmann/json.hpp"

namespace crisp::images {
namespace {

using nlohmann::json;

constexpr size_t kPipeBytes = 8 << 20;

std::shared_ptr<spdlog::logger> Log() { return Logger("images"); }

std::string Short(absl::string_view digest) { return std::string(DigestHex(digest).substr(0, 12)); }

// Reads `src` to its end, discarding the bytes (their hashes are taken
// upstream).
void DrainRaw(ByteSource& src) {
  std::vector<char> buf(256 * 1024);
  while (true) {
    auto n = src.Read(buf.data(), buf.size());
    if (!n.ok() || *n == 0) return;
  }
}

std::string MiB(uint64_t b) { return absl::StrCat(b / (1 << 20), ".", (b % (1 << 20)) * 10 / (1 << 20), " MiB"); }

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Marks `dir` as the top of unrelated directory hierarchies (chattr +T):
// ext2/3/4's Orlov allocator then spreads its subdirectories, each an
// unpacked layer, over block groups instead of packing them into the group
// of `dir`. Without it every layer's inodes are allocated in the same few
// groups, and on ext4 without a journal each new inode is chosen by
// scanning past every inode of that group freed in the last minute(s)
// (fs/ext4/ialloc.c recently_deleted()): a pull right after an image was
// removed then spends most of its time in inode allocation (measured:
// creating 1300 files took 400-600 ms instead of 30-60). Only a hint:
// filesystems without the flag ignore or refuse it.
void MarkTopDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int flags = 0;
  if (!fd || ::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0) return;
  if ((flags & FS_TOPDIR_FL) != 0) return;
  flags |= FS_TOPDIR_FL;
  if (::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags) != 0)
    Log()->debug("{}: cannot set the top-directory hint: {}", dir, std::strerror(errno));
}

void Erase(std::vector<std::string>& v, const std::string& x) { v.erase(std::remove(v.begin(), v.end(), x), v.end()); }

// The repository part of "name:tag" or "name@digest".
std::string RefName(const std::string& r) {
  size_t at = r.find('@');
  if (at != std::string::npos) return r.substr(0, at);
  size_t slash = r.rfind('/');
  size_t colon = r.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) return r.substr(0, colon);
  return r;
}

}  // namespace

// Bytes and layers of one pull, for the periodic progress line.
class ImageManager::Progress {
 public:
  void Add(uint64_t n) { bytes_ += n; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::atomic<uint64_t> bytes_{0};
};

ImageManager::ImageManager(ImageOptions opts, std::unique_ptr<RegistryTransport> transport)
    : opts_(std::move(opts)),
      dir_(JoinPath(opts_.root, "images")),
      transport_(std::move(transport)),
      content_(dir_),
      client_(transport_.get(), opts_.hosts, opts_.stall_timeout) {
  for (const std::string& p : opts_.pinned_images) {
    auto ref = ParseReference(p);
    if (!ref.ok()) {
      Log()->warn("ignoring pinned image \"{}\": {}", p, ref.status().ToString());
      continue;
    }
    pinned_refs_.insert(ref->digest.empty() ? ref->TagRef() : ref->DigestRef(ref->digest));
  }
}

ImageManager::~ImageManager() {
  {
    std::lock_guard<std::mutex> l(trash_mu_);
    trash_stop_ = true;  // what is still queued is left for the next Init
  }
  trash_cv_.notify_all();
  if (trash_thread_.joinable()) trash_thread_.join();
  if (!sync_thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(sync_mu_);
    sync_stop_ = true;
  }
  sync_cv_.notify_all();
  sync_thread_.join();
}

void ImageManager::RequestSync() {
  {
    std::lock_guard<std::mutex> l(sync_mu_);
    sync_wanted_ = true;
  }
  sync_cv_.notify_all();
}

void ImageManager::SyncLoop() {
  std::unique_lock<std::mutex> l(sync_mu_);
  while (true) {
    sync_cv_.wait(l, [&] { return sync_wanted_ || sync_stop_; });
    // Wait for the commits to stop (a pull commits one layer after the
    // other, and kubelet pulls images one after the other): a syncfs in the
    // middle would write back files still being unpacked, competing with
    // the pull for the CPU and the disk, and again at the next commit.
    const auto first = std::chrono::steady_clock::now();
    const auto latest = first + absl::ToChronoNanoseconds(opts_.sync_max_delay);
    while (!sync_stop_) {
      sync_wanted_ = false;
      auto until = std::min(std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(opts_.sync_quiet), latest);
      if (!sync_cv_.wait_until(l, until, [&] { return sync_wanted_ || sync_stop_; })) break;  // quiet
      if (std::chrono::steady_clock::now() >= latest) break;
    }
    uint64_t target;
    {
      std::lock_guard<std::mutex> c(commit_mu_);
      target = commit_seq_;
    }
    sync_wanted_ = false;
    if (target > synced_seq_) {
      l.unlock();
      // syncfs writes back and waits for every dirty page and inode of the
      // filesystem, so every layer numbered <= target (already renamed into
      // place) is on stable storage once it returns.
      absl::Time t0 = absl::Now();
      absl::Status s = content_.Sync();
      if (s.ok()) {
        json j = {{"boot_id", boot_id_}, {"seq", target}};
        s = WriteFileAtomic(dir_ + "/layers.synced", j.dump(), 0600);
      }
      l.lock();
      if (s.ok()) {
        synced_seq_ = target;
        Log()->debug("layers up to #{} durable in {}", target, absl::FormatDuration(absl::Now() - t0));
      } else {
        // Layers stay "not durable": a crash now costs a re-pull, nothing
        // worse. The next commit (or shutdown) tries again.
        Log()->error("making unpacked layers durable: {}", s.ToString());
      }
    }
    if (sync_stop_ && !sync_wanted_) return;
  }
}

std::string ImageManager::LayerDir(const std::string& chain_id) const {
  return absl::StrCat(dir_, "/layers/", DigestHex(chain_id));
}

// ---------------------------------------------------------------------------
// Metadata

Image ImageManager::ToImage(const Record& r) const {
  Image img;
  img.id = r.id;
  img.repo_tags = r.repo_tags;
  img.repo_digests = r.repo_digests;
  img.config_json = r.config_json;
  img.uid = r.user.uid;
  img.username = r.user.username;
  img.pinned = r.pinned;
  for (const std::string& t : r.repo_tags) img.pinned = img.pinned || pinned_refs_.count(t) > 0;
  for (const std::string& d : r.repo_digests) img.pinned = img.pinned || pinned_refs_.count(d) > 0;
  for (const std::string& c : r.chain_ids) {
    img.layer_dirs.push_back(LayerDir(c) + "/diff");
    auto it = layers_.find(c);
    if (it != layers_.end()) img.size += it->second.disk_bytes;
  }
  return img;
}

void ImageManager::RebuildRefsLocked() {
  refs_.clear();
  for (const auto& [id, r] : records_) {
    for (const std::string& t : r.repo_tags) refs_[t] = id;
    for (const std::string& d : r.repo_digests) refs_[d] = id;
  }
}

std::string ImageManager::SerializeLocked() const {
  json images = json::array();
  for (const auto& [id, r] : records_) {
    images.push_back({{"id", r.id},
                      {"repo_tags", r.repo_tags},
                      {"repo_digests", r.repo_digests},
                      {"chain_ids", r.chain_ids},
                      {"blobs", r.blobs},
                      {"pinned", r.pinned}});
  }
  return json{{"version", 1}, {"images", images}}.dump(1);
}

absl::Status ImageManager::Persist(const std::string& data) {
  // write_mu_ is held: persisted_ is ours.
  if (data == persisted_) return absl::OkStatus();  // a re-pull that changed nothing
  RETURN_IF_ERROR(Annotate(WriteFileAtomic(dir_ + "/images.json", data, 0600), "saving the image store"));
  persisted_ = data;
  return absl::OkStatus();
}

std::optional<std::string> ImageManager::ResolveLocked(const std::string& s) const {
  absl::string_view hex = s;
  bool prefixed = absl::ConsumePrefix(&hex, "sha256:");
  if (IsHex(hex)) {
    std::string id = absl::StrCat("sha256:", hex);
    if (hex.size() == 64) {
      if (records_.count(id)) return id;
      if (prefixed) return std::nullopt;
    }
  } else if (prefixed) {
    return std::nullopt;
  }
  if (!prefixed) {
    auto ref = ParseReference(s);
    if (ref.ok()) {
      std::string key = ref->digest.empty() ? ref->TagRef() : ref->DigestRef(ref->digest);
      auto it = refs_.find(key);
      if (it != refs_.end()) return it->second;
    }
  }
  if (IsHex(hex) && hex.size() < 64) {
    // A unique ID prefix, as docker and crictl accept.
    std::string want = absl::StrCat("sha256:", hex);
    auto it = records_.lower_bound(want);
    if (it == records_.end() || !absl::StartsWith(it->first, want)) return std::nullopt;
    auto next = std::next(it);
    if (next != records_.end() && absl::StartsWith(next->first, want)) return std::nullopt;  // ambiguous
    return it->first;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Init

absl::Status ImageManager::Init() {
  RETURN_IF_ERROR(MkdirAll(dir_, 0700));
  RETURN_IF_ERROR(MkdirAll(dir_ + "/layers", 0700));
  MarkTopDir(dir_ + "/layers");
  RETURN_IF_ERROR(content_.Init());
  boot_id_ = opts_.boot_id;
  if (boot_id_.empty()) {
    ASSIGN_OR_RETURN(boot_id_, ReadFile("/proc/sys/kernel/random/boot_id"));
    absl::StripAsciiWhitespace(&boot_id_);
  }
  // How far the last sync got, and in which boot.
  std::string synced_boot;
  uint64_t synced_seq = 0;
  if (auto st = ReadFile(dir_ + "/layers.synced"); st.ok()) {
    json j = json::parse(*st, nullptr, false);
    if (j.is_object()) {
      synced_boot = j.value("boot_id", "");
      synced_seq = j.value("seq", uint64_t{0});
    }
  }
  uint64_t max_seq = 0;  // highest layer number of this boot
  bool unsynced = false;  // layers of this boot not known durable

  std::lock_guard<std::mutex> w(write_mu_);
  std::lock_guard<std::mutex> l(mu_);
  records_.clear();
  layers_.clear();
  blob_sizes_.clear();

  // Unpacked layers: a directory without meta.json never finished.
  ASSIGN_OR_RETURN(std::vector<std::string> layer_names, ListDir(dir_ + "/layers"));
  for (const std::string& name : layer_names) {
    std::string path = absl::StrCat(dir_, "/layers/", name);
    if (name.size() != 64 || !IsHex(name)) {
      if (absl::Status s = RemoveAll(path); !s.ok()) Log()->warn("removing {}: {}", path, s.ToString());
      continue;
    }
    auto meta = ReadFile(path + "/meta.json");
    json j = meta.ok() ? json::parse(*meta, nullptr, false) : json();
    if (!meta.ok() || !j.is_object() || !PathExists(path + "/diff")) {
      Log()->warn("removing incomplete layer {}", path);
      if (absl::Status s = RemoveAll(path); !s.ok()) Log()->warn("removing {}: {}", path, s.ToString());
      continue;
    }
    // A layer without a boot ID was made durable before it was recorded.
    std::string boot = j.value("boot_id", "");
    uint64_t seq = j.value("seq", uint64_t{0});
    bool durable = boot.empty() || (boot == synced_boot && seq <= synced_seq);
    if (boot == boot_id_) {
      max_seq = std::max(max_seq, seq);
      unsynced = unsynced || !durable;
    } else if (!durable) {
      Log()->warn("removing layer {}: it was not on stable storage yet when the machine went down", path);
      if (absl::Status s = RemoveAll(path); !s.ok()) Log()->warn("removing {}: {}", path, s.ToString());
      continue;
    }
    LayerInfo li;
    li.chain_id = absl::StrCat("sha256:", name);
    li.diff_id = j.value("diff_id", "");
    li.disk_bytes = j.value("disk_bytes", uint64_t{0});
    li.inodes = j.value("inodes", uint64_t{0});
    layers_[li.chain_id] = li;
  }
  ASSIGN_OR_RETURN(std::vector<std::string> blob_names, ListDir(content_.blobs_dir()));
  for (const std::string& name : blob_names) {
    std::string digest = absl::StrCat("sha256:", name);
    auto size = content_.Size(digest);
    if (ValidateDigest(digest).ok() && size.ok()) blob_sizes_[digest] = *size;
  }

  bool dirty = false;
  auto data = ReadFile(dir_ + "/images.json");
  if (data.ok()) {
    json j = json::parse(*data, nullptr, false);
    if (!j.is_object() || !j.contains("images") || !j["images"].is_array()) {
      Log()->error("{}/images.json is malformed; starting with no images", dir_);
      dirty = true;
    } else {
      for (const json& e : j["images"]) {
        try {
          Record r;
          r.id = e.at("id").get<std::string>();
          r.repo_tags = e.value("repo_tags", std::vector<std::string>{});
          r.repo_digests = e.value("repo_digests", std::vector<std::string>{});
          r.chain_ids = e.value("chain_ids", std::vector<std::string>{});
          auto blobs = e.value("blobs", std::vector<std::string>{});
          r.blobs.insert(blobs.begin(), blobs.end());
          r.pinned = e.value("pinned", false);
          auto cfg = content_.Read(r.id, kMaxConfigBytes);
          if (!cfg.ok()) {
            Log()->warn("dropping image {}: its config: {}", r.id, cfg.status().ToString());
            dirty = true;
            continue;
          }
          r.config_json = std::move(*cfg);
          auto parsed = ParseImageConfig(r.config_json);
          if (parsed.ok()) r.user = ParseImageUser(parsed->user);
          bool complete = true;
          for (const std::string& c : r.chain_ids) complete = complete && layers_.count(c) > 0;
          if (!complete) {
            Log()->warn("dropping image {}: some of its layers are missing; pull it again", r.id);
            dirty = true;
            continue;
          }
          records_[r.id] = std::move(r);
        } catch (const json::exception& ex) {
          Log()->warn("skipping a malformed image record: {}", ex.what());
          dirty = true;
        }
      }
    }
  } else if (!absl::IsNotFound(data.status())) {
    return data.status();
  }
  RebuildRefsLocked();

  // Anything no image references is left over from a crash or an
  // interrupted removal.
  std::set<std::string> blobs_used, chains_used;
  for (const auto& [id, r] : records_) {
    blobs_used.insert(r.blobs.begin(), r.blobs.end());
    chains_used.insert(r.chain_ids.begin(), r.chain_ids.end());
  }
  std::set<std::string> orphan_blobs;
  std::vector<std::string> orphan_chains, trash;
  for (const auto& [d, size] : blob_sizes_)
    if (!blobs_used.count(d)) orphan_blobs.insert(d);
  for (const auto& [c, li] : layers_)
    if (!chains_used.count(c)) orphan_chains.push_back(c);
  if (!orphan_blobs.empty() || !orphan_chains.empty())
    Log()->info("removing {} unreferenced blobs and {} unreferenced layers", orphan_blobs.size(),
                orphan_chains.size());
  CollectLocked(orphan_blobs, orphan_chains, &trash);
  // At start, before any request: deleted here, so that the store is clean
  // when Init returns.
  for (const std::string& t : trash)
    if (absl::Status s = RemoveAll(t); !s.ok()) Log()->warn("gc: removing {}: {}", t, s.ToString());
  persisted_ = data.ok() ? *data : "";
  if (dirty) RETURN_IF_ERROR(Persist(SerializeLocked()));
  {
    std::lock_guard<std::mutex> c(commit_mu_);
    commit_seq_ = std::max(commit_seq_, max_seq);
  }
  {
    std::lock_guard<std::mutex> s(sync_mu_);
    if (synced_boot == boot_id_) synced_seq_ = std::max(synced_seq_, synced_seq);
  }
  if (!sync_thread_.joinable()) sync_thread_ = std::thread([this] { SyncLoop(); });
  if (unsynced) RequestSync();  // crispd restarted before its last sync
  Log()->info("image store {}: {} images, {} layers, {} blobs", dir_, records_.size(), layers_.size(),
              blob_sizes_.size());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Queries

std::vector<Image> ImageManager::List() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<Image> out;
  out.reserve(records_.size());
  for (const auto& [id, r] : records_) out.push_back(ToImage(r));
  return out;
}

std::optional<Image> ImageManager::Get(const std::string& ref_or_id) const {
  std::lock_guard<std::mutex> l(mu_);
  std::optional<std::string> id = ResolveLocked(ref_or_id);
  if (!id) return std::nullopt;
  return ToImage(records_.at(*id));
}

ImageManager::FsUsage ImageManager::Usage() const {
  std::lock_guard<std::mutex> l(mu_);
  FsUsage u;
  u.mountpoint = dir_;
  for (const auto& [d, size] : blob_sizes_) {
    u.used_bytes += size;
    u.inodes_used++;
  }
  for (const auto& [c, li] : layers_) {
    u.used_bytes += li.disk_bytes;
    u.inodes_used += li.inodes;
  }
  return u;
}

absl::StatusOr<std::vector<std::string>> ImageManager::Endpoints(const std::string& ref_str) const {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_str));
  std::vector<std::string> out;
  for (const Endpoint& ep : client_.Endpoints(ref)) out.push_back(ep.base_url);
  return out;
}

// ---------------------------------------------------------------------------
// Garbage collection

void ImageManager::Lease(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> l(mu_);
  for (const std::string& k : keys) leases_[k]++;
}

void ImageManager::Unlease(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> l(mu_);
  for (const std::string& k : keys)
    if (auto it = leases_.find(k); it != leases_.end() && --it->second <= 0) leases_.erase(it);
}

void ImageManager::CollectLocked(const std::set<std::string>& blobs, const std::vector<std::string>& chain_ids,
                                 std::vector<std::string>* trash) {
  std::set<std::string> blobs_used, chains_used;
  for (const auto& [id, r] : records_) {
    blobs_used.insert(r.blobs.begin(), r.blobs.end());
    chains_used.insert(r.chain_ids.begin(), r.chain_ids.end());
  }
  for (const std::string& d : blobs) {
    if (blobs_used.count(d) || leases_.count(d)) continue;
    if (absl::Status s = content_.Delete(d); !s.ok()) {
      Log()->warn("gc: {}", s.ToString());
      continue;
    }
    blob_sizes_.erase(d);
  }
  for (const std::string& c : chain_ids) {
    if (chains_used.count(c) || leases_.count(c)) continue;
    // Renamed away now (cheap, under the lock) so that no pull can find it,
    // deleted later without the lock.
    std::string path = LayerDir(c);
    std::string dead = absl::StrCat(dir_, "/layers/.trash-", DigestHex(c), "-", RandomHex(4));
    if (::rename(path.c_str(), dead.c_str()) != 0 && errno != ENOENT) {
      Log()->warn("gc: moving {} away: {}", path, ErrnoStatus(errno, "rename").ToString());
      continue;
    }
    layers_.erase(c);
    trash->push_back(dead);
  }
}

void ImageManager::EmptyTrash(const std::vector<std::string>& trash) {
  if (trash.empty()) return;
  {
    std::lock_guard<std::mutex> l(trash_mu_);
    trash_.insert(trash_.end(), trash.begin(), trash.end());
    if (!trash_thread_.joinable()) trash_thread_ = std::thread([this] { TrashLoop(); });
  }
  trash_cv_.notify_all();
}

void ImageManager::TrashLoop() {
  // Deleting a layer is garbage collection: it should take the CPU and the
  // disk when pulls and containers do not need them (a big layer costs tens
  // of milliseconds of kernel time to delete), so this thread runs at the
  // lowest nice and best-effort I/O priority. Not SCHED_IDLE: on a busy node
  // the disk space must still come back.
  pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19) != 0)
    Log()->debug("gc thread: setpriority: {}", std::strerror(errno));
  constexpr int kIoprioWhoProcess = 1, kIoprioClassBe = 2, kIoprioClassShift = 13;
  if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid, (kIoprioClassBe << kIoprioClassShift) | 7) != 0)
    Log()->debug("gc thread: ioprio_set: {}", std::strerror(errno));
  std::unique_lock<std::mutex> l(trash_mu_);
  for (;;) {
    trash_cv_.wait(l, [&] { return trash_stop_ || !trash_.empty(); });
    if (trash_stop_) return;
    std::string dir = std::move(trash_.front());
    trash_.pop_front();
    trash_busy_ = true;
    l.unlock();
    if (absl::Status s = RemoveAll(dir); !s.ok()) Log()->warn("gc: removing {}: {}", dir, s.ToString());
    l.lock();
    trash_busy_ = false;
    trash_cv_.notify_all();
  }
}

void ImageManager::WaitForTrash() {
  std::unique_lock<std::mutex> l(trash_mu_);
  trash_cv_.wait(l, [&] { return trash_stop_ || (trash_.empty() && !trash_busy_); });
}

absl::Status ImageManager::Remove(const std::string& ref_or_id,
                                  const std::function<bool(const std::string& image_id)>& in_use) {
  std::vector<std::string> trash;
  {
    std::lock_guard<std::mutex> w(write_mu_);
    std::map<std::string, Record> before;
    std::string data;
    Record removed;
    bool deleted = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      std::optional<std::string> id = ResolveLocked(ref_or_id);
      if (!id) return absl::NotFoundError(absl::StrCat("image \"", ref_or_id, "\" not found"));
      Record r = records_.at(*id);
      // Was it named by a reference (untag) or by its ID (delete)?
      std::string key;
      if (auto ref = ParseReference(ref_or_id); ref.ok())
        key = ref->digest.empty() ? ref->TagRef() : ref->DigestRef(ref->digest);
      bool by_ref = !key.empty() && refs_.count(key) && refs_.at(key) == *id;
      if (by_ref) {
        std::string name = RefName(key);
        if (Contains(r.repo_tags, key)) {
          Erase(r.repo_tags, key);
          bool other_tag = std::any_of(r.repo_tags.begin(), r.repo_tags.end(),
                                       [&](const std::string& t) { return RefName(t) == name; });
          if (!other_tag)
            std::erase_if(r.repo_digests, [&](const std::string& d) { return RefName(d) == name; });
        } else {
          Erase(r.repo_digests, key);
          std::erase_if(r.repo_tags, [&](const std::string& t) { return RefName(t) == name; });
        }
      }
      deleted = !by_ref || (r.repo_tags.empty() && r.repo_digests.empty());
      if (deleted && in_use && in_use(*id))
        return absl::FailedPreconditionError(absl::StrCat("image ", *id, " is in use by a container"));
      before = records_;
      if (deleted) {
        removed = records_.at(*id);
        records_.erase(*id);
      } else {
        records_[*id] = std::move(r);
      }
      RebuildRefsLocked();
      data = SerializeLocked();
    }
    if (absl::Status s = Persist(data); !s.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      records_ = std::move(before);
      RebuildRefsLocked();
      return s;
    }
    if (deleted) {
      std::lock_guard<std::mutex> l(mu_);
      CollectLocked(removed.blobs, removed.chain_ids, &trash);
      Log()->info("removed image {} ({})", removed.id, ref_or_id);
    } else {
      Log()->info("untagged {}", ref_or_id);
    }
  }
  EmptyTrash(trash);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Pull

absl::StatusOr<std::string> ImageManager::FetchManifest(RegistryClient::Session& s, const std::string& digest,
                                                        int64_t expect_size, std::string* media_type) {
  media_type->clear();
  if (content_.Has(digest)) {
    auto local = content_.Read(digest, kMaxManifestBytes);
    if (local.ok()) return local;
    Log()->warn("stored manifest {}: {}; fetching it again", digest, local.status().ToString());
  }
  ASSIGN_OR_RETURN(RegistryClient::FetchedManifest m, s.GetManifest(digest));
  if (expect_size >= 0 && m.body.size() != static_cast<uint64_t>(expect_size))
    return absl::DataLossError(absl::StrCat("manifest ", digest, ": size mismatch: got ", m.body.size(),
                                            " bytes, the index declares ", expect_size));
  *media_type = m.media_type;
  return std::move(m.body);
}

absl::StatusOr<std::string> ImageManager::FetchSmallBlob(RegistryClient::Session& s, const Descriptor& d,
                                                         int64_t max) {
  if (d.size > max)
    return absl::InvalidArgumentError(absl::StrCat("blob ", d.digest, " is ", d.size, " bytes, more than ", max));
  return blob_flight_.Do(d.digest, [&]() -> absl::StatusOr<std::string> {
    if (content_.Has(d.digest)) {
      auto local = content_.Read(d.digest, static_cast<size_t>(max));
      if (local.ok()) return local;
      Log()->warn("stored blob {}: {}; fetching it again", d.digest, local.status().ToString());
    }
    std::string data;
    ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> w, content_.Writer(d.digest, d.size));
    RETURN_IF_ERROR(s.GetBlob(
        d,
        [&](absl::string_view chunk) -> absl::Status {
          RETURN_IF_ERROR(w->Write(chunk));
          data.append(chunk.data(), chunk.size());
          return absl::OkStatus();
        },
        nullptr));
    RETURN_IF_ERROR(w->Commit(/*durable=*/false));  // synced with the rest before the image is recorded
    std::lock_guard<std::mutex> l(mu_);
    blob_sizes_[d.digest] = data.size();
    return data;
  });
}

absl::StatusOr<ImageManager::LayerInfo> ImageManager::EnsureLayer(RegistryClient::Session& s, const Descriptor& d,
                                                                  const std::string& diff_id,
                                                                  const std::string& chain_id, Progress* progress,
                                                                  const std::atomic<bool>* cancel) {
  for (int attempt = 0;; ++attempt) {
    bool shared = false;
    absl::StatusOr<LayerInfo> r = layer_flight_.Do(
        chain_id,
        [&]() -> absl::StatusOr<LayerInfo> {
          {
            std::lock_guard<std::mutex> l(mu_);
            auto it = layers_.find(chain_id);
            if (it != layers_.end()) return it->second;
          }
          return UnpackLayer(s, d, diff_id, chain_id, progress, cancel);
        },
        &shared);
    // A pull we waited for may have given up for its own reasons (another
    // of its layers failed); that is no verdict on this layer, so try
    // ourselves.
    bool ours_cancelled = cancel != nullptr && cancel->load();
    if (shared && !r.ok() && absl::IsCancelled(r.status()) && !ours_cancelled && attempt < 3) continue;
    return r;
  }
}

absl::StatusOr<ImageManager::LayerInfo> ImageManager::UnpackLayer(RegistryClient::Session& s, const Descriptor& d,
                                                                  const std::string& diff_id,
                                                                  const std::string& chain_id, Progress* progress,
                                                                  const std::atomic<bool>* cancel) {
  const std::string what = absl::StrCat("layer ", d.digest);
  const std::string final_dir = LayerDir(chain_id);
  const std::string tmp = absl::StrCat(dir_, "/layers/.tmp-", DigestHex(chain_id), "-", RandomHex(4));
  RETURN_IF_ERROR(MkdirAll(tmp + "/diff", 0755));
  absl::Cleanup remove_tmp = [&] {
    if (absl::Status rs = RemoveAll(tmp); !rs.ok()) Log()->warn("removing {}: {}", tmp, rs.ToString());
  };
  absl::Time start = absl::Now();
  Sha256 diff_hash;
  ExtractOptions xo;
  xo.preserve_owner = opts_.preserve_owner;
  absl::StatusOr<ExtractStats> stats;
  std::unique_ptr<BlobWriter> writer;

  if (content_.Has(d.digest)) {
    // The blob is here (its unpacked layer was collected, or another chain
    // shares it): unpack from disk, verifying it again on the way.
    UniqueFd fd(::open(content_.BlobPath(d.digest).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", what));
    Sha256 blob_hash;
    FdSource src(fd.get(), &blob_hash);
    DecompressingSource ds(&src, &diff_hash);
    stats = ExtractTar(ds, tmp + "/diff", xo);
    if (stats.ok()) {
      if (absl::Status ds_status = ds.Drain(); !ds_status.ok()) stats = ds_status;
    }
    DrainRaw(src);
    if (std::string got = blob_hash.Finish(); got != d.digest || blob_hash.bytes() != static_cast<uint64_t>(d.size)) {
      Log()->error("stored {} is corrupt (hashes to {}); deleting it", what, got);
      (void)content_.Delete(d.digest);
      return absl::DataLossError(absl::StrCat(what, ": stored blob is corrupt (content hashes to ", got,
                                              "); it was deleted, pull again"));
    }
    RETURN_IF_ERROR(Annotate(stats.status(), absl::StrCat("unpacking ", what)));
  } else {
    ASSIGN_OR_RETURN(writer, content_.Writer(d.digest, d.size));
    BoundedPipe pipe(kPipeBytes);
    absl::Status net;
    std::thread fetch([&] {
      net = s.GetBlob(
          d,
          [&](absl::string_view chunk) -> absl::Status {
            RETURN_IF_ERROR(writer->Write(chunk));
            progress->Add(chunk.size());
            return pipe.Write(chunk);
          },
          cancel);
      pipe.CloseWrite(net);
    });
    DecompressingSource ds(&pipe, &diff_hash);
    stats = ExtractTar(ds, tmp + "/diff", xo);
    if (stats.ok()) {
      if (absl::Status ds_status = ds.Drain(); !ds_status.ok()) stats = ds_status;
    }
    // Whatever the unpacker thought, let the download finish: a corrupt
    // blob usually shows up as a bad gzip or tar stream first, but the
    // truthful error is the digest mismatch, known only at the end.
    if (!stats.ok()) DrainRaw(pipe);
    fetch.join();
    RETURN_IF_ERROR(net);
    RETURN_IF_ERROR(writer->Verify());
    RETURN_IF_ERROR(Annotate(stats.status(), absl::StrCat("unpacking ", what)));
  }
  if (std::string got = diff_hash.Finish(); got != diff_id)
    return absl::DataLossError(absl::StrCat(what, ": uncompressed content hashes to ", got,
                                            " but the image config says diff ID ", diff_id));

  LayerInfo li;
  li.chain_id = chain_id;
  li.diff_id = diff_id;
  li.disk_bytes = stats->disk_bytes;
  li.inodes = stats->inodes + 1;  // + the diff dir
  json meta = {{"chain_id", chain_id},
               {"diff_id", diff_id},
               {"blob", d.digest},
               {"disk_bytes", li.disk_bytes},
               {"inodes", li.inodes},
               {"content_bytes", stats->content_bytes},
               {"entries", stats->entries},
               {"boot_id", boot_id_}};
  if (writer) RETURN_IF_ERROR(writer->Commit(/*durable=*/false));
  uint64_t blob_size = static_cast<uint64_t>(d.size);
  {
    // Not durable yet: the sync thread makes it so (see image_manager.h).
    std::lock_guard<std::mutex> c(commit_mu_);
    meta["seq"] = commit_seq_ + 1;
    RETURN_IF_ERROR(WriteFileAtomic(tmp + "/meta.json", meta.dump(), 0600, /*durable=*/false));
    if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
      // Someone (another crispd on the same root?) finished it first: theirs
      // is as good as ours.
      if (errno != EEXIST && errno != ENOTEMPTY) return ErrnoStatus(errno, absl::StrCat("committing ", what));
    } else {
      std::move(remove_tmp).Cancel();
      ++commit_seq_;
    }
  }
  RequestSync();
  {
    std::lock_guard<std::mutex> l(mu_);
    layers_[chain_id] = li;
    blob_sizes_[d.digest] = blob_size;
  }
  Log()->debug("{} ({}) unpacked in {}: {} entries, {}", what, Short(chain_id),
               absl::FormatDuration(absl::Now() - start), stats->entries, MiB(li.disk_bytes));
  return li;
}

absl::Status ImageManager::UnpackLayers(RegistryClient::Session& s, const std::string& what, const Manifest& m,
                                        const std::vector<std::string>& diff_ids,
                                        const std::vector<std::string>& chain_ids, bool* wrote) {
  std::vector<size_t> todo;
  uint64_t total_bytes = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < chain_ids.size(); ++i) {
      if (layers_.count(chain_ids[i])) continue;
      todo.push_back(i);
      total_bytes += static_cast<uint64_t>(m.layers[i].size);
    }
  }
  if (todo.empty()) return absl::OkStatus();
  *wrote = true;

  Progress progress;
  std::atomic<bool> cancel{false};
  std::atomic<size_t> next{0};
  std::mutex emu;
  std::condition_variable done_cv;
  absl::Status first_error;
  size_t layers_done = 0;
  int running = std::clamp<int>(opts_.max_concurrent_downloads, 1, static_cast<int>(todo.size()));
  const int workers = running;

  auto work = [&] {
    while (!cancel.load()) {
      size_t k = next++;
      if (k >= todo.size()) break;
      size_t i = todo[k];
      auto r = EnsureLayer(s, m.layers[i], diff_ids[i], chain_ids[i], &progress, &cancel);
      std::lock_guard<std::mutex> l(emu);
      ++layers_done;
      if (!r.ok()) {
        // The first real error wins over the cancellations it causes.
        if (first_error.ok() || (absl::IsCancelled(first_error) && !absl::IsCancelled(r.status())))
          first_error = r.status();
        cancel = true;
      }
    }
    std::lock_guard<std::mutex> l(emu);
    --running;
    done_cv.notify_all();
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(workers));
  for (int i = 0; i < workers; ++i) threads.emplace_back(work);
  {
    std::unique_lock<std::mutex> l(emu);
    while (running > 0) {
      auto tick = absl::ToChronoMilliseconds(std::max(opts_.progress_interval, absl::Milliseconds(100)));
      if (!done_cv.wait_for(l, tick, [&] { return running == 0; }))
        Log()->info("pulling {}: {}/{} layers, {} of {} downloaded", what, layers_done, todo.size(),
                    MiB(progress.bytes()), MiB(total_bytes));
    }
  }
  for (std::thread& t : threads) t.join();
  return first_error;
}

absl::StatusOr<Image> ImageManager::Pull(const std::string& ref_str, const AuthCredentials& creds) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(ref_str));
  const std::string what = ref.String();
  absl::Time start = absl::Now();
  std::unique_ptr<RegistryClient::Session> session = client_.NewSession(ref, creds);

  // The manifest (or index) the reference names.
  std::string top_body, top_type, top_digest;
  if (!ref.digest.empty() && content_.Has(ref.digest)) {
    auto local = content_.Read(ref.digest, kMaxManifestBytes);
    if (local.ok()) top_body = std::move(*local), top_digest = ref.digest;
  }
  if (top_digest.empty()) {
    ASSIGN_OR_RETURN(RegistryClient::FetchedManifest fm, session->GetManifest(ref.Object()));
    top_body = std::move(fm.body);
    top_type = std::move(fm.media_type);
    top_digest = std::move(fm.digest);
  }
  auto doc = ParseManifestDocument(top_body, top_type);
  if (!doc.ok()) return Annotate(doc.status(), absl::StrCat("manifest ", top_digest, " of ", what));

  std::string manifest_body, manifest_digest = top_digest;
  Manifest man;
  if (doc->is_index) {
    Platform want{opts_.platform_os, opts_.platform_arch, opts_.platform_variant};
    auto desc = ChoosePlatform(doc->index, want);
    if (!desc.ok()) return Annotate(desc.status(), what);
    std::string type;
    ASSIGN_OR_RETURN(manifest_body, FetchManifest(*session, desc->digest, desc->size, &type));
    auto doc2 = ParseManifestDocument(manifest_body, type.empty() ? desc->media_type : type);
    if (!doc2.ok()) return Annotate(doc2.status(), absl::StrCat("manifest ", desc->digest, " of ", what));
    if (doc2->is_index)
      return absl::UnimplementedError(absl::StrCat(what, ": nested image indexes are not supported"));
    man = std::move(doc2->manifest);
    manifest_digest = desc->digest;
  } else {
    man = std::move(doc->manifest);
  }
  for (size_t i = 0; i < man.layers.size(); ++i) {
    auto lt = LayerMediaType(man.layers[i].media_type);
    if (!lt.ok()) return Annotate(lt.status(), absl::StrCat(what, ": layer ", i, " (", man.layers[i].digest, ")"));
  }

  // Everything this image keeps, leased from here until it is recorded.
  std::vector<std::string> leased = {top_digest, manifest_digest, man.config.digest};
  for (const Descriptor& l : man.layers) leased.push_back(l.digest);
  Lease(leased);
  bool recorded = false;
  std::vector<std::string> chain_ids;
  absl::Cleanup unlease = [&] {
    Unlease(leased);
    if (recorded) return;
    // A failed pull leaves nothing of itself: what it stored (even complete,
    // verified layers) goes unless another image or pull uses it. A retry
    // downloads again; a store that only ever holds images is worth it.
    std::vector<std::string> trash;
    {
      std::lock_guard<std::mutex> l(mu_);
      std::set<std::string> blobs(leased.begin(), leased.end());
      for (const std::string& c : chain_ids) blobs.erase(c);
      CollectLocked(blobs, chain_ids, &trash);
    }
    EmptyTrash(trash);
  };

  auto config_json = FetchSmallBlob(*session, man.config, kMaxConfigBytes);
  if (!config_json.ok()) return Annotate(config_json.status(), absl::StrCat(what, ": image config"));
  auto cfg = ParseImageConfig(*config_json);
  if (!cfg.ok()) return Annotate(cfg.status(), absl::StrCat(what, ": image config ", man.config.digest));
  if (cfg->diff_ids.size() != man.layers.size())
    return absl::InvalidArgumentError(absl::StrCat(what, ": the manifest has ", man.layers.size(),
                                                   " layers but the config lists ", cfg->diff_ids.size(),
                                                   " diff IDs"));
  chain_ids = ChainIds(cfg->diff_ids);
  // Leased before UnpackLayers looks for them, so a concurrent Remove cannot
  // collect a layer between "it is there" and "the image is recorded".
  Lease(chain_ids);
  leased.insert(leased.end(), chain_ids.begin(), chain_ids.end());
  bool wrote_layers = false;
  absl::Time t_unpack = absl::Now();
  RETURN_IF_ERROR(UnpackLayers(*session, what, man, cfg->diff_ids, chain_ids, &wrote_layers));
  absl::Time t_sync = absl::Now();

  // The manifests go in last: they are small and already verified.
  RETURN_IF_ERROR(content_.Put(manifest_digest, manifest_body.empty() ? top_body : manifest_body, false));
  if (top_digest != manifest_digest) RETURN_IF_ERROR(content_.Put(top_digest, top_body, false));
  // No sync here: unpacked layers become durable in the background, and
  // Init drops what a crash may have cut short (see image_manager.h). Blobs
  // are verified whenever they are read, so a damaged one is never used.
  absl::Time t_record = absl::Now();

  Image result;
  {
    std::lock_guard<std::mutex> w(write_mu_);
    std::map<std::string, Record> before;
    std::string data;
    {
      std::lock_guard<std::mutex> l(mu_);
      blob_sizes_[top_digest] = top_body.size();
      if (!manifest_body.empty()) blob_sizes_[manifest_digest] = manifest_body.size();
      before = records_;
      const std::string& id = man.config.digest;
      Record& r = records_[id];
      if (r.id.empty()) {
        r.id = id;
        r.config_json = *config_json;
        r.user = ParseImageUser(cfg->user);
        r.chain_ids = chain_ids;
      }
      r.blobs.insert(leased.begin(), leased.end() - static_cast<long>(chain_ids.size()));
      if (ref.digest.empty()) {
        // A tag names one image: it moves here from wherever it was.
        std::string tag = ref.TagRef();
        for (auto& [oid, other] : records_)
          if (oid != id) Erase(other.repo_tags, tag);
        if (!Contains(r.repo_tags, tag)) r.repo_tags.push_back(tag);
      }
      std::string dref = ref.DigestRef(top_digest);
      if (!Contains(r.repo_digests, dref)) r.repo_digests.push_back(dref);
      RebuildRefsLocked();
      data = SerializeLocked();
      result = ToImage(r);
    }
    if (absl::Status s = Persist(data); !s.ok()) {
      std::lock_guard<std::mutex> l(mu_);
      records_ = std::move(before);
      RebuildRefsLocked();
      return Annotate(s, what);
    }
    recorded = true;
  }
  absl::Time end = absl::Now();
  Log()->info("pulled {} as {} in {}", what, Short(result.id), absl::FormatDuration(end - start));
  Log()->debug("pull steps: manifests+config {}, layers {}, store {}, record {}",
               absl::FormatDuration(t_unpack - start), absl::FormatDuration(t_sync - t_unpack),
               absl::FormatDuration(t_record - t_sync), absl::FormatDuration(end - t_record));
  return result;
}

}  // namespace crisp::images
