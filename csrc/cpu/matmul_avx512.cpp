// AVX-512 (F/BW/VL/DQ/VNNI) matmul kernels: float weights 16 per vector with masked tails;
// quantized weights through VNNI's vpdpbusd, one block per 256-bit or two per 512-bit vector.
// Compiled with AVX-512 flags; everything here has internal linkage except the kernel table.
#include <immintrin.h>

#include <cstdlib>
#include <new>
#include <type_traits>

#include "core/cpu_features.h"

#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

// Weight rows are short streams (a few KB): asking for the same offset of the rows of the next
// tile, a little ahead, keeps enough reads in flight to reach the memory bandwidth (measured:
// q8_0 decode on one thread goes from 7.5 to 23 GB/s).
template <class T>
inline void prefetch_ahead(const T* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p) + 512, _MM_HINT_T0);
}
// The quantized tiles also ask for the rows two tiles ahead into L2: the arithmetic takes about
// half as long as the reads, and this keeps more reads in flight while it runs (matmuls alone,
// 1.5B shape, interleaved A/B: q8_0 decode +3%, q4_0 +2%).
inline void prefetch_to_l2(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1); }

struct F32W {
  using T = float;
  static __m512 load16(const T* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct BF16W {
  using T = uint16_t;
  static __m512 load16(const T* p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};
struct F16W {
  using T = uint16_t;
  static __m512 load16(const T* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};

// Lane i: v[i]'s 16 lanes summed as GCC's _mm512_reduce_add_ps sums them (lanes l + l+8, then
// + 4, then (0 + 2) + (1 + 3)), for 16 vectors at once: the same bits for ~3 instructions per
// vector instead of ~8 (a short float tile's reductions cost as much as its products: the
// attention scores' dots of 128 values are 8 fmas each).
inline __m512 reduce16(const __m512 (&v)[16]) {
  __m512 a[8], b[4], c[2];
  for (int k = 0; k < 8; ++k)  // lanes 0-7: v[2k]'s l + l+8, 8-15: v[2k + 1]'s
    a[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], 0xEE));
  for (int m = 0; m < 4; ++m)  // 128-bit lane q: v[4m + q]'s (l + l+8) + (l+4 + l+12)
    b[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x88),
                         _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xDD));
  for (int n = 0; n < 2; ++n) {  // lane q, words 0-1: v[8n + q]'s 0 + 2, 1 + 3; 2-3: v[8n + 4 + q]'s
    const __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(b[2 * n]), _mm512_castps_pd(b[2 * n + 1]));
    const __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(b[2 * n]), _mm512_castps_pd(b[2 * n + 1]));
    c[n] = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
  }
  const __m512 lo = _mm512_unpacklo_ps(c[0], c[1]), hi = _mm512_unpackhi_ps(c[0], c[1]);
  const __m512 slo = _mm512_add_ps(lo, _mm512_shuffle_ps(lo, lo, _MM_SHUFFLE(1, 0, 3, 2)));  // v[q], v[8 + q]
  const __m512 shi = _mm512_add_ps(hi, _mm512_shuffle_ps(hi, hi, _MM_SHUFFLE(1, 0, 3, 2)));  // v[4 + q], v[12 + q]
  // lane 4q + k of the blend: v[q], v[8 + q], v[4 + q], v[12 + q] for k = 0..3
  const __m512 mixed = _mm512_mask_blend_ps(__mmask16(0xCCCC), slo, _mm512_shuffle_ps(shi, shi, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15), mixed);
}

