// Avx512 kernels of GGUF's block formats gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// gguf_q8_0 has its own tile (below: 16 blocks per step, one int32 lane per block). The five
// nibble formats go through one tile, four blocks (128 values) at a time:
//  - Every block size (18, 20, 22, 24, 34 bytes) is even, so every field of the four blocks
//    starts on a 16-bit word of the group; two (q8_0: four) unaligned 512-bit loads cover the
//    group, and vpermt2w (AVX512BW) gathers from them the quant bytes of the four blocks, their
//    f16 scales (and mins, and q5's high bits), in one instruction each.
//  - The quants become unsigned bytes u = q + offset in two vectors: lo = values 0-15 of blocks
//    0..3 (one 128-bit lane per block), hi = values 16-31. The activations are arranged the same
//    way once per call (arrange below), so lane L of both products belongs to block L/4.
//  - VNNI vpdpbusd sums u8·s8 products straight into int32 (no int16 step, nothing saturates:
//    |lane| <= 8·255·127 + |start| < 2^20). The offset is removed exactly with the activations'
//    block sums: (u - c)·x = u·x - c·sum(x), so each of a block's 4 lanes starts at
//    -(c/4)·sum(x), computed once per token and shared by every row.
//  - Per block the int32 dot is scaled by d_w·d_x in f32; the min formats add m_w·(d_x·sum(x)).
// The one-row tiles of small calls (fewer than kSmallBatch tokens: decode, verification passes)
// and the prefill tiles do the same float operations in the same order for each (row, token), so
// a token's result does not depend on its batch.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/blocks.h"
#include "core/cpu_features.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

constexpr int kGroup = 4;  // blocks per step

// A permute index for vpermt2w: 32 words, each 0-31 (first source) or 32-63 (second).
struct WordIdx {
  uint16_t v[32];
};
inline __m512i load_idx(const WordIdx& i) { return _mm512_loadu_si512(i.v); }

// Source index of group word s when the first source holds words [0, 32) and the second words
// [second, second + 32).
constexpr uint16_t from_pair(int s, int second) { return uint16_t(s < 32 ? s : 32 + s - second); }

// Words [off, off + 32) of the group at p, reading only the group's `valid` bytes (the last,
// partial group of a row: masked-off words read nothing and come back zero).
template <bool kFull>
inline __m512i load_words(const uint8_t* p, int off_words, int valid_words) {
  if constexpr (kFull) {
    (void)valid_words;
    return _mm512_loadu_si512(p + 2 * off_words);
  } else {
    const int n = valid_words - off_words;
    const __mmask32 m = n >= 32 ? __mmask32(~0u) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1);
    return _mm512_maskz_loadu_epi16(m, p + 2 * off_words);
  }
}

// A group's weights as the tile reads them.
struct GroupW {
  __m512i lo, hi;  // unsigned quants u: values 0-15 / 16-31 of block L/16 in byte L
  __m512 d;        // f32 lane L: scale of block L/4
  __m512 m;        // min formats: min of block L/4
};

// The high nibble of every byte. GFNI (where the CPU has it) does it in one instruction: an
// affine map whose matrix moves bits 4-7 to 0-3 (inline assembly, so that nothing else here is
// compiled for GFNI).
template <bool kGfni>
inline __m512i high_nibbles(__m512i v) {
  if constexpr (kGfni) {
    const __m512i matrix = _mm512_set1_epi64(0x1020408000000000ll);
    __m512i out;
    asm("vgf2p8affineqb $0, %2, %1, %0" : "=v"(out) : "v"(v), "v"(matrix));
    return out;
  } else {
    return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f));
  }
}

// ---- the formats ----

// q8_0 (34 bytes = 17 words: d, 32 int8 quants). A group is 68 words; four loads at words 0, 2,
// 34, 36 cover it, and each permute draws from two of them. Weights made unsigned by flipping
// the sign bit: u = q + 128, offset 128.
constexpr WordIdx q8_lo_idx() {  // values 0-15: blocks 0,1 from A (words 0..), 2,3 from C (34..)
  WordIdx x{};
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 8; ++i) {
      const int s = 17 * k + 1 + i;
      x.v[8 * k + i] = uint16_t(k < 2 ? s : 32 + s - 34);
    }
  return x;
}
constexpr WordIdx q8_hi_idx() {  // values 16-31: blocks 0,1 from B (words 2..), 2,3 from D (36..)
  WordIdx x{};
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 8; ++i) {
      const int s = 17 * k + 9 + i;
      x.v[8 * k + i] = uint16_t(k < 2 ? s - 2 : 32 + s - 36);
    }
  return x;
}
constexpr WordIdx q8_d_idx() {  // word j < 16: d of block j/4 (A, C)
  WordIdx x{};
  for (int j = 0; j < 16; ++j) {
    const int k = j / 4, s = 17 * k;
    x.v[j] = uint16_t(k < 2 ? s : 32 + s - 34);
  }
  return x;
}
struct Q8_0F {
  static constexpr int kBytes = 34, kOffset = 128;
  static constexpr bool kMin = false;
  static constexpr WordIdx kLo = q8_lo_idx(), kHi = q8_hi_idx(), kD = q8_d_idx();

