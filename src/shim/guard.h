// The one error convention of lrlab's C++ shims: every entry point returns 0 on success and
// -1 when C++ raised, with the exception's message (no backtrace) in the caller's buffer
// `err` of `len` bytes, NUL-terminated. The Rust side (src/shim/mod.rs, `call`) turns that
// into an error. No exception ever crosses into Rust, where it would abort the process.
#pragma once

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

namespace lrlab {

inline void set_err(char* err, size_t len, const std::string& msg) {
  if (err == nullptr || len == 0) return;
  size_t n = std::min(len - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = 0;
}

template <typename F>
int guarded(char* err, size_t len, F f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    set_err(err, len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_err(err, len, e.what());
  } catch (...) {
    set_err(err, len, "unknown C++ exception");
  }
  return -1;
}

}  // namespace lrlab