// An NR-rows x NT-tokens register tile: y[t*ldy + r] = x_t · w_r.
template <class W, int NR, int NT>
void tile(const float* x, int64_t ldx, const typename W::T* w, int64_t in, float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < in; k += 16) {
    const __mmask16 m = in - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (in - k)) - 1);
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) {
      prefetch_ahead(w + (r + NR) * in + k);
      wv[r] = W::load16(w + r * in + k, m);
    }
    for (int t = 0; t < NT; ++t) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x + t * ldx + k);
      for (int r = 0; r < NR; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if constexpr (NR * NT >= 8) {  // the accumulators reduced 16 at a time: reduce16's tree
    for (int i0 = 0; i0 < NR * NT; i0 += 16) {
      __m512 v[16];
      for (int i = 0; i < 16; ++i)
        v[i] = i0 + i < NR * NT ? acc[(i0 + i) / NT][(i0 + i) % NT] : _mm512_setzero_ps();
      alignas(64) float sums[16];
      _mm512_store_ps(sums, reduce16(v));
      for (int i = 0; i < 16 && i0 + i < NR * NT; ++i) y[((i0 + i) % NT) * ldy + (i0 + i) / NT] = sums[i];
    }
  } else {
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

// acc + 8 int32 sums of 4 adjacent products u·s (u unsigned, s signed bytes): VNNI vpdpbusd.
inline __m256i dot_u8_s8(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
constexpr int kPrefillRows = 4;  // 32 registers: 4x4 accumulators + operands

#include "cpu/quant_tiles_256.inc"

// ---- 512-bit tiles ----
// AVX-512 has no 512-bit byte sign instruction, so the |w|, sign(x, w) trick of the 256-bit tiles
// does not widen. Instead the weights are made unsigned and the offset corrected per token, so
// that the correction is shared by every row of a tile:
//   q8_0 (two blocks per vector, q8tile_zmm below):
//     (w + 128)·x = w·x + 128·sum(x)  ->  start each lane at -128·(its 4 activations' sum)
//   q4_0 (four blocks per vector, q4tile_zmm below): nibbles n are unsigned already;
//     (n - 8)·x = n·x - 8·sum(x)  ->  start at a share of -8·sum(x)
// Every lane then holds its exact integer partial dot, as the 256-bit tiles' lanes do.
//
// Decode (one token, NT = 1) is bound by memory and by these tiles' instruction count together
// (the same reads with the arithmetic left out reach the full read bandwidth), so for NT = 1 the
// activation scale is folded into the weight scales once per 8 blocks: the products d_w·d_x are
// the same floats, in the same order, as the prefill tile's, and a row rounds the same in any
// batch (issue 9).

// The scales of blocks g..g+7 in the low 8 lanes: dw[r] of each row's weights, dx[t] of each
// token's activations; for one token dw[r] holds d_w·d_x (see above).
template <int NR, int NT>
inline void load_group_scales(const uint16_t* wd, const float* xd, int64_t blocks, int64_t g,
                              __m512* dw, __m512* dx) {
  for (int t = 0; t < NT; ++t) dx[t] = _mm512_castps256_ps512(_mm256_loadu_ps(xd + t * blocks + g));
  for (int r = 0; r < NR; ++r) {
    dw[r] = _mm512_castps256_ps512(
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wd + r * blocks + g))));
    if constexpr (NT == 1) dw[r] = _mm512_mul_ps(dw[r], dx[0]);
  }
}

// q8_0, two blocks per vector (lanes 0-7 block b, 8-15 block b+1).
template <int NR, int NT>
void q8tile_zmm(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks,
                const uint8_t* w, int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8(char(0x80));
  const int64_t main_blocks = blocks / 8 * 8;
  const bool stream = NR == 1 && stride == blocks * Q8W::kBlockBytes;  // see kStreamAhead
  for (int64_t g = 0; g < main_blocks; g += 8) {
    __m512 dw[NR], dx[NT];
    load_group_scales<NR, NT>(wd, xd, blocks, g, dw, dx);
    for (int p = 0; p < 4; ++p) {
      const int64_t b = g + 2 * p;
      const __m512i idx = _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                           2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p,
                                           2 * p, 2 * p, 2 * p, 2 * p, 2 * p);
      __m512i xv[NT], start[NT];
      __m512 sx[NT];
      for (int t = 0; t < NT; ++t) {
        xv[t] = _mm512_loadu_si512(xq + (t * blocks + b) * 32);
        const __m512i lane_sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, xv[t]);
        start[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(lane_sums, 7));
        sx[t] = _mm512_permutexvar_ps(idx, dx[t]);
      }
      for (int r = 0; r < NR; ++r) {
        if (stream) {
          _mm_prefetch(reinterpret_cast<const char*>(w + b * Q8W::kBlockBytes) + kStreamAhead, _MM_HINT_T0);
        } else {
          prefetch_ahead(w + (r + NR) * stride + b * Q8W::kBlockBytes);
          prefetch_to_l2(w + (r + 2 * NR) * stride + b * Q8W::kBlockBytes);
        }
        const __m512i wv = _mm512_xor_si512(_mm512_loadu_si512(w + r * stride + b * Q8W::kBlockBytes), bias);
        const __m512 sw = _mm512_permutexvar_ps(idx, dw[r]);
        for (int t = 0; t < NT; ++t) {
          const __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(start[t], wv, xv[t]));
          if constexpr (NT == 1)
            acc[r][t] = _mm512_fmadd_ps(dot, sw, acc[r][t]);  // sw holds d_w·d_x already
          else
            acc[r][t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(sw, sx[t]), acc[r][t]);
        }
      }
    }
  }
  float tail[NT][NR] = {};
  if (main_blocks < blocks)
    qtile<Q8W, NR, NT>(xq, xd, xs, blocks, w, stride, wd, &tail[0][0], NR, main_blocks);
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]) + tail[t][r];
}

