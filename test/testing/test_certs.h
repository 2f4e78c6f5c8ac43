#pragma once
// A throwaway PKI for TLS tests, made with OpenSSL's API at test time (no
// openssl CLI needed): a self-signed CA and a server certificate it signs,
// EC P-256, valid from an hour ago for a day, written as PEM files.
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace crisp::testing {

struct TestCerts {
  std::string ca_cert;      // the CA certificate: what clients trust (ca_file)
  std::string server_cert;  // the server's certificate (the leaf alone)
  std::string server_key;   // its private key
};

// Writes `prefix`-ca.pem, `prefix`.pem and `prefix`-key.pem into `dir`: a
// new CA and a server certificate for the names `dns_names` and the IP
// addresses `ips` (subjectAltName; the first name, or IP, is also the CN).
absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir, const std::string& prefix,
                                        const std::vector<std::string>& dns_names,
                                        const std::vector<std::string>& ips);

}  // namespace crisp::testing