  template <bool kFull, bool kGfni>
  static void load(const uint8_t* p, int valid_words, GroupW& g) {
    const __m512i a = load_words<kFull>(p, 0, valid_words), b = load_words<kFull>(p, 2, valid_words);
    const __m512i c = load_words<kFull>(p, 34, valid_words), e = load_words<kFull>(p, 36, valid_words);
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    g.lo = _mm512_xor_si512(_mm512_permutex2var_epi16(a, load_idx(kLo), c), flip);
    g.hi = _mm512_xor_si512(_mm512_permutex2var_epi16(b, load_idx(kHi), e), flip);
    g.d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, load_idx(kD), c)));
  }
};

// The nibble formats' permutes (see NibbleF): a group of blocks of `words` words, loaded at word
// 0 and at word 4·words - 32.
constexpr WordIdx nibble_qs_idx(int words, int qs) {  // the 64 nibble bytes, block k in words 8k..8k+7
  WordIdx x{};
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 8; ++i) x.v[8 * k + i] = from_pair(k * words + qs + i, 4 * words - 32);
  return x;
}
constexpr WordIdx nibble_scale_idx(int words, bool min) {  // words j < 16: d of block j/4; 16 + j: its min
  WordIdx x{};
  for (int j = 0; j < 16; ++j) {
    x.v[j] = from_pair(j / 4 * words, 4 * words - 32);
    x.v[16 + j] = from_pair(j / 4 * words + (min ? 1 : 0), 4 * words - 32);
  }
  return x;
}
constexpr WordIdx nibble_qh_idx(int words, int qh) {  // q5: block k's 4 high-bit bytes at the start of lane k
  WordIdx x{};
  if (qh < 0) return x;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 8; ++i) x.v[8 * k + i] = from_pair(k * words + qh + (i & 1), 4 * words - 32);
  return x;
}

// The nibble formats (q4_0, q4_1, q5_0, q5_1, iq4_nl): blocks of kWords words with d at word 0,
// the min (if any) at word 1, q5's 32 high bits at words kQh, kQh + 1 and the 16 nibble bytes at
// words kQs..kQs+7. A group is 4·kWords <= 48 words: loads at word 0 and at 4·kWords - 32
// cover it.
template <class Block, int kQs, int kQh, bool kMinFmt, int kOff, bool kTable>
struct NibbleF {
  static constexpr int kBytes = int(sizeof(Block)), kWords = kBytes / 2, kSecond = 4 * kWords - 32;
  static constexpr int kOffset = kOff;
  static constexpr bool kMin = kMinFmt;
  static constexpr WordIdx kQsI = nibble_qs_idx(kWords, kQs), kScaleI = nibble_scale_idx(kWords, kMinFmt),
                           kQhI = nibble_qh_idx(kWords, kQh);
  static constexpr bool kScalesInFirst = 3 * kWords + (kMinFmt ? 1 : 0) < 32;

  template <bool kFull, bool kGfni>
  static void load(const uint8_t* p, int valid_words, GroupW& g) {
    const __m512i a = load_words<kFull>(p, 0, valid_words), b = load_words<kFull>(p, kSecond, valid_words);
    const __m512i qs = _mm512_permutex2var_epi16(a, load_idx(kQsI), b);
    // block k's 16 bytes hold its values j (low nibble) and j + 16 (high): lane k of lo / hi
    g.lo = _mm512_and_si512(qs, _mm512_set1_epi8(0x0f));
    g.hi = high_nibbles<kGfni>(qs);
    if constexpr (kTable) {
      // iq4_nl: nibble -> kIq4nlValues + 128 (unsigned), an in-lane byte shuffle
      const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(
          1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166, (char)181,
          (char)197, (char)217, (char)241));
      g.lo = _mm512_shuffle_epi8(table, g.lo);
      g.hi = _mm512_shuffle_epi8(table, g.hi);
    }
    if constexpr (kQh >= 0) {
      // q5: bit j of the block's 32-bit qh is the fifth bit of value j. Spread the qh bytes so
      // that byte i of lane k of lo holds qh byte i/8 (hi: byte 2 + i/8), test bit i%8, add 16.
      const __m512i qh = _mm512_permutex2var_epi16(a, load_idx(kQhI), b);
      const __m512i spread_lo = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
      const __m512i spread_hi = _mm512_broadcast_i32x4(_mm_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
      const __m512i bit = _mm512_broadcast_i32x4(
          _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, (char)128, 1, 2, 4, 8, 16, 32, 64, (char)128));
      const __m512i sixteen = _mm512_set1_epi8(16);
      g.lo = _mm512_mask_add_epi8(g.lo, _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, spread_lo), bit), g.lo, sixteen);
      g.hi = _mm512_mask_add_epi8(g.hi, _mm512_test_epi8_mask(_mm512_shuffle_epi8(qh, spread_hi), bit), g.hi, sixteen);
    }
    // the scales (and mins) of q4_0, q4_1, iq4_nl all lie in the first load: one source
    const __m512i sc = kScalesInFirst ? _mm512_permutexvar_epi16(load_idx(kScaleI), a)
                                      : _mm512_permutex2var_epi16(a, load_idx(kScaleI), b);
    g.d = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));
    if constexpr (kMinFmt) g.m = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(sc, 1));
  }
};

