// The format table and the scalar reference dequantizers of GGUF's block formats, written from
// the block definitions in core/blocks.h (ggml's dequantize_row_* compute the same values).
#include "core/formats.h"

#include <cstring>

#include "core/blocks.h"

namespace r1lite {

const int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

namespace {

inline float h2f(uint16_t h) { return f16_to_f32(h); }

// The 32 nibbles of a q4_0-style block: value j from qs[j % 16], low nibble for j < 16.
inline int nibble(const uint8_t* qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }
// q5_0 / q5_1: the nibble plus bit j of qh as the fifth bit.
inline int five_bits(const uint8_t* qs, const uint8_t* qh_bytes, int j) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  return nibble(qs, j) | int((qh >> j) & 1) << 4;
}

void gguf_q8_0_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = h2f(b[i].d) * b[i].qs[j];
}

void gguf_q4_0_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = h2f(b[i].d) * float(nibble(b[i].qs, j) - 8);
}

void q4_1_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < nb; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = h2f(b[i].d) * float(nibble(b[i].qs, j)) + h2f(b[i].m);
}

void q5_0_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < nb; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = h2f(b[i].d) * float(five_bits(b[i].qs, b[i].qh, j) - 16);
}

void q5_1_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < nb; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = h2f(b[i].d) * float(five_bits(b[i].qs, b[i].qh, j)) + h2f(b[i].m);
}

void iq4_nl_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ4_NL*>(src);
  for (int64_t i = 0; i < nb; ++i, y += 32)
    for (int j = 0; j < 32; ++j) y[j] = h2f(b[i].d) * float(kIq4nlValues[nibble(b[i].qs, j)]);
}

// K-quants: value v = 128h + 32s + l of a super-block (h < 2, s < 4, l < 32); see blocks.h.
void q2_k_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int v = 0; v < kQK; ++v) {
      const int h = v / 128, s = v / 32 % 4, l = v % 32;
      const uint8_t sc = b[i].scales[8 * h + 2 * s + l / 16];
      const int q = (b[i].qs[32 * h + l] >> (2 * s)) & 3;
      y[v] = d * float(sc & 0xF) * float(q) - dmin * float(sc >> 4);
    }
  }
}

void q3_k_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    int8_t scales[16];
    unpack_q3k_scales(b[i].scales, scales);
    for (int v = 0; v < kQK; ++v) {
      const int h = v / 128, s = v / 32 % 4, l = v % 32;
      const int low = (b[i].qs[32 * h + l] >> (2 * s)) & 3;
      const int high = (b[i].hmask[l] >> (4 * h + s)) & 1;
      y[v] = d * float(scales[8 * h + 2 * s + l / 16] - 32) * float(low - (high ? 0 : 4));
    }
  }
}

void q4_k_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int v = 0; v < kQK; ++v) {
      const int p = v / 64, hi = v / 32 % 2, l = v % 32;
      uint8_t sc, m;
      scale_min_k4(2 * p + hi, b[i].scales, &sc, &m);
      const int q = hi ? b[i].qs[32 * p + l] >> 4 : b[i].qs[32 * p + l] & 0xF;
      y[v] = d * float(sc) * float(q) - dmin * float(m);
    }
  }
}

void q5_k_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int v = 0; v < kQK; ++v) {
      const int p = v / 64, hi = v / 32 % 2, l = v % 32;
      uint8_t sc, m;
      scale_min_k4(2 * p + hi, b[i].scales, &sc, &m);
      const int low = hi ? b[i].qs[32 * p + l] >> 4 : b[i].qs[32 * p + l] & 0xF;
      const int q = low | ((b[i].qh[l] >> (2 * p + hi)) & 1) << 4;
      y[v] = d * float(sc) * float(q) - dmin * float(m);
    }
  }
}

