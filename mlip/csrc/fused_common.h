// Shared by the fused kernels (fused_act.cpp, fused_edges.cpp): the CPU dispatch of their loops
// and the guard every C entry point runs its body in.
#pragma once

#include <ATen/ATen.h>

#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

// Compiled twice, for AVX2 + FMA and for baseline x86-64, and picked at load time by the CPU.
// `flatten` inlines the loop templates that each clone calls into the clone itself: without it
// GCC compiles every template once, for the baseline, and both clones jump to that one copy
// (the AVX2 clone then runs SSE2 code; seen in the disassembly of the first version).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HGNN_CLONES __attribute__((target_clones("arch=haswell", "default"), flatten))
#else
#define HGNN_CLONES
#endif

namespace hgnn {

// A CPU float32/float64 tensor, the only kind the kernels take.
inline bool cpu_real(const at::Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble);
}

// A C entry point's body: *out = body() as a new tensor and 0, or 1 with "name: message" in err
// when body throws (refusals throw std::invalid_argument). Never throws itself.
template <class Body>
int guarded(const char* name, at::Tensor** out, char* err, size_t len, Body&& body) {
  std::string msg;
  try {
    *out = new at::Tensor(body());
    return 0;
  } catch (const std::exception& e) {
    msg = std::string(name) + ": " + e.what();
  } catch (...) {
    msg = std::string(name) + ": unknown C++ exception";
  }
  if (err && len > 0) {
    std::strncpy(err, msg.c_str(), len - 1);
    err[len - 1] = '\0';
  }
  return 1;
}

}  // namespace hgnn