using Q4_0F = NibbleF<BlockQ4_0, 1, -1, false, 8, false>;
using Q4_1F = NibbleF<BlockQ4_1, 2, -1, true, 0, false>;
using Q5_0F = NibbleF<BlockQ5_0, 3, 1, false, 16, false>;
using Q5_1F = NibbleF<BlockQ5_1, 4, 2, true, 0, false>;
using IQ4NLF = NibbleF<BlockIQ4_NL, 1, -1, false, 128, true>;

// ---- the activations, arranged once per call ----

// Per token and group of 4 blocks: x values 0-15 of the 4 blocks (64 bytes), values 16-31 (64),
// the int32 start of each lane (-(offset/4)·sum(x) of its block), d_x of each lane's block, and
// for the min formats d_x·sum(x) in the first lane of each block (0 in the others).
constexpr int64_t kXLo = 0, kXHi = 64, kXStart = 128, kXd = 192, kXm = 256;
template <class F>
constexpr int64_t group_bytes() { return F::kMin ? 320 : 256; }

template <class F>
const uint8_t* arrange(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks, int64_t token_bytes) {
  thread_local KernelScratch arranged;
  arranged.reserve(size_t(n_tok * token_bytes));
  const int64_t groups = (blocks + kGroup - 1) / kGroup;
  for (int64_t t = 0; t < n_tok; ++t) {
    const auto* act = reinterpret_cast<const ActQ8_32*>(static_cast<const uint8_t*>(x) + t * x_row_bytes);
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* dst = arranged.data + t * token_bytes + g * group_bytes<F>();
      std::memset(dst, 0, size_t(group_bytes<F>()));  // a partial group's missing blocks: zero
      for (int k = 0; k < kGroup && g * kGroup + k < blocks; ++k) {
        const ActQ8_32& a = act[g * kGroup + k];
        std::memcpy(dst + kXLo + 16 * k, a.qs, 16);
        std::memcpy(dst + kXHi + 16 * k, a.qs + 16, 16);
        const int32_t start = -(F::kOffset / 4) * a.sum;
        for (int l = 0; l < 4; ++l) {
          std::memcpy(dst + kXStart + 4 * (4 * k + l), &start, 4);
          std::memcpy(dst + kXd + 4 * (4 * k + l), &a.d, 4);
        }
        if constexpr (F::kMin) {
          const float dm = a.d * float(a.sum);
          std::memcpy(dst + kXm + 4 * (4 * k), &dm, 4);
        }
      }
    }
  }
  return arranged.data;
}

// ---- the tile ----

// One group for NR rows x NT tokens. kFull: a whole group (else the row's last, partial one:
// valid_words of the group's words exist).
template <class F, int NR, int NT, bool kFull, bool kGfni>
inline void group_step(const uint8_t* xg, int64_t xa_stride, const uint8_t* w, int64_t stride,
                       int valid_words, __m512 (&acc)[NR][NT]) {
  GroupW wv[NR];
  for (int r = 0; r < NR; ++r) {
    // every line the tile reads next at this offset (a group is 72 to 136 bytes; asking for one
    // line per group left q8_0's decode at half speed)
    prefetch_next<kGroup * F::kBytes, NR>(w + r * stride, stride);
    F::template load<kFull, kGfni>(w + r * stride, valid_words, wv[r]);
  }
  for (int t = 0; t < NT; ++t) {
    const uint8_t* xt = xg + t * xa_stride;
    const __m512i x_lo = _mm512_loadu_si512(xt + kXLo), x_hi = _mm512_loadu_si512(xt + kXHi);
    const __m512i start = F::kOffset ? _mm512_loadu_si512(xt + kXStart) : _mm512_setzero_si512();
    const __m512 dx = _mm512_loadu_ps(xt + kXd);
    __m512 mx = _mm512_setzero_ps();
    if constexpr (F::kMin) mx = _mm512_loadu_ps(xt + kXm);
    for (int r = 0; r < NR; ++r) {
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, wv[r].lo, x_lo), wv[r].hi, x_hi);
      acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wv[r].d, dx), acc[r][t]);
      if constexpr (F::kMin) acc[r][t] = _mm512_fmadd_ps(wv[r].m, mx, acc[r][t]);
    }
  }
}