// q4_0, four blocks per 512-bit vector. The 64 quant bytes of blocks b..b+3 split into low
// nibbles [b 0-15 | b+1 0-15 | b+2 0-15 | b+3 0-15] and high nibbles (elements 16-31 in the same
// arrangement); arrange_activations (below) has put each token's activations in the same
// arrangement once per call, so lane L of both products belongs to block L/4 and neither the
// weights nor the activations are shuffled in the tile.
// (n - 8)·x = n·x - 8·sum(x): each of a block's 4 lanes starts at -2·sum(x).
constexpr int64_t kArrangedGroupBytes = 192;  // per 4 blocks: low-half x, high-half x, 16 starts
inline int64_t q4_arranged_token_bytes(int64_t blocks) { return blocks / 8 * 8 / 4 * kArrangedGroupBytes; }

// The high nibble of every byte, in one instruction where the CPU has GFNI: a GF(2) affine map
// whose matrix moves bits 4-7 to 0-3 (inline assembly, so that no other code of this file is
// compiled for GFNI; CPUs with AVX-512 VNNI but without GFNI, e.g. Cascade Lake, take the shift).
inline __m512i high_nibbles_gfni(__m512i v) {
  const __m512i matrix = _mm512_set1_epi64(0x1020408000000000ll);
  __m512i out;
  asm("vgf2p8affineqb $0, %2, %1, %0" : "=v"(out) : "v"(v), "v"(matrix));
  return out;
}
inline __m512i high_nibbles_shift(__m512i v) {
  return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f));
}

template <int NR, int NT, bool kGfni>
void q4tile_zmm(const int8_t* xq, const float* xd, const int32_t* xs, const int8_t* xa,
                int64_t blocks, const uint8_t* w, int64_t stride, const uint16_t* wd, float* y,
                int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const __m512i nibble = _mm512_set1_epi8(0x0f);
  const int64_t main_blocks = blocks / 8 * 8, xa_stride = q4_arranged_token_bytes(blocks);
  const bool stream = NR == 1 && stride == blocks * 16;  // see kStreamAhead
  for (int64_t g = 0; g < main_blocks; g += 8) {
    __m512 dw[NR], dx[NT];
    load_group_scales<NR, NT>(wd, xd, blocks, g, dw, dx);
    for (int p = 0; p < 2; ++p) {
      const int64_t b = g + 4 * p;
      const int q = 4 * p;  // lanes 0-3: block b, 4-7: b+1, 8-11: b+2, 12-15: b+3
      const __m512i idx = _mm512_set_epi32(q + 3, q + 3, q + 3, q + 3, q + 2, q + 2, q + 2, q + 2,
                                           q + 1, q + 1, q + 1, q + 1, q, q, q, q);
      __m512i w_lo[NR], w_hi[NR];
      __m512 sw[NR];
      for (int r = 0; r < NR; ++r) {
        // one row of a weight matrix: the stream ahead (kStreamAhead); else the next tile's rows
        // at the same offset: q4_0 rows are short (768 bytes for 1536 columns), so
        // prefetch_ahead's 512 would leave most of them to the hardware (interleaved A/B on the
        // 1.5B shape: 26.5 -> 28.0 tok/s; q8_0 keeps prefetch_ahead)
        if (stream) {
          _mm_prefetch(reinterpret_cast<const char*>(w + b * 16) + kStreamAhead, _MM_HINT_T0);
        } else {
          _mm_prefetch(reinterpret_cast<const char*>(w + (r + NR) * stride + b * 16), _MM_HINT_T0);
          prefetch_to_l2(w + (r + 2 * NR) * stride + b * 16);
        }
        const __m512i v = _mm512_loadu_si512(w + r * stride + b * 16);
        w_lo[r] = _mm512_and_si512(v, nibble);
        w_hi[r] = kGfni ? high_nibbles_gfni(v) : high_nibbles_shift(v);
        sw[r] = _mm512_permutexvar_ps(idx, dw[r]);
      }
      for (int t = 0; t < NT; ++t) {
        const int8_t* xg = xa + t * xa_stride + b / 4 * kArrangedGroupBytes;
        const __m512i x_lo = _mm512_loadu_si512(xg), x_hi = _mm512_loadu_si512(xg + 64);
        const __m512i start = _mm512_loadu_si512(xg + 128);
        const __m512 sx = _mm512_permutexvar_ps(idx, dx[t]);
        for (int r = 0; r < NR; ++r) {
          const __m512 dot = _mm512_cvtepi32_ps(
              _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, w_lo[r], x_lo), w_hi[r], x_hi));
          if constexpr (NT == 1)
            acc[r][t] = _mm512_fmadd_ps(dot, sw[r], acc[r][t]);  // sw holds d_w·d_x already
          else
            acc[r][t] = _mm512_fmadd_ps(dot, _mm512_mul_ps(sw[r], sx), acc[r][t]);
        }
      }
    }
  }
  float tail[NT][NR] = {};
  if (main_blocks < blocks)
    qtile<Q4W, NR, NT>(xq, xd, xs, blocks, w, stride, wd, &tail[0][0], NR, main_blocks);
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]) + tail[t][r];
}

