#include "test/testing/test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace crisp::testing {
namespace {

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* x) const { X509_free(x); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using CertPtr = std::unique_ptr<X509, CertFree>;

bool AddExt(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(x, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `cn`, signed by `issuer`/`issuer_key` (itself
// when null), with `exts` (nid, value) added.
CertPtr MakeCert(EVP_PKEY* key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                 const std::vector<std::pair<int, std::string>>& exts) {
  CertPtr x(X509_new());
  uint64_t serial = 0;
  if (x == nullptr || RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1)
    return nullptr;
  X509_set_version(x.get(), X509_VERSION_3);
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(x.get()), serial >> 1);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 24 * 3600);
  X509_set_pubkey(x.get(), key);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  for (const auto& [nid, value] : exts) {
    if (!AddExt(x.get(), issuer != nullptr ? issuer : x.get(), nid, value)) return nullptr;
  }
  if (X509_sign(x.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) return nullptr;
  return x;
}

bool WritePem(const std::string& path, X509* cert, EVP_PKEY* key) {
  BIO* out = BIO_new_file(path.c_str(), "w");
  if (out == nullptr) return false;
  bool ok = cert != nullptr ? PEM_write_bio_X509(out, cert) == 1
                            : PEM_write_bio_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  return BIO_free(out) == 1 && ok;
}

}  // namespace

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir, const std::string& prefix,
                                        const std::vector<std::string>& dns_names,
                                        const std::vector<std::string>& ips) {
  KeyPtr ca_key(EVP_EC_gen("P-256"));
  KeyPtr key(EVP_EC_gen("P-256"));
  if (ca_key == nullptr || key == nullptr) return absl::InternalError("EC key generation failed");
  CertPtr ca = MakeCert(ca_key.get(), "crisp test CA " + prefix, nullptr, nullptr,
                        {{NID_basic_constraints, "critical,CA:TRUE"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"}});
  if (ca == nullptr) return absl::InternalError("making the CA certificate failed");
  std::vector<std::string> alt;
  for (const std::string& n : dns_names) alt.push_back("DNS:" + n);
  for (const std::string& ip : ips) alt.push_back("IP:" + ip);
  std::string cn = !dns_names.empty() ? dns_names[0] : !ips.empty() ? ips[0] : "crisp test server";
  std::vector<std::pair<int, std::string>> exts = {{NID_basic_constraints, "critical,CA:FALSE"},
                                                   {NID_key_usage, "critical,digitalSignature"},
                                                   {NID_ext_key_usage, "serverAuth"},
                                                   {NID_subject_key_identifier, "hash"},
                                                   {NID_authority_key_identifier, "keyid:always"}};
  if (!alt.empty()) exts.emplace_back(NID_subject_alt_name, absl::StrJoin(alt, ","));
  CertPtr leaf = MakeCert(key.get(), cn, ca.get(), ca_key.get(), exts);
  if (leaf == nullptr) return absl::InternalError("making the server certificate failed");
  TestCerts out;
  out.ca_cert = absl::StrCat(dir, "/", prefix, "-ca.pem");
  out.server_cert = absl::StrCat(dir, "/", prefix, ".pem");
  out.server_key = absl::StrCat(dir, "/", prefix, "-key.pem");
  if (!WritePem(out.ca_cert, ca.get(), nullptr) || !WritePem(out.server_cert, leaf.get(), nullptr) ||
      !WritePem(out.server_key, nullptr, key.get()))
    return absl::InternalError("writing PEM files into " + dir + " failed");
  return out;
}

}  // namespace crisp::testing