template <class F, int NR, int NT, bool kGfni>
void tile(const uint8_t* xa, int64_t xa_stride, int64_t blocks, const uint8_t* w, int64_t stride,
          float* y, int64_t ldy) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  constexpr int64_t kStep = kGroup * F::kBytes;
  const int64_t full = blocks / kGroup;
  for (int64_t g = 0; g < full; ++g)
    group_step<F, NR, NT, true, kGfni>(xa + g * group_bytes<F>(), xa_stride, w + g * kStep, stride, 0, acc);
  if (const int64_t rest = blocks - full * kGroup)
    group_step<F, NR, NT, false, kGfni>(xa + full * group_bytes<F>(), xa_stride, w + full * kStep, stride,
                                        int(rest * F::kBytes / 2), acc);
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

constexpr int kPrefillRows = 4;    // 4 rows x 4 tokens: 16 accumulators + the rows' operands

template <class F, bool kGfni>
void rows_isa(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t stride,
              int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  const int64_t xa_stride = (blocks + kGroup - 1) / kGroup * group_bytes<F>();
  const uint8_t* xa = arrange<F>(x, x_row_bytes, n_tok, blocks, xa_stride);
  if (n_tok < kSmallBatch) {
    // One row at a time, each group unpacked once for all the tokens, the stream ahead
    // prefetched (kStreamAhead): from DRAM, several rows' streams at once read at half the
    // bandwidth (measured 9-10 vs 20-22 GB/s on one thread for q4_k / q6_k).
    with_token_count<kSmallBatch - 1>(n_tok, [&](auto nt) {
      for (int64_t r = r0; r < r1; ++r)
        tile<F, 1, decltype(nt)::value, kGfni>(xa, xa_stride, blocks, w + r * stride, stride, y + r, ldy);
    });
    return;
  }
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t = 0;
    for (; t + 4 <= n_tok; t += 4) {
      int64_t r = rb;
      for (; r + kPrefillRows <= re; r += kPrefillRows)
        tile<F, kPrefillRows, 4, kGfni>(xa + t * xa_stride, xa_stride, blocks, w + r * stride, stride,
                                        y + t * ldy + r, ldy);
      for (; r < re; ++r)
        tile<F, 1, 4, kGfni>(xa + t * xa_stride, xa_stride, blocks, w + r * stride, stride, y + t * ldy + r, ldy);
    }
    // the last 1-3 tokens, the block's rows (in cache now) one at a time
    with_token_count<3>(n_tok - t, [&](auto nt) {
      for (int64_t r = rb; r < re; ++r)
        tile<F, 1, decltype(nt)::value, kGfni>(xa + t * xa_stride, xa_stride, blocks, w + r * stride, stride,
                                               y + t * ldy + r, ldy);
    });
  }
}

// ---- gguf_q8_0: 16 blocks per step, one int32 lane per block ----
// The group tile above spends, per 4 blocks and (row, token), 2 vpdpbusd and then a conversion,
// a multiply and an fma on lanes that each hold a quarter of a block. q8_0 (no nibbles to
// unpack) goes through a tile whose int32 lane L is block L of a super-group of 16 blocks:
// vector j (j < 8) holds bytes 4j..4j+3 of each block's quants, so 8 chained vpdpbusd leave each
// lane the block's whole dot, and the float steps run once per 16 blocks. Rows are transposed so
// once per block of rows into a small buffer, read by every token tile; the activations once per
// call. Weights unsigned (u = q + 128, the sign bit flipped); each lane starts at -128·sum(x)
// (|lane| <= 32·255·127 + 128·32·127 < 2^21).
// Per (row, token) the float steps are, super-group after super-group,
//   acc = fma(float(dot), d_w·d_x, acc)      (16 lanes: block L of each super-group)
// and y = sum16(acc), in the decode step, in every tile and on AMX (below) alike.
constexpr int kSg = 16;               // blocks per super-group
constexpr int64_t kQ8XBytes = 640;    // per token and super-group: x[8][64], start[16], d[16]
constexpr int64_t kQ8WBytes = 576;    // per row and super-group, transposed: u[8][64], d[16]

struct Q8Sg {
  __m512i q[8];
  __m512 d;
};