void q6_k_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = h2f(b[i].d);
    for (int v = 0; v < kQK; ++v) {
      const int h = v / 128, s = v / 32 % 4, l = v % 32;
      const uint8_t lb = b[i].ql[64 * h + l + 32 * (s & 1)];
      const int low = s < 2 ? lb & 0xF : lb >> 4;
      const int high = (b[i].qh[32 * h + l] >> (2 * s)) & 3;
      y[v] = d * float(b[i].scales[8 * h + 2 * s + l / 16]) * float((low | high << 4) - 32);
    }
  }
}

void iq4_xs_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ4_XS*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int ib = 0; ib < 8; ++ib, y += 32) {
      const int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((b[i].scales_h >> (2 * ib)) & 3) << 4;
      const float dl = d * float(ls - 32);
      for (int j = 0; j < 32; ++j) y[j] = dl * float(kIq4nlValues[nibble(b[i].qs + 16 * ib, j)]);
    }
  }
}

// i-quants (blocks.h): byte j of a grid entry, with the sign bit j of an 8-bit sign pattern.
inline float grid_value(uint64_t entry, uint8_t signs, int j) {
  const float v = float((entry >> (8 * j)) & 0xFF);
  return signs >> j & 1 ? -v : v;
}

void iq2_xxs_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ2_XXS*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t w[2];
      std::memcpy(w, b[i].qs + 4 * ib, 8);
      const float db = d * (0.5f + float(w[1] >> 28)) * 0.25f;
      for (int g = 0; g < 4; ++g, y += 8) {
        const uint64_t entry = kIq2xxsGrid[(w[0] >> (8 * g)) & 0xFF];
        const uint8_t signs = kKsigns[(w[1] >> (7 * g)) & 0x7F];
        for (int j = 0; j < 8; ++j) y[j] = db * grid_value(entry, signs, j);
      }
    }
  }
}

void iq2_xs_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ2_XS*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int g = 0; g < 32; ++g, y += 8) {
      const int s = (b[i].scales[g / 4] >> (4 * (g / 2 % 2))) & 0xF;  // per 16 values
      const float db = d * (0.5f + float(s)) * 0.25f;
      const uint64_t entry = kIq2xsGrid[b[i].qs[g] & 511];
      const uint8_t signs = kKsigns[b[i].qs[g] >> 9];
      for (int j = 0; j < 8; ++j) y[j] = db * grid_value(entry, signs, j);
    }
  }
}

void iq2_s_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ2_S*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int g = 0; g < 32; ++g, y += 8) {
      const int s = (b[i].scales[g / 4] >> (4 * (g / 2 % 2))) & 0xF;  // per 16 values
      const float db = d * (0.5f + float(s)) * 0.25f;
      const uint64_t entry = kIq2sGrid[b[i].qs[g] | ((b[i].qh[g / 4] >> (2 * (g % 4))) & 3) << 8];
      for (int j = 0; j < 8; ++j) y[j] = db * grid_value(entry, b[i].signs[g], j);
    }
  }
}

// iq1 (blocks.h): value j of a kIq1sGrid entry (stored as g + 1) plus the group's delta.
inline float iq1_value(uint64_t entry, float delta, int j) {
  return float(int((entry >> (8 * j)) & 0xFF) - 1) + delta;
}

void iq1_s_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ1_S*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      const int h = b[i].qh[ib];
      const float dl = d * float(2 * ((h >> 12) & 7) + 1);
      const float delta = h & 0x8000 ? -kIq1Delta : kIq1Delta;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint64_t entry = kIq1sGrid[b[i].qs[4 * ib + l] | ((h >> (3 * l)) & 7) << 8];
        for (int j = 0; j < 8; ++j) y[j] = dl * iq1_value(entry, delta, j);
      }
    }
  }
}

void iq1_m_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ1_M*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(iq1m_d_bits(b[i].scales));
    for (int g = 0; g < 32; ++g, y += 8) {
      const int k = g / 2;  // the 16 values of scale k
      const float dl = d * float(2 * ((b[i].scales[k / 4] >> (3 * (k % 4))) & 7) + 1);
      const int n = (b[i].qh[g / 2] >> (4 * (g % 2))) & 0xF;
      const float delta = n & 8 ? -kIq1Delta : kIq1Delta;
      const uint64_t entry = kIq1sGrid[b[i].qs[g] | (n & 7) << 8];
      for (int j = 0; j < 8; ++j) y[j] = dl * iq1_value(entry, delta, j);
    }
  }
}

