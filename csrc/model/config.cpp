#include "model/config.h"

#include <algorithm>
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
  need(num_layers > 0 && num_layers <= kMaxLayers, "num_layers must be in [1, 4096] (corrupt config?)");
  need(num_heads > 0, "num_heads must be > 0");
  if (attention == AttentionKind::Gqa) {
    need(num_kv_heads > 0 && num_heads % num_kv_heads == 0,
         "num_kv_heads must be > 0 and divide num_heads");
    need(head_dim > 0 && head_dim % 2 == 0, "head_dim must be a positive even number");
  } else {
    need(q_lora_rank >= 0, "q_lora_rank must be >= 0");
    need(kv_lora_rank > 0, "kv_lora_rank must be > 0");
    need(qk_nope_head_dim > 0, "qk_nope_head_dim must be > 0");
    need(qk_rope_head_dim > 0 && qk_rope_head_dim % 2 == 0,
         "qk_rope_head_dim must be a positive even number");
    need(v_head_dim > 0, "v_head_dim must be > 0");
    need(head_dim == qk_nope_head_dim + qk_rope_head_dim,
         "head_dim must be qk_nope_head_dim + qk_rope_head_dim for MLA");
    need(num_kv_heads == num_heads, "num_kv_heads must equal num_heads for MLA");
    need(!qkv_bias && !qk_norm, "MLA has no q/k/v biases and no per-head q/k norms");
  }
  need(intermediate_size > 0 || (num_experts > 0 && moe_first_layer == 0),
       "intermediate_size must be > 0 (the model has dense layers)");
  need(num_experts >= 0 && num_experts <= kMaxExperts, "num_experts must be in [0, 65536] (corrupt config?)");
  if (num_experts > 0) {
    need(experts_per_token > 0 && experts_per_token <= num_experts,
         "experts_per_token must be in [1, num_experts]");
    need(moe_intermediate_size > 0, "moe_intermediate_size must be > 0");
    need(num_shared_experts >= 0, "num_shared_experts must be >= 0");
    need(moe_first_layer >= 0 && moe_first_layer < num_layers,
         "moe_first_layer must be in [0, num_layers) (a model with experts has a layer that uses them)");
    need(expert_groups > 0 && num_experts % expert_groups == 0,
         "expert_groups must be > 0 and divide the number of experts");
    need(expert_groups_kept > 0 && expert_groups_kept <= expert_groups,
         "expert_groups_kept must be in [1, expert_groups]");
    need(experts_per_token <= expert_groups_kept * (num_experts / expert_groups),
         "experts_per_token exceeds the experts of the kept groups (expert_groups_kept · experts per group)");
    need(router != RouterKind::SigmoidGroupTop2 || num_experts / expert_groups >= 2,
         "the sigmoid router scores groups by their top two experts: groups need >= 2 experts");
    need(std::isfinite(routed_scale), "routed_scale must be finite");
  }
  need(mtp_layers >= 0 && mtp_layers <= kMaxLayers, "mtp_layers must be in [0, 4096] (corrupt config?)");
  need(context > 0, "context must be > 0");
  need(kv_cache != DType::Q4_0, "kv_cache must be f32, f16, bf16 or q8_0");
  need(max_position_embeddings > 0, "max_position_embeddings must be > 0");
  need(norm_eps > 0.f, "norm_eps must be > 0");
  need(rope_theta > 0.f, "rope_theta must be > 0");
  need(rope_freq_factors.empty() || int64_t(rope_freq_factors.size()) == rope_dim() / 2,
       "rope_freq_factors must hold one factor per rotary frequency (rotary dims / 2)");
  for (float f : rope_freq_factors) need(std::isfinite(f) && f > 0.f, "rope_freq_factors must be positive");
  if (rope_kind == RopeKind::Llama3) {
    need(rope_factor > 0.f, "llama3 rope factor must be > 0");
    need(rope_original_context > 0, "llama3 rope needs rope_original_context");
    need(rope_high_freq_factor > rope_low_freq_factor,
         "llama3 rope needs rope_high_freq_factor > rope_low_freq_factor");
  }
  if (rope_kind == RopeKind::Yarn) {
    need(rope_factor > 0.f, "yarn rope factor must be > 0");
    need(rope_original_context > 0, "yarn rope needs rope_original_context");
    need(yarn_beta_fast > 0.f && yarn_beta_slow > 0.f, "yarn_beta_fast and yarn_beta_slow must be > 0");
  }
  need(rope_attn_factor > 0.f && attn_scale_mult > 0.f, "rope_attn_factor and attn_scale_mult must be > 0");
}

int64_t ModelConfig::widest_ffn() const {
  int64_t widest = intermediate_size;
  if (num_experts > 0)
    widest = std::max({widest, moe_intermediate_size, moe_intermediate_size * num_shared_experts});
  return widest;
}

namespace {

// ARCH.md §5: the rope dimension index at which a wavelength completes `rotations` turns over
// the original context.
double yarn_correction_dim(double rotations, int64_t dim, double base, int64_t original_context) {
  return double(dim) * std::log(double(original_context) / (rotations * 2.0 * M_PI)) /
         (2.0 * std::log(base));
}

}  // namespace

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int64_t dim = rope_dim(), half = dim / 2;
  std::vector<float> inv(half);
  for (int64_t i = 0; i < half; ++i)
    inv[i] = float(1.0 / std::pow(double(rope_theta), double(2 * i) / double(dim)));
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
  if (rope_kind == RopeKind::Yarn) {
    // ARCH.md §5: frequencies below `low` keep their value, above `high` are divided by the
    // factor, with a linear ramp between (correction range truncated to whole dims).
    double low = std::floor(yarn_correction_dim(yarn_beta_fast, dim, rope_theta, rope_original_context));
    double high = std::ceil(yarn_correction_dim(yarn_beta_slow, dim, rope_theta, rope_original_context));
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < half; ++i) {
      const float ramp = std::clamp(float((double(i) - low) / (high - low)), 0.f, 1.f);
      inv[i] = inv[i] / rope_factor * ramp + inv[i] * (1.f - ramp);
    }
  }
  for (size_t i = 0; i < rope_freq_factors.size(); ++i) inv[i] /= rope_freq_factors[i];
  return inv;
}

}  // namespace r1lite