// The 16 lanes' sum as a fixed tree (lane L + L + 8, then + 4, + 2, + 1), written out rather than
// left to the compiler's _mm512_reduce_add_ps: the AMX tiles add the same lanes held in 16
// vectors, and must get the same bits.
inline float sum16(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

// The super-group of 16 blocks at p (valid_blocks of them exist; the others read nothing and
// come out u = 128, d = 0), transposed: 4 groups through Q8_0F::load (lane k of lo / hi: block
// k's values 0-15 / 16-31), then per 128-bit lane a 4x4 transpose of dwords (U_j[4k + g] =
// dword j of block 4g + k) and one permute to V_j[4g + k].
template <bool kFull>
inline void q8_load_sg(const uint8_t* p, int valid_blocks, Q8Sg& o) {
  GroupW g[4];
  for (int k = 0; k < 4; ++k) {
    if constexpr (kFull) {
      Q8_0F::load<true, false>(p + k * kGroup * Q8_0F::kBytes, 0, g[k]);
    } else if (const int n = valid_blocks - kGroup * k; n > 0) {
      Q8_0F::load<false, false>(p + k * kGroup * Q8_0F::kBytes, (n >= 4 ? 4 : n) * Q8_0F::kBytes / 2, g[k]);
    } else {  // what a load of no bytes gives (u = 128, d = 0), without the loads and permutes
      g[k].lo = g[k].hi = _mm512_set1_epi8(char(0x80));
      g[k].d = _mm512_setzero_ps();
    }
  }
  const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  for (int h = 0; h < 2; ++h) {
    const __m512i v0 = h ? g[0].hi : g[0].lo, v1 = h ? g[1].hi : g[1].lo;
    const __m512i v2 = h ? g[2].hi : g[2].lo, v3 = h ? g[3].hi : g[3].lo;
    const __m512i a0 = _mm512_unpacklo_epi32(v0, v1), a1 = _mm512_unpackhi_epi32(v0, v1);
    const __m512i a2 = _mm512_unpacklo_epi32(v2, v3), a3 = _mm512_unpackhi_epi32(v2, v3);
    o.q[4 * h + 0] = _mm512_permutexvar_epi32(idx, _mm512_unpacklo_epi64(a0, a2));
    o.q[4 * h + 1] = _mm512_permutexvar_epi32(idx, _mm512_unpackhi_epi64(a0, a2));
    o.q[4 * h + 2] = _mm512_permutexvar_epi32(idx, _mm512_unpacklo_epi64(a1, a3));
    o.q[4 * h + 3] = _mm512_permutexvar_epi32(idx, _mm512_unpackhi_epi64(a1, a3));
  }
  // g[k].d lanes 4k'..4k'+3: d of block 4k + k'; lane 4k' + k of the blend is that, permuted
  // to lane 4k + k'
  __m512 d = g[0].d;
  d = _mm512_mask_mov_ps(d, __mmask16(0x2222), g[1].d);
  d = _mm512_mask_mov_ps(d, __mmask16(0x4444), g[2].d);
  d = _mm512_mask_mov_ps(d, __mmask16(0x8888), g[3].d);
  o.d = _mm512_permutexvar_ps(idx, d);
}

// Each token's activations per super-group: x[j][4L..4L+3] = bytes 4j.. of block L, the lane
// starts, d per lane (blocks past the row's end: zero).
inline const uint8_t* q8_arrange(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks, int64_t nsg) {
  thread_local KernelScratch arranged;
  arranged.reserve(size_t(n_tok * nsg * kQ8XBytes));
  for (int64_t t = 0; t < n_tok; ++t) {
    const auto* act = reinterpret_cast<const ActQ8_32*>(static_cast<const uint8_t*>(x) + t * x_row_bytes);
    for (int64_t s = 0; s < nsg; ++s) {
      uint8_t* dst = arranged.data + (t * nsg + s) * kQ8XBytes;
      std::memset(dst, 0, size_t(kQ8XBytes));
      for (int L = 0; L < kSg && s * kSg + L < blocks; ++L) {
        const ActQ8_32& a = act[s * kSg + L];
        for (int j = 0; j < 8; ++j) std::memcpy(dst + 64 * j + 4 * L, a.qs + 4 * j, 4);
        const int32_t start = -128 * a.sum;
        std::memcpy(dst + 512 + 4 * L, &start, 4);
        std::memcpy(dst + 576 + 4 * L, &a.d, 4);
      }
    }
  }
  return arranged.data;
}

// One super-group's dot for a token's arranged activations xs: 16 lanes, one per block.
inline __m512i q8_sg_dot(const __m512i (&q)[8], const uint8_t* xs) {
  __m512i dot = _mm512_loadu_si512(xs + 512);
  for (int j = 0; j < 8; ++j) dot = _mm512_dpbusd_epi32(dot, q[j], _mm512_loadu_si512(xs + 64 * j));
  return dot;
}

// NT (< kSmallBatch) tokens (xa_stride bytes apart), one row, straight from the row's blocks:
// each super-group transposed once for all of them (the stream ahead prefetched).
template <int NT>
inline void q8_decode(const uint8_t* xt, int64_t xa_stride, const uint8_t* w, int64_t stride, int64_t blocks,
                      int64_t nsg, float* y, int64_t ldy) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  constexpr int64_t kSgBytes = kSg * Q8_0F::kBytes;
  for (int64_t s = 0; s < nsg; ++s) {
    prefetch_next<kSgBytes, 1>(w + s * kSgBytes, stride);
    Q8Sg sg;
    if (s * kSg + kSg <= blocks)
      q8_load_sg<true>(w + s * kSgBytes, kSg, sg);
    else
      q8_load_sg<false>(w + s * kSgBytes, int(blocks - s * kSg), sg);
    for (int t = 0; t < NT; ++t) {
      const uint8_t* xs = xt + t * xa_stride + s * kQ8XBytes;
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q8_sg_dot(sg.q, xs)), _mm512_mul_ps(sg.d, _mm512_loadu_ps(xs + 576)),
                               acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) y[t * ldy] = sum16(acc[t]);
}