// iq3 (blocks.h): two grid entries of 4 make the group of 8 a sign byte covers.
inline uint64_t grid_pair(const uint32_t* grid, int i0, int i1) {
  return uint64_t(grid[i0]) | uint64_t(grid[i1]) << 32;
}

void iq3_xxs_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ3_XXS*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t w;  // 4 sign indices (7 bits each) and the scale (top 4 bits)
      std::memcpy(&w, b[i].signs_scales + 4 * ib, 4);
      const float db = d * (0.5f + float(w >> 28)) * 0.5f;
      const uint8_t* q = b[i].qs + 8 * ib;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint64_t entry = grid_pair(kIq3xxsGrid, q[2 * l], q[2 * l + 1]);
        const uint8_t signs = kKsigns[(w >> (7 * l)) & 0x7F];
        for (int j = 0; j < 8; ++j) y[j] = db * grid_value(entry, signs, j);
      }
    }
  }
}

void iq3_s_to_f32(const void* src, float* y, int64_t nb) {
  const auto* b = static_cast<const BlockIQ3_S*>(src);
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(b[i].d);
    for (int ib = 0; ib < 8; ++ib) {
      const int s = (b[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
      const float db = d * float(1 + 2 * s);
      const uint8_t* q = b[i].qs + 8 * ib;
      const int h = b[i].qh[ib];
      for (int l = 0; l < 4; ++l, y += 8) {
        const int k = 2 * l;  // the group's two grid entries, 9th index bits from qh
        const uint64_t entry =
            grid_pair(kIq3sGrid, q[k] | ((h >> k) & 1) << 8, q[k + 1] | ((h >> (k + 1)) & 1) << 8);
        for (int j = 0; j < 8; ++j) y[j] = db * grid_value(entry, b[i].signs[4 * ib + l], j);
      }
    }
  }
}

}  // namespace

#define R1_BLOCKS(T, name, gguf, block, Block, act, fn) \
  {DType::T, name, gguf, Layout::Blocks, block, int64_t(sizeof(Block)), ActFormat::act, fn}