// q4_0 tiles read each token's activations per 4 blocks as [elements 0-15 of the 4 blocks |
// elements 16-31 | -2·sum(x) of each block in its 4 lanes] (blocks past the last multiple of 8
// are left to the 256-bit tail, which reads xq). q8_0 tiles read xq as it is.
template <class W>
const int8_t* arrange_activations(const int8_t* xq, const int32_t* xs, int64_t n_tok, int64_t blocks) {
  if constexpr (!std::is_same_v<W, Q4W>) {
    return xq;
  } else {
    thread_local KernelScratch arranged;
    const int64_t groups = blocks / 8 * 2, token_bytes = q4_arranged_token_bytes(blocks);
    arranged.reserve(size_t(n_tok * token_bytes));
    const __m512i lo_idx = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0);   // elements 0-15 of each block
    const __m512i hi_idx = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);  // elements 16-31
    const __m512i lane_block = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t q = 0; q < groups; ++q) {
        const int8_t* src = xq + (t * blocks + 4 * q) * 32;
        int8_t* dst = reinterpret_cast<int8_t*>(arranged.data) + t * token_bytes + q * kArrangedGroupBytes;
        const __m512i x01 = _mm512_loadu_si512(src), x23 = _mm512_loadu_si512(src + 64);
        _mm512_storeu_si512(dst, _mm512_permutex2var_epi64(x01, lo_idx, x23));
        _mm512_storeu_si512(dst + 64, _mm512_permutex2var_epi64(x01, hi_idx, x23));
        const __m128i sums = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xs + t * blocks + 4 * q));
        const __m512i neg2 = _mm512_sub_epi32(_mm512_setzero_si512(),
                                              _mm512_slli_epi32(_mm512_castsi128_si512(sums), 1));
        _mm512_storeu_si512(dst + 128, _mm512_permutexvar_epi32(lane_block, neg2));
      }
    }
    return reinterpret_cast<const int8_t*>(arranged.data);
  }
}

template <class W>
int64_t arranged_token_bytes(int64_t blocks) {
  return std::is_same_v<W, Q4W> ? q4_arranged_token_bytes(blocks) : blocks * 32;
}

// GFNI or the shift: the nibbles are the same either way. cpu_features() is read from inside
// the kernels (a namespace-scope initializer here would run, compiled with AVX-512 flags, when
// the module loads on any CPU).
constexpr int kFloatPrefillRows = 4;

template <class W>
void prefill_qtile(const int8_t* xq, const float* xd, const int32_t* xs, const int8_t* xa,
                   int64_t blocks, const uint8_t* w, int64_t stride, const uint16_t* wd, float* y,
                   int64_t ldy) {
  if constexpr (std::is_same_v<W, Q4W>) {
    if (cpu_features().gfni)
      q4tile_zmm<kPrefillRows, 4, true>(xq, xd, xs, xa, blocks, w, stride, wd, y, ldy);
    else
      q4tile_zmm<kPrefillRows, 4, false>(xq, xd, xs, xa, blocks, w, stride, wd, y, ldy);
  } else {
    q8tile_zmm<kPrefillRows, 4>(xq, xd, xs, blocks, w, stride, wd, y, ldy);
  }
}