// NT tokens (xa_stride bytes apart), one row from the transposed buffer wb, super-groups
// [s0, s1): the accumulators start at zero (first) or from accm, and end reduced into y (last)
// or back in accm.
template <int NT>
void q8_tile(const uint8_t* xa, int64_t xa_stride, const uint8_t* wb, int64_t s0, int64_t s1, bool first, bool last,
             float* accm, float* y, int64_t ldy) {
  __m512 acc[NT];
#pragma GCC unroll 16
  for (int t = 0; t < NT; ++t) acc[t] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(accm + 16 * t);
  for (int64_t s = s0; s < s1; ++s) {
    __m512i q[8];
    for (int j = 0; j < 8; ++j) q[j] = _mm512_loadu_si512(wb + s * kQ8WBytes + 64 * j);
    const __m512 wd = _mm512_loadu_ps(wb + s * kQ8WBytes + 512);
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) {
      const uint8_t* xs = xa + t * xa_stride + s * kQ8XBytes;
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q8_sg_dot(q, xs)), _mm512_mul_ps(wd, _mm512_loadu_ps(xs + 576)), acc[t]);
    }
  }
  if (last) {
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) y[t * ldy] = sum16(acc[t]);
  } else {
#pragma GCC unroll 16
    for (int t = 0; t < NT; ++t) _mm512_storeu_ps(accm + 16 * t, acc[t]);
  }
}

// 8 tokens per tile; the rows of a block take the tile's super-groups 4 at a time (8 tokens x 4 x
// 640 bytes of activations stay in L1 while the rows pass; the whole row at 8960 columns did
// not: 8 x 18 x 640 bytes, read from L2 by every row, measured below the old group tile)
constexpr int kQ8Tokens = 8;
constexpr int64_t kQ8Chunk = 4;

template <int NT>
void q8_tiles(const uint8_t* xa, int64_t xa_stride, const uint8_t* rowbuf, int64_t nsg, int64_t nrows, float* accbuf,
              float* y, int64_t ldy) {
  for (int64_t s0 = 0; s0 < nsg; s0 += kQ8Chunk) {
    const int64_t s1 = s0 + kQ8Chunk < nsg ? s0 + kQ8Chunk : nsg;
    for (int64_t r = 0; r < nrows; ++r)
      q8_tile<NT>(xa, xa_stride, rowbuf + r * nsg * kQ8WBytes, s0, s1, s0 == 0, s1 == nsg, accbuf + r * NT * 16, y + r,
                  ldy);
  }
}

// ---- gguf_q8_0 prefill on AMX (cpu_features().amx_int8) ----
// A tile product C = A·B (tdpbssd: int8 x int8 summed into int32) takes A = 16 weight rows x one
// block's 32 quants (copied once per 16-row tile, 512 contiguous bytes per block), and B = the
// same block of 16 tokens, arranged once per call as AMX wants it (row k of B: each token's 4
// activations 4k..4k+3, token n at bytes 4n..4n+3). C[r][n] is the block's exact dot for row r
// and token n: the same integer the vpdpbusd lanes give. The float steps then run on vectors of
// 16 tokens for one row (the same operations, element by element, as decode's 16 lanes):
//   acc_L = fma(float(dot), d_w·d_x, acc_L) for blocks L, L + 16, L + 32, ... in order,
// one lane L at a time so that its 16 rows' accumulators stay in registers, and at the end
// y = the 16 lane sums added as sum16 adds them. Full 16-row tiles only: a chunk's last rows
// (fewer than 16) take the AVX-512 tiles above, which give the same bits.

// The activations of token tile g (tokens 16g .., zeros past n_tok), block b: B at
// xb + (g·blocks + b)·kAmxBBytes, d_x of its 16 tokens at dx + (g·blocks + b)·16.
inline void amx_q8_arrange(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks, uint8_t*& xb,
                           float*& dx) {
  thread_local KernelScratch scratch;
  const int64_t groups = (n_tok + kAmxTokens - 1) / kAmxTokens;
  uint8_t* base = scratch.reserve(size_t(groups * blocks * (kAmxBBytes + 64)));
  xb = base;
  dx = reinterpret_cast<float*>(base + groups * blocks * kAmxBBytes);
  auto act = [&](int64_t t) {
    return reinterpret_cast<const ActQ8_32*>(static_cast<const uint8_t*>(x) + t * x_row_bytes);
  };
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t b = 0; b < blocks; ++b) {
      amx_arrange_b(g * kAmxTokens, n_tok, [&](int64_t t) { return act(t)[b].qs; },
                    xb + (g * blocks + b) * kAmxBBytes);
      for (int n = 0; n < kAmxTokens; ++n)
        dx[(g * blocks + b) * kAmxTokens + n] = g * kAmxTokens + n < n_tok ? act(g * kAmxTokens + n)[b].d : 0.0f;
    }
  asm volatile("" : : : "memory");  // the tile loads (asm) read what was just written
}

