#pragma once
// The image service behind CRI's ImageService: pulls images from registries
// into a content store, unpacks their layers once per chain ID, keeps the
// image metadata (references -> config digest) and collects garbage.
//
// On disk, under <root>/images:
//   blobs/sha256/<hex>        verified content (manifests, indexes, configs, layer blobs)
//   ingest/                   blobs being downloaded (emptied at Init)
//   layers/<chain-hex>/diff   an unpacked layer (an overlayfs lower dir)
//   layers/<chain-hex>/meta.json   its size and inode count, the boot and
//                             sequence number it was committed in
//   layers.synced             {boot_id, seq}: every layer committed in that
//                             boot up to seq is on stable storage
//   images.json               the image records, written atomically
//
// Durability of unpacked layers: a pull does not wait for its files to reach
// the disk. fsync per file costs a cache flush per file, and one syncfs
// waits for everything dirty on the filesystem (other programs' writes
// too): ~35-50 ms of a ~150 ms pull on the reference VM. containerd
// (before 2.0's opt-in sync_fs) does not sync unpacked files at all, which
// after a power loss leaves committed layers with empty files forever
// (containerd#5854, #9115). Here a background thread runs syncfs once a
// burst of commits is over (ImageOptions::sync_quiet, at most
// sync_max_delay after the first) and then records in layers.synced how far
// it got. Until the
// machine reboots the page cache serves every file whether or not it is on
// disk, so a layer committed in the running boot is complete; at Init a
// layer committed in an earlier boot and not covered by layers.synced may
// have lost data in a crash and is removed (with the images that use it:
// they are pulled again). A clean shutdown runs the last sync first.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "images/auth.h"
#include "images/content_store.h"
#include "images/manifest.h"
#include "images/reference.h"
#include "images/registry_client.h"
#include "images/singleflight.h"
#include "images/transport.h"

namespace crisp::images {

struct ImageOptions {
  std::string root;  // the store lives in <root>/images
  std::map<std::string, RegistryHostConfig> hosts;  // by registry host[:port]
  // Layers downloaded (and unpacked) at the same time by one pull.
  int max_concurrent_downloads = 4;
  // A request that receives no byte for this long fails the pull.
  absl::Duration stall_timeout = absl::Minutes(5);
  // The platform picked from multi-arch indexes.
  std::string platform_os = "linux", platform_arch = "amd64", platform_variant;
  // chown unpacked files to their recorded owners (needs CAP_CHOWN).
  bool preserve_owner = true;
  // References (any form, normalised) whose images are reported pinned, so
  // that kubelet's image GC never removes them.
  std::vector<std::string> pinned_images;
  // How often a long pull logs its progress.
  absl::Duration progress_interval = absl::Seconds(5);
  // The identity of this boot of the machine; empty: read
  // /proc/sys/kernel/random/boot_id. Tests set it to simulate reboots.
  std::string boot_id;
  // Background durability (see the top of this file): the syncfs runs once
  // commits have stopped for `sync_quiet`, and at the latest `sync_max_delay`
  // after the first commit it covers. One sync then serves a whole pull (or
  // a burst of pulls) instead of writing back layers still being unpacked.
  absl::Duration sync_quiet = absl::Seconds(1);
  absl::Duration sync_max_delay = absl::Seconds(10);
};

struct Image {
  std::string id;  // config digest "sha256:<hex>"
  std::vector<std::string> repo_tags;     // "docker.io/library/busybox:latest"
  std::vector<std::string> repo_digests;  // "docker.io/library/busybox@sha256:<manifest or index digest>"
  uint64_t size = 0;                      // unpacked size of all layers (allocated bytes)
  std::string config_json;                // the image config as stored
  std::vector<std::string> layer_dirs;    // absolute unpacked layer dirs, lowest first
  std::optional<int64_t> uid;             // from config.User when numeric
  std::string username;                   // from config.User when a name
  bool pinned = false;
};

class ImageManager {
 public:
  ImageManager(ImageOptions opts, std::unique_ptr<RegistryTransport> transport);
  ~ImageManager();
  ImageManager(const ImageManager&) = delete;
  ImageManager& operator=(const ImageManager&) = delete;

