#pragma once
// Internal to the streaming server: the HTTP/1.1 request head parser and the
// small socket helpers the protocol handlers share.
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/streaming/connection.h"

namespace crisp::streaming {

// The request head must fit in this (kubelet and crictl send well under 2 KiB).
inline constexpr size_t kMaxRequestHead = 16 * 1024;

// Parses "METHOD target HTTP/1.x\r\nName: value\r\n...\r\n\r\n" (the head
// without the terminating blank line is accepted too). The query is split on
// '&' and percent-decoded ('+' is a space, as Go's url.ParseQuery does).
// INVALID_ARGUMENT for anything malformed.
absl::StatusOr<HttpRequest> ParseRequestHead(absl::string_view head);

// Percent-decoding; false on a malformed escape.
bool PercentDecode(absl::string_view in, bool plus_is_space, std::string* out);

// Every value of header `name` (lower-case), split on commas and trimmed:
// "Sec-WebSocket-Protocol: a, b" and two such headers give the same list.
std::vector<std::string> HeaderTokens(const HttpRequest& request, absl::string_view name);
// The first value of header `name` (lower-case), or "".
std::string HeaderValue(const HttpRequest& request, absl::string_view name);

// A complete HTTP/1.1 response that closes the connection.
std::string HttpResponse(int code, absl::string_view reason, absl::string_view body);

// Writes all of `data` to the (possibly non-blocking) socket `fd`, waiting
// with poll(). Gives up (false) on error, after `timeout`, or when
// `shutdown_fd` becomes readable. MSG_NOSIGNAL: a gone peer is an error, not
// a SIGPIPE.
bool SendAll(int fd, absl::string_view data, int shutdown_fd, absl::Duration timeout);

// Sends as much of *out as the non-blocking socket `fd` takes now, erasing
// what was sent. False on a hard error (EAGAIN is not one).
bool FlushSome(int fd, std::string* out);

// Makes `fd` non-blocking; false on failure.
bool SetNonBlocking(int fd);

}  // namespace crisp::streaming