// Block b's A and B into tiles A and B, then (after the previous product's store) its product
// into tile C (tile numbers: the instructions name them).
#define R1LITE_AMX_Q8_LOAD(A, B, b)                   \
  do {                                                \
    _tile_loadd(A, wa + (b) * kAmxBBytes, 32);        \
    _tile_loadd(B, xb + (b) * kAmxBBytes, 64);        \
  } while (0)
#define R1LITE_AMX_Q8_PRODUCT(C, A, B) \
  do {                                 \
    _tile_zero(C);                     \
    _tile_dpbssd(C, A, B);             \
  } while (0)

// A 16-row tile (its A tiles at wa, d_w at dw[row·blocks + b]) x token tile xb / dx: for each
// lane L, its 16 row accumulators (vectors of 16 tokens) over blocks L, L + 16, ..., stored in
// part[L][row]. The blocks go in that order (lane after lane), software-pipelined: block i + 1's
// product is under way (tiles 1, 3, 5 or 0, 2, 4) while block i's is scaled.
R1LITE_AMX inline void amx_q8_lanes(const uint8_t* wa, const float* dw, const uint8_t* xb,
                                    const float* dx, int64_t blocks, float (*part)[kAmxRows][kAmxTokens]) {
  alignas(64) int32_t c[kAmxRows][kAmxTokens];
  __m512 acc[kAmxRows];
  for (int r = 0; r < kAmxRows; ++r) acc[r] = _mm512_setzero_ps();
  const int64_t lanes = blocks < kSg ? blocks : kSg;
  int64_t L = 0, b = 0;  // the block being scaled, and its lane
  R1LITE_AMX_Q8_LOAD(2, 4, 0);
  R1LITE_AMX_Q8_PRODUCT(0, 2, 4);
  for (int64_t i = 0; i < blocks; ++i) {
    // the next block in lane order
    int64_t nl = L, nb = b + kSg;
    if (nb >= blocks) nl = L + 1, nb = L + 1;
    const bool more = nl < lanes;
    // the tile unit runs its instructions in order: block i's store goes before block i + 1's
    // product, so that the product runs while block i is scaled
    if (i % 2 == 0) {
      if (more) R1LITE_AMX_Q8_LOAD(3, 5, nb);
      _tile_stored(0, c, 64);
      if (more) R1LITE_AMX_Q8_PRODUCT(1, 3, 5);
    } else {
      if (more) R1LITE_AMX_Q8_LOAD(2, 4, nb);
      _tile_stored(1, c, 64);
      if (more) R1LITE_AMX_Q8_PRODUCT(0, 2, 4);
    }
    const __m512 dxv = _mm512_loadu_ps(dx + b * kAmxTokens);
#pragma GCC unroll 16
    for (int r = 0; r < kAmxRows; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c[r])),
                               _mm512_mul_ps(_mm512_set1_ps(dw[r * blocks + b]), dxv), acc[r]);
    if (nl != L) {
#pragma GCC unroll 16
      for (int r = 0; r < kAmxRows; ++r) _mm512_store_ps(part[L][r], acc[r]), acc[r] = _mm512_setzero_ps();
    }
    L = nl, b = nb;
  }
}

// Rows [r0, r0 + 16·row_tiles) through AMX, every token.
R1LITE_AMX void q8_rows_amx(const void* x, int64_t x_row_bytes, int64_t n_tok, const uint8_t* w, int64_t w_row_bytes,
                            int64_t blocks, int64_t r0, int64_t row_tiles, float* y, int64_t ldy) {
  uint8_t* xb;
  float* dx;
  amx_q8_arrange(x, x_row_bytes, n_tok, blocks, xb, dx);
  thread_local KernelScratch tile_buf;
  uint8_t* wa = tile_buf.reserve(size_t(blocks * (kAmxBBytes + kAmxRows * 4)));
  float* dw = reinterpret_cast<float*>(wa + blocks * kAmxBBytes);
  alignas(64) float part[kSg][kAmxRows][kAmxTokens];
  const int64_t groups = (n_tok + kAmxTokens - 1) / kAmxTokens, lanes = blocks < kSg ? blocks : kSg;
  amx_configure_32();
  for (int64_t rt = 0; rt < row_tiles; ++rt) {
    const uint8_t* wr = w + (r0 + kAmxRows * rt) * w_row_bytes;
    // the tile's quants as A tiles (block b's 16 rows x 32 bytes at wa + 512·b: 8 whole cache
    // lines instead of 16 rows' lines, half of them split) and its scales as floats
    for (int r = 0; r < kAmxRows; ++r) {
      const auto* row = reinterpret_cast<const BlockQ8_0*>(wr + r * w_row_bytes);
      for (int64_t b = 0; b < blocks; ++b) {
        dw[r * blocks + b] = f16(row[b].d);
        _mm256_store_si256(reinterpret_cast<__m256i*>(wa + b * kAmxBBytes + 32 * r),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row[b].qs)));
      }
    }
    asm volatile("" : : : "memory");
    for (int64_t g = 0; g < groups; ++g) {
      amx_q8_lanes(wa, dw, xb + g * blocks * kAmxBBytes, dx + g * blocks * kAmxTokens, blocks, part);
      for (int64_t L = lanes; L < kSg; ++L)
        for (int r = 0; r < kAmxRows; ++r) _mm512_store_ps(part[L][r], _mm512_setzero_ps());
      const int nt = int(n_tok - g * kAmxTokens < kAmxTokens ? n_tok - g * kAmxTokens : kAmxTokens);
      for (int r = 0; r < kAmxRows; ++r) {
        // sum16's tree on the lanes' vectors: (L + L+8), then + 4, + 2, + 1
        __m512 a[8];
        for (int i = 0; i < 8; ++i) a[i] = _mm512_add_ps(_mm512_load_ps(part[i][r]), _mm512_load_ps(part[i + 8][r]));
        for (int i = 0; i < 4; ++i) a[i] = _mm512_add_ps(a[i], a[i + 4]);
        const __m512 sum = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
        alignas(64) float out[kAmxTokens];
        _mm512_store_ps(out, sum);
        float* yr = y + (g * kAmxTokens) * ldy + r0 + kAmxRows * rt + r;
        for (int n = 0; n < nt; ++n) yr[n * ldy] = out[n];
      }
    }
  }
  _tile_release();
}

