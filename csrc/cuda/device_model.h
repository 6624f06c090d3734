// The forward pass on an NVIDIA GPU: weights uploaded once from the (mapped) host tensors, the KV
// cache in device pages, every operation of the CPU path as a CUDA kernel (csrc/cuda/*.cu), and
// a decode step replayed as one captured CUDA graph. Plain C++ on this side, so the bindings
// need no CUDA headers. One sequence (the server's continuous batching runs on the CPU).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "model/backend.h"
#include "model/config.h"

namespace r1lite {

// "" when a CUDA device can be used; else why not (no driver, no device, ...).
std::string cuda_unavailable_reason();
// The name of device `index` (e.g. "NVIDIA H200").
std::string cuda_device_name(int index);

class DeviceModel final : public Backend {
 public:
  // Checks and binds the tensors as the CPU model does (bind_weights), then uploads them to
  // device `device_index`. Throws std::invalid_argument on a bad tensor or config and
  // std::runtime_error on a CUDA failure (out of device memory, ...).
  DeviceModel(const ModelConfig& config, const std::map<std::string, Tensor>& tensors, int device_index);
  ~DeviceModel() override;
  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

  void forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) override;
  void reset() override;
  int64_t n_past() const override;
  int64_t cache_bytes() const override;
  int64_t cache_bytes_per_token() const override;
  const ModelConfig& config() const override;
  int threads() const override { return 1; }
  // One sequence on the device for now (the server's continuous batching runs on the CPU):
  // these throw std::invalid_argument saying so.
  void forward_batch(const int32_t*, const int64_t*, const int64_t*, int64_t, float*) override;
  int64_t open_sequence() override;
  void close_sequence(int64_t id) override;
  int64_t sequence_length(int64_t id) override;

  // Feeds the tokens and returns the argmax of the last position's logits, computed on the
  // device (greedy decoding without copying the logits back).
  int32_t forward_argmax(const int32_t* tokens, int64_t n);
  int64_t weight_bytes() const;
  // Decode steps replay a captured CUDA graph (default); off: every kernel is launched each step.
  void set_graphs(bool on);
  // Best device-to-device copy rate over `bytes` (bytes read + written per second): the
  // bandwidth decode's achieved bytes/s is compared with.
  double copy_bandwidth(int64_t bytes, int repeats);
  std::string device_name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1lite
