// Avx512 kernels of GGUF's block formats gguf_q8_0, gguf_q4_0, q4_1, q5_0, q5_1, iq4_nl (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// All six formats go through one tile, four blocks (128 values) at a time:
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
// The decode tile (1 token) and the prefill tile (4 tokens) do the same float operations in the
// same order for each (row, token), so a token's result does not depend on its batch.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/blocks.h"
#include "core/cpu_features.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

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

// A growing buffer without std::vector (a standard-library template instantiated here would be
// compiled with AVX-512 flags, and the linker may keep that copy for the portable code too).
struct ScratchBytes {
  uint8_t* data = nullptr;
  size_t size = 0;
  ~ScratchBytes() { std::free(data); }
  void reserve(size_t n) {
    if (n <= size) return;
    void* p = std::realloc(data, n);
    if (!p) throw std::bad_alloc();
    data = static_cast<uint8_t*>(p);
    size = n;
  }
};

template <class F>
const uint8_t* arrange(const void* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks, int64_t token_bytes) {
  thread_local ScratchBytes arranged;
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
    // every line of the next tile's rows at this offset: keeps reads in flight (a group is 72
    // to 136 bytes; asking for one line per group left q8_0's decode at half speed, and asking
    // further ahead measured no better)
    for (int o = 0; o < kGroup * F::kBytes; o += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + NR) * stride) + o, _MM_HINT_T0);
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

constexpr int64_t kRowBlock = 16;  // a block of weight rows stays in cache while tokens stream past
constexpr int kPrefillRows = 4;    // 4 rows x 4 tokens: 16 accumulators + the rows' operands

template <class F, bool kGfni>
void rows_isa(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t stride,
              int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  const int64_t xa_stride = (blocks + kGroup - 1) / kGroup * group_bytes<F>();
  const uint8_t* xa = arrange<F>(x, x_row_bytes, n_tok, blocks, xa_stride);
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
    for (; t < n_tok; ++t) {
      // One row at a time, the next row prefetched: from DRAM, several rows' streams at once
      // read at half the bandwidth (measured 9-10 vs 20-22 GB/s on one thread for q4_k / q6_k).
      for (int64_t r = rb; r < re; ++r)
        tile<F, 1, 1, kGfni>(xa + t * xa_stride, xa_stride, blocks, w + r * stride, stride, y + t * ldy + r, ldy);
    }
  }
}

// GFNI or the shift: the nibbles are the same either way. Read on first use, from inside the
// kernels (a namespace-scope initializer here would run, compiled with AVX-512 flags, when the
// module loads on any CPU).
inline bool have_gfni() {
  static const bool gfni = cpu_features().gfni;
  return gfni;
}

template <class F>
void rows(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
          int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (have_gfni())
    rows_isa<F, true>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
  else
    rows_isa<F, false>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
}

}  // namespace

const BlockKernel kBlocks32Avx512[] = {
    {DType::GGUF_Q8_0, rows<Q8_0F>},
    {DType::GGUF_Q4_0, rows<Q4_0F>},
    {DType::Q4_1, rows<Q4_1F>},
    {DType::Q5_0, rows<Q5_0F>},
    {DType::Q5_1, rows<Q5_1F>},
    {DType::IQ4_NL, rows<IQ4NLF>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