void q8_rows(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t stride,
             int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  if (n_tok >= kSmallBatch && cpu_features().amx_int8 && r1 - r0 >= kAmxRows) {
    const int64_t tiles = (r1 - r0) / kAmxRows;
    q8_rows_amx(x, x_row_bytes, n_tok, w, stride, blocks, r0, tiles, y, ldy);
    r0 += kAmxRows * tiles;
    if (r0 == r1) return;
  }
  const int64_t nsg = (blocks + kSg - 1) / kSg, xa_stride = nsg * kQ8XBytes;
  const uint8_t* xa = q8_arrange(x, x_row_bytes, n_tok, blocks, nsg);
  thread_local KernelScratch rowbuf, accbuf;
  if (n_tok < kSmallBatch) {  // one row at a time, as q8_decode reads it
    with_token_count<kSmallBatch - 1>(n_tok, [&](auto nt) {
      for (int64_t r = r0; r < r1; ++r)
        q8_decode<decltype(nt)::value>(xa, xa_stride, w + r * stride, stride, blocks, nsg, y + r, ldy);
    });
    return;
  }
  rowbuf.reserve(size_t(kRowBlock * nsg * kQ8WBytes));
  accbuf.reserve(size_t(kRowBlock * kQ8Tokens * 16 * 4));
  float* accm = reinterpret_cast<float*>(accbuf.data);
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    for (int64_t r = rb; r < re; ++r)
      for (int64_t s = 0; s < nsg; ++s) {
        Q8Sg sg;
        const uint8_t* p = w + r * stride + s * kSg * Q8_0F::kBytes;
        if (s * kSg + kSg <= blocks)
          q8_load_sg<true>(p, kSg, sg);
        else
          q8_load_sg<false>(p, int(blocks - s * kSg), sg);
        uint8_t* dst = rowbuf.data + ((r - rb) * nsg + s) * kQ8WBytes;
        for (int j = 0; j < 8; ++j) _mm512_storeu_si512(dst + 64 * j, sg.q[j]);
        _mm512_storeu_ps(dst + 512, sg.d);
      }
    int64_t t = 0;
    for (; t + kQ8Tokens <= n_tok; t += kQ8Tokens)
      q8_tiles<kQ8Tokens>(xa + t * xa_stride, xa_stride, rowbuf.data, nsg, re - rb, accm, y + t * ldy + rb, ldy);
    for (; t + 4 <= n_tok; t += 4)
      q8_tiles<4>(xa + t * xa_stride, xa_stride, rowbuf.data, nsg, re - rb, accm, y + t * ldy + rb, ldy);
    with_token_count<3>(n_tok - t, [&](auto nt) {  // the last 1-3 tokens
      q8_tiles<decltype(nt)::value>(xa + t * xa_stride, xa_stride, rowbuf.data, nsg, re - rb, accm,
                                    y + t * ldy + rb, ldy);
    });
  }
}

// GFNI or the shift: the nibbles are the same either way (cpu_features() read from inside the
// kernel: a namespace-scope initializer here would run, compiled with AVX-512 flags, when the
// module loads on any CPU).
template <class F>
void rows(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
          int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (cpu_features().gfni)
    rows_isa<F, true>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
  else
    rows_isa<F, false>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
}

}  // namespace

const BlockKernel kBlocks32Avx512[] = {
    {DType::GGUF_Q8_0, q8_rows},
    {DType::GGUF_Q4_0, rows<Q4_0F>},
    {DType::Q4_1, rows<Q4_1F>},
    {DType::Q5_0, rows<Q5_0F>},
    {DType::Q5_1, rows<Q5_1F>},
    {DType::IQ4_NL, rows<IQ4NLF>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
