// Avx512 kernels of GGUF's block formats q2_k, q3_k, iq4_xs (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// Every kernel computes, per super-block of 256 values, the exact integer dot of the weights'
// integer quants (times their integer sub-block scales) with the activations' int8 quants, and
// adds it times d_w * d_x to an f32 accumulator of its (row, token). The per-(row, token)
// arithmetic is the same in the one-token and the many-token tiles, so a token's result does not
// depend on its batch.
//
// The activations (ActQ8_K rows) are first rearranged once per call (per thread), in the order
// the weight bytes come in, so that the tiles read each 64-byte piece with one load:
//   q2_k / q3_k: a 2-bit field s (s < 4) of qs[32h + l] is value 128h + 32s + l, so the 64 qs
//     bytes, shifted by 2s, hold values [32s, 32s + 32) and [128 + 32s, 160 + 32s): piece s
//     of the arranged block is those 64 activations.
//   iq4_xs: 16 qs bytes per sub-block of 32 (low nibbles the first 16 values, high the last 16):
//     a 64-byte load covers 4 sub-blocks, one per 128-bit lane, so the arranged block holds, per
//     4 sub-blocks, their first 16 activations and their last 16, one sub-block per lane.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/blocks.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"


// ---- q2_k and q3_k: arranged activations ----
// Per block: pieces s = 0..3 (64 bytes: values [32s, 32s+32) then [128+32s, 160+32s)), then 16
// int16 bsums (times kBsumScale), then d.
constexpr int64_t kK2ActBytes = 320;
constexpr int64_t kK2Bsums = 256, kK2D = 288;

template <int kBsumScale>
const uint8_t* arrange_k2(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch buf;
  uint8_t* out = buf.reserve(size_t(n_tok * blocks * kK2ActBytes));
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t b = 0; b < blocks; ++b) {
      const ActQ8_K* a = act_block(x, x_row_bytes, t, b);
      uint8_t* dst = out + (t * blocks + b) * kK2ActBytes;
      for (int s = 0; s < 4; ++s) {
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs + 32 * s));
        const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->qs + 128 + 32 * s));
        _mm512_storeu_si512(dst + 64 * s, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
      }
      __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->bsums));
      bs = _mm256_mullo_epi16(bs, _mm256_set1_epi16(int16_t(kBsumScale)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + kK2Bsums), bs);
      std::memcpy(dst + kK2D, &a->d, 4);
    }
  return out;
}

