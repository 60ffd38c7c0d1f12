// The error convention of roli-torch-ext's C entry points, shared by ext.cpp and dist.cpp: the body
// runs inside `guarded`, which catches every C++ exception and returns 1 with its message copied
// into `err` (NUL-terminated, truncated to err_len); 0 on success.
#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>

namespace roli_ext {

inline int fail(char* err, size_t err_len, const char* msg) {
  if (err != nullptr && err_len > 0) {
    std::strncpy(err, msg, err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 1;
}

template <class F>
int guarded(char* err, size_t err_len, F&& body) noexcept {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return fail(err, err_len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(err, err_len, e.what());
  } catch (...) {
    return fail(err, err_len, "unknown C++ exception");
  }
}

}  // namespace roli_ext