  // Creates the store, drops half-written downloads and unpacks, loads
  // images.json (an image whose config or layers are missing is dropped
  // with a warning rather than failing startup) and removes blobs and
  // layers no image references. Call once before anything else.
  absl::Status Init();

  // Pulls `ref` (any form ParseReference accepts) for the configured
  // platform and records it. Returns the image with its new reference.
  // Pulling an image that is already complete costs one manifest GET (none
  // for a digest reference whose manifest is stored). Errors:
  // INVALID_ARGUMENT (bad reference), NOT_FOUND, UNAUTHENTICATED /
  // PERMISSION_DENIED, UNAVAILABLE, DEADLINE_EXCEEDED (stalled), DATA_LOSS
  // (content does not match its digest), FAILED_PRECONDITION (foreign
  // layers, not an image). A failed pull leaves nothing of itself behind.
  // Thread-safe; concurrent pulls share downloads of the same layers.
  absl::StatusOr<Image> Pull(const std::string& ref, const AuthCredentials& creds);

  // Every image, from memory. Never waits for a pull in progress.
  std::vector<Image> List() const;

  // Finds an image by ID ("sha256:<hex>", "<hex>" or a unique hex prefix)
  // or by any tag or digest reference, short names normalised ("busybox"
  // is docker.io/library/busybox:latest). nullopt if none.
  std::optional<Image> Get(const std::string& ref_or_id) const;

  // Removes a reference. By ID, the image is deleted with all its
  // references. By tag or digest, only that reference goes (a tag takes
  // its repository's digest references along when it was the last tag of
  // that repository, as docker rmi does); when no reference is left the
  // image is deleted. Deleting an image for which `in_use(id)` is true is
  // FAILED_PRECONDITION; NOT_FOUND if nothing matches. Deletion removes
  // the blobs and unpacked layers no other image uses.
  absl::Status Remove(const std::string& ref_or_id, const std::function<bool(const std::string& image_id)>& in_use);

  struct FsUsage {
    uint64_t used_bytes = 0;   // blobs + unpacked layers
    uint64_t inodes_used = 0;  // inodes of unpacked layers + one per blob
    std::string mountpoint;    // <root>/images
  };
  // Usage of the image store, from memory.
  FsUsage Usage() const;

  // Blocks until every layer dir removed so far is deleted from disk (tests).
  void WaitForTrash();

  // The registry endpoints a pull of `ref` would try, in order, as base
  // URLs ("http://127.0.0.1:5000", "https://registry-1.docker.io"), for
  // `crispd registry resolve`. INVALID_ARGUMENT for a bad reference.
  absl::StatusOr<std::vector<std::string>> Endpoints(const std::string& ref) const;

  // Where the store lives (<root>/images).
  const std::string& store_dir() const { return dir_; }

 private:
  struct LayerInfo {
    std::string chain_id, diff_id;
    uint64_t disk_bytes = 0, inodes = 0;
  };
  struct Record {
    std::string id;
    std::vector<std::string> repo_tags, repo_digests;
    std::vector<std::string> chain_ids;  // lowest first
    std::set<std::string> blobs;         // every blob the image needs kept
    bool pinned = false;
    // Derived at load/commit time.
    std::string config_json;
    ImageUser user;
  };
  class Progress;

  std::string LayerDir(const std::string& chain_id) const;
  Image ToImage(const Record& r) const;  // mu_ held
  void RebuildRefsLocked();
  std::string SerializeLocked() const;
  absl::Status Persist(const std::string& json);
  std::optional<std::string> ResolveLocked(const std::string& ref_or_id) const;