// ---- q3_k ----
// value = d * (sc - 32) * q with q = low2 - 4 * (hmask bit clear) in [-4, 3]. With u = low2 + 4 *
// hbit in [0, 7] (unsigned, as maddubs wants), q = u - 4, so per sub-block j of 16:
//   sum q·x = sum u·x - 4 * bsums[j]
// and the -4·bsums term goes through the same scale multiply (bsums pre-scaled by -4).
// int16 bounds: maddubs pairs |u·x + u·x| <= 2·7·127 = 1778; bsums·4 <= 4·16·127 = 8128; dpwssd
// takes int16 × int16 pairs into int32: no saturating step anywhere. The int32 sum of a block is
// at most 256·7·127·32 + 16·8128·32 < 2^23.
struct Q3K {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ3_K), kActBytes = kK2ActBytes, kActD = kK2D;
  static const uint8_t* arrange(const void* x, int64_t xrb, int64_t n_tok, int64_t blocks) {
    return arrange_k2<-4>(x, xrb, n_tok, blocks);
  }
  struct Row {
    __m512i u[4];   // piece s: the 64 values u in [0, 7]
    __m512i sc[4];  // piece s: the int16 scale of each maddubs lane (one sub-block per 128 bits)
    __m256i sc16;   // the 16 scales as int16, in sub-block order (for the bsums)
    float d;
  };
  static void load(const uint8_t* p, Row& row) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(p);
    const __m512i qs = _mm512_loadu_si512(b->qs);
    // hmask bit 4h + s belongs to value 128h + 32s + l: the upper half (h = 1) shifted down by 4
    // so that piece s tests bit s in both halves.
    const __m256i hm256 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->hmask));
    const __m512i hm = _mm512_inserti64x4(_mm512_castsi256_si512(hm256), _mm256_srli_epi16(hm256, 4), 1);
    const __m512i three = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    for (int s = 0; s < 4; ++s) {
      const __m512i low2 = _mm512_and_si512(_mm512_srli_epi16(qs, 2 * s), three);
      const __mmask64 high = _mm512_test_epi8_mask(hm, _mm512_set1_epi8(char(1 << s)));
      row.u[s] = _mm512_mask_add_epi8(low2, high, low2, four);
    }
    // The 16 6-bit scales (blocks.h): low 4 bits from bytes 0-7 (low nibble j < 8, high nibble
    // j >= 8), high 2 bits of scale j from byte 8 + j % 4 at bit 2 * (j / 4). 12 bytes, read
    // masked (the block ends 2 bytes after them).
    const __m128i raw = _mm_maskz_loadu_epi8(0x0fff, b->scales);
    const __m128i low4 = _mm_and_si128(_mm_unpacklo_epi64(raw, _mm_srli_epi16(raw, 4)), _mm_set1_epi8(0x0f));
    const __m128i high2 = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(raw, 0xaa), _mm_setr_epi32(0, 2, 4, 6)),
                                        _mm_set1_epi8(3));
    const __m128i sc8 = _mm_sub_epi8(_mm_or_si128(low4, _mm_slli_epi32(high2, 4)), _mm_set1_epi8(32));
    row.sc16 = _mm256_cvtepi8_epi16(sc8);
    // 128-bit lane k of piece s is sub-block 2s + (k & 1) + 8 (k >> 1): lane k of sc32 gets those
    // 4 scales (s = 0..3) as int32, and piece s broadcasts element s's low int16 in each lane.
    const __m512i sc32 = _mm512_cvtepi8_epi32(
        _mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15)));
    for (int s = 0; s < 4; ++s)
      row.sc[s] = _mm512_shuffle_epi8(sc32, _mm512_set1_epi16(int16_t((4 * s + 1) << 8 | 4 * s)));
    row.d = f16(b->d);
  }
  static __m512 dot(const Row& row, const uint8_t* xb, float dx, __m512 acc) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + kK2Bsums));
    __m512i sum = _mm512_zextsi256_si512(_mm256_madd_epi16(row.sc16, bs));  // -4·sum_j sc_j·bsums_j
    for (int s = 0; s < 4; ++s) {
      const __m512i prod = _mm512_maddubs_epi16(row.u[s], _mm512_loadu_si512(xb + 64 * s));
      sum = _mm512_dpwssd_epi32(sum, prod, row.sc[s]);
    }
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(row.d * dx), acc);
  }
};

// ---- q2_k ----
// value = d * sc * q - dmin * m with q in [0, 3], sc and m in [0, 15] (scales[j]: low nibble sc,
// high nibble m). Since sc * q <= 45 fits a byte, the weights are multiplied by their scales
// before the dot: a pshufb table per 128-bit lane (one sub-block per lane and piece) maps
// 4s + q to sc * q, and vpdpbusd sums (sc·q)·x straight into int32 lanes. The mins term
// dmin · sum_j m_j · bsums_j is one int16 madd (|m·bsums| pairs <= 2·15·2032 < 2^16).
struct Q2K {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ2_K), kActBytes = kK2ActBytes, kActD = kK2D;
  static const uint8_t* arrange(const void* x, int64_t xrb, int64_t n_tok, int64_t blocks) {
    return arrange_k2<1>(x, xrb, n_tok, blocks);
  }
  struct Row {
    __m512i w[4];  // piece s: sc * q per value, unsigned bytes
    __m256i m16;   // the 16 mins as int16
    float d, dmin;
  };
  static void load(const uint8_t* p, Row& row) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(p);
    const __m512i qs = _mm512_loadu_si512(b->qs);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    // The table: in 128-bit lane k, bytes 4s + e (e < 4) = e * sc of sub-block
    // j = 2s + (k & 1) + 8 (k >> 1) (lane k of piece s). A pshufb puts sc_j in the low byte of
    // both int16 of each 4-byte group, and a multiply by (256, 2 + 3·256) makes (0, sc, 2sc, 3sc).
    alignas(64) static const int8_t kSel[64] = {
        0, -1, 0, -1, 2, -1, 2, -1, 4, -1, 4, -1, 6, -1, 6, -1,
        1, -1, 1, -1, 3, -1, 3, -1, 5, -1, 5, -1, 7, -1, 7, -1,
        8, -1, 8, -1, 10, -1, 10, -1, 12, -1, 12, -1, 14, -1, 14, -1,
        9, -1, 9, -1, 11, -1, 11, -1, 13, -1, 13, -1, 15, -1, 15, -1};
    const __m512i sel = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(raw), _mm512_load_si512(kSel));
    const __m512i table = _mm512_mullo_epi16(_mm512_and_si512(sel, _mm512_set1_epi16(0x0f)),
                                             _mm512_set1_epi32(0x03020100));
    const __m512i three = _mm512_set1_epi8(3);
    for (int s = 0; s < 4; ++s) {
      // (qs >> 2s) & 3 | 4s: the table index (ternary logic 0xEA = (a & b) | c)
      const __m512i idx = _mm512_ternarylogic_epi32(_mm512_srli_epi16(qs, 2 * s), three,
                                                    _mm512_set1_epi8(char(4 * s)), 0xea);
      row.w[s] = _mm512_shuffle_epi8(table, idx);
    }
    row.m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
    row.d = f16(b->d);
    row.dmin = f16(b->dmin);
  }
  static __m512 dot(const Row& row, const uint8_t* xb, float dx, __m512 acc) {
    __m512i sum = _mm512_setzero_si512();
    for (int s = 0; s < 4; ++s) sum = _mm512_dpbusd_epi32(sum, row.w[s], _mm512_loadu_si512(xb + 64 * s));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + kK2Bsums));
    const __m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(row.m16, bs));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(row.d * dx), acc);
    return _mm512_fmadd_ps(_mm512_zextps256_ps512(mins), _mm512_set1_ps(-row.dmin * dx), acc);
  }
};