// One token, four rows: the same 512-bit tile as prefill, so that a token's result does not
// depend on how many other tokens share its batch (the server's batches must give each request
// what it gets alone), run one row at a time with the stream ahead prefetched: from DRAM, four rows'
// streams at once read slower (one thread: q8_0 19 -> 27 GB/s, q4_0 16 -> 18).
template <class W>
void decode_qtile(const int8_t* xq, const float* xd, const int32_t* xs, const int8_t* xa,
                  int64_t blocks, const uint8_t* w, int64_t stride, const uint16_t* wd, float* y) {
  for (int r = 0; r < 4; ++r) {
    const uint8_t* wr = w + r * stride;
    const uint16_t* wdr = wd + r * blocks;
    if constexpr (std::is_same_v<W, Q4W>) {
      if (cpu_features().gfni)
        q4tile_zmm<1, 1, true>(xq, xd, xs, xa, blocks, wr, stride, wdr, y + r, 0);
      else
        q4tile_zmm<1, 1, false>(xq, xd, xs, xa, blocks, wr, stride, wdr, y + r, 0);
    } else {
      q8tile_zmm<1, 1>(xq, xd, xs, blocks, wr, stride, wdr, y + r, 0);
    }
  }
}

// q8_0: the last 2-3 tokens of a call in one 512-bit tile, the decode tile's float operations
// for each (row, token) (a token's result stays independent of its batch). One thread, Zen 4,
// [65536, 1536], alternated with the per-token path: 2 tokens 1.73 -> 1.22 decode steps, 3
// tokens 2.16 -> 1.48 (tools/bench_ab.py kernel q8_0). q4_0 through the 256-bit qtile measured
// no gain (1.03-1.06x the time; its 512-bit tile with 2-3 tokens not tried): one token at a time.
template <class W>
constexpr bool kSmallBatchTiles = std::is_same_v<W, Q8W>;
template <class W, int NR, int NT>
void small_batch_tile(const int8_t* xq, const float* xd, const int32_t* xs, int64_t blocks, const uint8_t* w,
                      int64_t stride, const uint16_t* wd, float* y, int64_t ldy) {
  static_assert(std::is_same_v<W, Q8W> && kPrefillRows == 4);  // decode_qtile's groups are 4 rows
  q8tile_zmm<NR, NT>(xq, xd, xs, blocks, w, stride, wd, y, ldy);
}

#include "cpu/row_loops.inc"

// Readers of cached rows for the weighted sum: the values [j, j + 16) of row t under mask m
// (lanes past dim are zero). Float formats read as the weight loaders do; q8_0 scales the int8
// quants by their block's scale (16 values never straddle a block: j is a multiple of 16).
template <class W>
struct FloatRows {
  static __m512 load16(const void* rows, const uint16_t*, int64_t t, int64_t j, int64_t ld, __mmask16 m) {
    return W::load16(static_cast<const typename W::T*>(rows) + t * ld + j, m);
  }
};
struct Q8Rows {
  static __m512 load16(const void* rows, const uint16_t* scales, int64_t t, int64_t j, int64_t ld, __mmask16 m) {
    const __m128i q = _mm_maskz_loadu_epi8(m, static_cast<const int8_t*>(rows) + t * ld + j);
    const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    return _mm512_mul_ps(v, _mm512_set1_ps(_cvtsh_ss(scales[t * (ld / 32) + j / 32])));
  }
};

// NH heads at once: each 16-value slice of a row is loaded once for all of them. Per head the
// sum runs over t in order, as for one head alone.
template <class R, int NH>
void weighted_sum_heads(const float* p, int64_t ldp, const void* rows, const uint16_t* scales,
                        int64_t count, int64_t dim, int64_t ld, float* out, int64_t ldo) {
  for (int64_t j = 0; j < dim; j += 16) {
    const __mmask16 m = dim - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (dim - j)) - 1);
    __m512 acc[NH];
    for (int h = 0; h < NH; ++h) acc[h] = _mm512_setzero_ps();
    for (int64_t t = 0; t < count; ++t) {
      const __m512 row = R::load16(rows, scales, t, j, ld, m);
      for (int h = 0; h < NH; ++h) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[h * ldp + t]), row, acc[h]);
    }
    for (int h = 0; h < NH; ++h)
      _mm512_mask_storeu_ps(out + h * ldo + j, m,
                            _mm512_add_ps(_mm512_maskz_loadu_ps(m, out + h * ldo + j), acc[h]));
  }
}

#include "cpu/weighted_sum_heads.inc"

}  // namespace

const MatmulKernels kMatmulAvx512 = {rows<F32W>, rows<BF16W>, rows<F16W>, qrows<Q8W>, qrows<Q4W>,
                                     weighted_sum<FloatRows<F32W>>, weighted_sum<FloatRows<BF16W>>,
                                     weighted_sum<FloatRows<F16W>>, weighted_sum<Q8Rows>};

}  // namespace r1lite