  // Pull steps.
  absl::StatusOr<std::string> FetchManifest(RegistryClient::Session& s, const std::string& object,
                                            int64_t expect_size, std::string* media_type);
  absl::StatusOr<std::string> FetchSmallBlob(RegistryClient::Session& s, const Descriptor& d, int64_t max);
  absl::StatusOr<LayerInfo> EnsureLayer(RegistryClient::Session& s, const Descriptor& d, const std::string& diff_id,
                                        const std::string& chain_id, Progress* progress,
                                        const std::atomic<bool>* cancel);
  absl::StatusOr<LayerInfo> UnpackLayer(RegistryClient::Session& s, const Descriptor& d, const std::string& diff_id,
                                        const std::string& chain_id, Progress* progress,
                                        const std::atomic<bool>* cancel);
  absl::Status UnpackLayers(RegistryClient::Session& s, const std::string& what, const Manifest& m,
                            const std::vector<std::string>& diff_ids, const std::vector<std::string>& chain_ids,
                            bool* wrote);

  // Leases keep blobs and layers of pulls in progress safe from GC.
  void Lease(const std::vector<std::string>& keys);
  void Unlease(const std::vector<std::string>& keys);
  // Deletes `blobs` and `chain_ids` that no image references and no pull
  // holds. Layer dirs are renamed away under mu_ and deleted after.
  void CollectLocked(const std::set<std::string>& blobs, const std::vector<std::string>& chain_ids,
                     std::vector<std::string>* trash);
  // Hands renamed-away layer dirs to the trash thread: deleting a layer's
  // files takes 100+ ms (seconds when the disk is busy), which RemoveImage
  // and a failed pull need not wait for. A crash before they are gone leaves
  // `.trash-*` names, which Init removes.
  void EmptyTrash(const std::vector<std::string>& trash);
  void TrashLoop();

  // Background durability (see the top of this file). RequestSync wakes the
  // sync thread; it makes every layer committed so far durable.
  void RequestSync();
  void SyncLoop();

  const ImageOptions opts_;
  const std::string dir_;
  std::unique_ptr<RegistryTransport> transport_;
  ContentStore content_;
  RegistryClient client_;
  Singleflight<absl::StatusOr<LayerInfo>> layer_flight_;  // by chain id
  Singleflight<absl::StatusOr<std::string>> blob_flight_;  // small blobs by digest

  // Serialises metadata changes and their persistence; never held by
  // readers, so List/Get do not wait for a slow disk.
  std::mutex write_mu_;
  std::string persisted_;  // images.json as last written; guarded by write_mu_
  mutable std::mutex mu_;  // guards everything below
  std::map<std::string, Record> records_;      // by id
  std::map<std::string, std::string> refs_;    // tag or digest reference -> id
  std::map<std::string, LayerInfo> layers_;    // unpacked layers by chain id
  std::map<std::string, uint64_t> blob_sizes_;  // present blobs by digest

  // The trash thread's queue (dirs to delete) and state.
  std::mutex trash_mu_;
  std::condition_variable trash_cv_;
  std::deque<std::string> trash_;
  bool trash_busy_ = false, trash_stop_ = false;
  std::thread trash_thread_;  // last member: started after the rest exists
  std::map<std::string, int> leases_;          // blob digest or chain id -> holders
  std::set<std::string> pinned_refs_;          // normalised opts_.pinned_images; immutable

  std::string boot_id_;  // set by Init
  // Layer commits (meta.json + rename into place) hold commit_mu_, so that
  // every layer numbered <= commit_seq_ is in place when the sync thread
  // reads it.
  std::mutex commit_mu_;
  uint64_t commit_seq_ = 0;  // guarded by commit_mu_
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  uint64_t synced_seq_ = 0;  // guarded by sync_mu_: recorded in layers.synced
  bool sync_wanted_ = false, sync_stop_ = false;  // guarded by sync_mu_
  std::thread sync_thread_;
};

}  // namespace crisp::images