// ---- iq4_xs ----
// value = d * (ls - 32) * table[nibble]. The table + 128 is unsigned (1..241), so vpdpbusd takes
// it as the u8 operand: (t + 128)·x = t·x + 128·x, and each int32 lane starts at -32 times its
// sub-block's activation sum (4 lanes per sub-block: -128·sum in all), leaving the exact t·x.
// Products are summed in int32 (no int16 step). Arranged activations per block, for the 4
// sub-blocks 4g..4g+3 (g < 2): their values 0-15 (one sub-block per 128-bit lane), their values
// 16-31, then the int32 starts; then d.
constexpr int64_t kIq4ActBytes = 448, kIq4Start = 256, kIq4D = 384;

const uint8_t* arrange_iq4(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch buf;
  uint8_t* out = buf.reserve(size_t(n_tok * blocks * kIq4ActBytes));
  const __m512i lo_idx = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0);   // values 0-15 of 4 sub-blocks
  const __m512i hi_idx = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);  // values 16-31
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t b = 0; b < blocks; ++b) {
      const ActQ8_K* a = act_block(x, x_row_bytes, t, b);
      uint8_t* dst = out + (t * blocks + b) * kIq4ActBytes;
      // sub-block sums (bsums in pairs), times -32, four lanes each
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a->bsums));
      const __m256i sums = _mm256_madd_epi16(bs, _mm256_set1_epi16(-32));  // 8 sub-blocks
      for (int g = 0; g < 2; ++g) {
        const __m512i x01 = _mm512_loadu_si512(a->qs + 128 * g), x23 = _mm512_loadu_si512(a->qs + 128 * g + 64);
        _mm512_storeu_si512(dst + 64 * (2 * g), _mm512_permutex2var_epi64(x01, lo_idx, x23));
        _mm512_storeu_si512(dst + 64 * (2 * g + 1), _mm512_permutex2var_epi64(x01, hi_idx, x23));
        const __m512i lane = _mm512_set_epi32(4 * g + 3, 4 * g + 3, 4 * g + 3, 4 * g + 3, 4 * g + 2, 4 * g + 2,
                                              4 * g + 2, 4 * g + 2, 4 * g + 1, 4 * g + 1, 4 * g + 1, 4 * g + 1,
                                              4 * g, 4 * g, 4 * g, 4 * g);
        _mm512_storeu_si512(dst + 256 + 64 * g, _mm512_permutexvar_epi32(lane, _mm512_castsi256_si512(sums)));
      }
      std::memcpy(dst + kIq4D, &a->d, 4);
    }
  return out;
}

