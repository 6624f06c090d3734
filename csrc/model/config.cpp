#include "model/config.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace r1lite {

void ModelConfig::validate() const {
  auto need = [](bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("invalid model config: ") + what);
  };
  need(vocab_size > 0, "vocab_size must be > 0");
  need(hidden_size > 0, "hidden_size must be > 0");
  need(num_layers > 0, "num_layers must be > 0");
  need(num_heads > 0, "num_heads must be > 0");
  need(num_kv_heads > 0 && num_heads % num_kv_heads == 0,
       "num_kv_heads must be > 0 and divide num_heads");
  need(head_dim > 0 && head_dim % 2 == 0, "head_dim must be a positive even number");
  need(intermediate_size > 0, "intermediate_size must be > 0");
  need(context > 0, "context must be > 0");
  need(norm_eps > 0.f, "norm_eps must be > 0");
  need(rope_theta > 0.f, "rope_theta must be > 0");
  if (rope_kind == RopeKind::Llama3) {
    need(rope_factor > 0.f, "llama3 rope factor must be > 0");
    need(rope_original_context > 0, "llama3 rope needs original_max_position_embeddings");
    need(rope_high_freq_factor > rope_low_freq_factor,
         "llama3 rope needs high_freq_factor > low_freq_factor");
  }
}

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int64_t half = head_dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i)
    inv[i] = float(1.0 / std::pow(double(rope_theta), double(2 * i) / double(head_dim)));
  if (rope_kind == RopeKind::Llama3) {
    // ARCH.md §8: keep high frequencies, divide low ones by factor, blend in between.
    const float low_wavelen = float(rope_original_context) / rope_low_freq_factor;
    const float high_wavelen = float(rope_original_context) / rope_high_freq_factor;
    for (int64_t i = 0; i < half; ++i) {
      const float f = inv[i];
      const float wavelen = 2.f * float(M_PI) / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        inv[i] = f / rope_factor;
      } else {
        const float smooth = (float(rope_original_context) / wavelen - rope_low_freq_factor) /
                             (rope_high_freq_factor - rope_low_freq_factor);
        inv[i] = (1.f - smooth) * f / rope_factor + smooth * f;
      }
    }
  }
  return inv;
}

}  // namespace r1lite