const FormatInfo kFormats[kNumDTypes] = {
    {DType::F32, "f32", "F32", Layout::Float, 1, 4, ActFormat::F32, nullptr},
    {DType::BF16, "bf16", "BF16", Layout::Float, 1, 2, ActFormat::F32, nullptr},
    {DType::F16, "f16", "F16", Layout::Float, 1, 2, ActFormat::F32, nullptr},
    {DType::Q8_0, "q8_0", nullptr, Layout::Planar, 32, 32, ActFormat::Q8Planar, nullptr},
    {DType::Q4_0, "q4_0", nullptr, Layout::Planar, 32, 16, ActFormat::Q8Planar, nullptr},
    R1_BLOCKS(GGUF_Q8_0, "gguf_q8_0", "Q8_0", 32, BlockQ8_0, Q8_32, gguf_q8_0_to_f32),
    R1_BLOCKS(GGUF_Q4_0, "gguf_q4_0", "Q4_0", 32, BlockQ4_0, Q8_32, gguf_q4_0_to_f32),
    R1_BLOCKS(Q4_1, "q4_1", "Q4_1", 32, BlockQ4_1, Q8_32, q4_1_to_f32),
    R1_BLOCKS(Q5_0, "q5_0", "Q5_0", 32, BlockQ5_0, Q8_32, q5_0_to_f32),
    R1_BLOCKS(Q5_1, "q5_1", "Q5_1", 32, BlockQ5_1, Q8_32, q5_1_to_f32),
    R1_BLOCKS(Q2_K, "q2_k", "Q2_K", kQK, BlockQ2_K, Q8_K, q2_k_to_f32),
    R1_BLOCKS(Q3_K, "q3_k", "Q3_K", kQK, BlockQ3_K, Q8_K, q3_k_to_f32),
    R1_BLOCKS(Q4_K, "q4_k", "Q4_K", kQK, BlockQ4_K, Q8_K, q4_k_to_f32),
    R1_BLOCKS(Q5_K, "q5_k", "Q5_K", kQK, BlockQ5_K, Q8_K, q5_k_to_f32),
    R1_BLOCKS(Q6_K, "q6_k", "Q6_K", kQK, BlockQ6_K, Q8_K, q6_k_to_f32),
    R1_BLOCKS(IQ4_NL, "iq4_nl", "IQ4_NL", 32, BlockIQ4_NL, Q8_32, iq4_nl_to_f32),
    R1_BLOCKS(IQ4_XS, "iq4_xs", "IQ4_XS", kQK, BlockIQ4_XS, Q8_K, iq4_xs_to_f32),
    R1_BLOCKS(IQ2_XXS, "iq2_xxs", "IQ2_XXS", kQK, BlockIQ2_XXS, Q8_K, iq2_xxs_to_f32),
    R1_BLOCKS(IQ2_XS, "iq2_xs", "IQ2_XS", kQK, BlockIQ2_XS, Q8_K, iq2_xs_to_f32),
    R1_BLOCKS(IQ2_S, "iq2_s", "IQ2_S", kQK, BlockIQ2_S, Q8_K, iq2_s_to_f32),
    R1_BLOCKS(IQ1_S, "iq1_s", "IQ1_S", kQK, BlockIQ1_S, Q8_K, iq1_s_to_f32),
    R1_BLOCKS(IQ1_M, "iq1_m", "IQ1_M", kQK, BlockIQ1_M, Q8_K, iq1_m_to_f32),
    R1_BLOCKS(IQ3_XXS, "iq3_xxs", "IQ3_XXS", kQK, BlockIQ3_XXS, Q8_K, iq3_xxs_to_f32),
    R1_BLOCKS(IQ3_S, "iq3_s", "IQ3_S", kQK, BlockIQ3_S, Q8_K, iq3_s_to_f32),
};
#undef R1_BLOCKS

static bool table_in_dtype_order() {
  for (int i = 0; i < kNumDTypes; ++i)
    if (int(kFormats[i].type) != i) return false;
  return true;
}
static const bool kTableChecked = [] {
  if (!table_in_dtype_order()) __builtin_trap();  // a table edit out of DType order
  return true;
}();

const FormatInfo* format_by_name(const char* name) {
  for (const FormatInfo& f : kFormats)
    if (!std::strcmp(f.name, name)) return &f;
  return nullptr;
}

double bits_per_weight(DType t) {
  const FormatInfo& f = format_info(t);
  const double planar_scale = f.layout == Layout::Planar ? 2.0 : 0.0;  // its f16 scale per block
  return (double(f.block_bytes) + planar_scale) * 8.0 / double(f.block);
}

int64_t act_row_bytes(ActFormat fmt, int64_t in) {
  if (fmt == ActFormat::Q8_32) return in / 32 * int64_t(sizeof(ActQ8_32));
  if (fmt == ActFormat::Q8_K) return in / kQK * int64_t(sizeof(ActQ8_K));
  return 0;
}

void act_row_to_f32(ActFormat fmt, const void* row, float* dst, int64_t in) {
  if (fmt == ActFormat::Q8_32) {
    const auto* b = static_cast<const ActQ8_32*>(row);
    for (int64_t i = 0; i < in; ++i) dst[i] = b[i / 32].d * float(b[i / 32].qs[i % 32]);
  } else if (fmt == ActFormat::Q8_K) {
    const auto* b = static_cast<const ActQ8_K*>(row);
    for (int64_t i = 0; i < in; ++i) dst[i] = b[i / kQK].d * float(b[i / kQK].qs[i % kQK]);
  }
}

}  // namespace r1lite