struct IQ4XS {
  static constexpr int64_t kBlockBytes = sizeof(BlockIQ4_XS), kActBytes = kIq4ActBytes, kActD = kIq4D;
  static const uint8_t* arrange(const void* x, int64_t xrb, int64_t n_tok, int64_t blocks) {
    return arrange_iq4(x, xrb, n_tok, blocks);
  }
  struct Row {
    __m512i lo[2], hi[2];  // table + 128 of the low / high nibbles of qs[64g, 64g + 64)
    __m512i sc[2];         // ls - 32 of sub-block 4g + k in int32 lanes 4k..4k+3
    float d;
  };
  static void load(const uint8_t* p, Row& row) {
    const auto* b = reinterpret_cast<const BlockIQ4_XS*>(p);
    const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(
        1, 24, 45, 63, 79, 93, 106, 118, -127, -115, -103, -90, -75, -59, -39, -15));  // + 128 (mod 256)
    const __m512i nib = _mm512_set1_epi8(0x0f);
    for (int g = 0; g < 2; ++g) {
      const __m512i q = _mm512_loadu_si512(b->qs + 64 * g);
      row.lo[g] = _mm512_shuffle_epi8(table, _mm512_and_si512(q, nib));
      row.hi[g] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), nib));
    }
    // scale of sub-block i: bits 4i..4i+3 of the 4 scales_l bytes, and bits 2i, 2i+1 of
    // scales_h as bits 4, 5
    uint32_t sl;
    std::memcpy(&sl, b->scales_l, 4);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i low4 = _mm256_srlv_epi32(_mm256_set1_epi32(int(sl)), _mm256_slli_epi32(lanes, 2));
    const __m256i high2 = _mm256_srlv_epi32(_mm256_set1_epi32(int(uint32_t(b->scales_h) << 4)),
                                            _mm256_slli_epi32(lanes, 1));
    const __m256i ls = _mm256_ternarylogic_epi32(low4, _mm256_set1_epi32(0x0f),
                                                 _mm256_and_si256(high2, _mm256_set1_epi32(0x30)), 0xea);
    const __m512i sc8 = _mm512_castsi256_si512(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
    row.sc[0] = _mm512_permutexvar_epi32(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), sc8);
    row.sc[1] = _mm512_permutexvar_epi32(_mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4), sc8);
    row.d = f16(b->d);
  }
  static __m512 dot(const Row& row, const uint8_t* xb, float dx, __m512 acc) {
    __m512i sum = _mm512_setzero_si512();
    for (int g = 0; g < 2; ++g) {
      __m512i part = _mm512_loadu_si512(xb + kIq4Start + 64 * g);
      part = _mm512_dpbusd_epi32(part, row.lo[g], _mm512_loadu_si512(xb + 128 * g));
      part = _mm512_dpbusd_epi32(part, row.hi[g], _mm512_loadu_si512(xb + 128 * g + 64));
      // |part| <= 8·127·127 per lane, times |ls - 32| <= 32: exact in int32
      sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(part, row.sc[g]));
    }
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(row.d * dx), acc);
  }
};

// ---- tiles and row loops ----

// NR rows x NT tokens: each row's block is decoded once (F::load) and dotted with each token;
// the rows of the next tile are prefetched at this block's offset, a little ahead of their use
// (the weight rows are short streams that the hardware prefetcher alone leaves half idle).
template <class F, int NR, int NT>
void tile(const uint8_t* xa, int64_t xa_stride, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
          float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = w + b * F::kBlockBytes;
    typename F::Row row[NR];
    for (int r = 0; r < NR; ++r) {
      prefetch_next<F::kBlockBytes, NR>(wb + r * w_row_bytes, w_row_bytes);
      F::load(wb + r * w_row_bytes, row[r]);
    }
    for (int t = 0; t < NT; ++t) {
      const uint8_t* xb = xa + t * xa_stride + b * F::kActBytes;
      float dx;
      std::memcpy(&dx, xb + F::kActD, 4);
      for (int r = 0; r < NR; ++r) acc[r][t] = F::dot(row[r], xb, dx, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

constexpr int kPrefillTokens = 8, kPrefillRows = 2;

template <class F>
void kernel(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
            int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const uint8_t* xa = F::arrange(x, x_row_bytes, n_tok, blocks);
  const int64_t xs = blocks * F::kActBytes;
  const auto* wp = static_cast<const uint8_t*>(w);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + kPrefillTokens <= n_tok; t += kPrefillTokens) {
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        tile<F, kPrefillRows, kPrefillTokens>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks,
                                              y + t * ldy + r, ldy);
      for (; r < re; ++r)
        tile<F, 1, kPrefillTokens>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks, y + t * ldy + r, ldy);
    }
    for (; t < n_tok; ++t) {
      // One row at a time, the stream ahead prefetched (kStreamAhead): from DRAM, several rows'
      // streams at once read at half the bandwidth (measured 9-10 vs 20-22 GB/s on one thread for
      // q4_k / q6_k).
      for (int64_t r = rb; r < re; ++r) tile<F, 1, 1>(xa + t * xs, xs, wp + r * w_row_bytes, w_row_bytes, blocks, y + t * ldy + r, 0);
    }
  }
}

}  // namespace

const BlockKernel kKQuantsLowAvx512[] = {
    {DType::Q3_K, kernel<Q3K>},
    {DType::Q2_K, kernel<Q2K>},
    {DType::IQ4_XS, kernel<IQ4XS>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
