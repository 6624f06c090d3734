// AVX-512 kernels of GGUF's i-quants iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m
// (cpu/iquants_tiles.inc: the tiles and the integer ranges; iq2_xxs, iq2_xs and iq3_xxs decode
// from byte permutes where the CPU has VBMI, below), for cpu/matmul.cpp's dispatch
// (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything here has internal linkage
// except the list.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "core/blocks.h"
#include "core/cpu_features.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

// x with byte k negated where bit k of *bits is set: one masked subtraction from zero (the
// AVX2 file spreads the bits over bytes first), the mask loaded straight from memory.
inline __m256i apply_signs(__m256i x, const uint32_t* bits) {
  return _mm256_mask_sub_epi8(x, _load_mask32(reinterpret_cast<__mmask32*>(const_cast<uint32_t*>(bits))), _mm256_setzero_si256(), x);
}

// acc + the int16 pairs of a times b, summed into int32 lanes: one VNNI vpdpwssd.
inline __m256i madd_add(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }

#include "cpu/iquants_tiles.inc"

// Prefill tiles over unpacked rows (iquants_tiles.inc), two sub-blocks per 512-bit vector:
//   - the weights stored as unsigned bytes v + 64 (at most 62 + 64 = 126; iq1: its u bytes),
//     so that VNNI's vpdpbusd (u8 x s8, 4 products per int32 lane) takes them with the
//     activations as they are; its lanes start from -64·(the lane's 4 activations' sum)
//     (P::prepare, per token; iq1: from 0), which leaves each lane P = the sum of v·x over its
//     4 values, |P| <= 4·62·128 < 2^15;
//   - the scales stored as int32 lanes (scale, 0), so vpdpwssd adds scale·P (P's low 16 bits are
//     P, its high ones times 0): one int32 lane per 4 values, each scaled by its sub-block's (or
//     16 values') scale, exactly as the decode tile's vpmaddubsw + vpdpwssd sum it;
//   - at the super-block's end the low half (even sub-blocks) plus the high half (odd ones) are
//     iq_tile<F, 1, 1>'s 8 int32 lanes (iq1: plus its bsums term), then the same float steps.
struct PrefillAvx512 {
  static constexpr int kRows = 4, kTokens = 4;  // measured against 2x4, 2x8, 3x4
  static __m256i weights(__m256i mag, const uint32_t* signs) {
    return _mm256_add_epi8(apply_signs(mag, signs), _mm256_set1_epi8(64));
  }
  static __m256i scales(__m256i sc) { return _mm256_and_si256(sc, _mm256_set1_epi32(0xFFFF)); }

  // The lane starts of every token's super-blocks: 4 vectors (256 bytes) per block.
  template <class F>
  static void prepare(PrefillActs* a, int64_t n_tok, int64_t blocks) {
    if constexpr (F::kIq1) return;
    a->extra_row = blocks * 256;
    uint8_t* s = iq_extra.reserve(size_t(n_tok * a->extra_row));
    a->extra = s;
    const __m512i sixty_four = _mm512_set1_epi8(64);
    for (int64_t t = 0; t < n_tok; ++t)
      for (int64_t b = 0; b < blocks; ++b)
        for (int p = 0; p < 4; ++p) {
          const __m512i x = _mm512_loadu_si512(act_block(a->x, a->x_row_bytes, t, b)->qs + 64 * p);
          const __m512i sum64 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), sixty_four, x);
          _mm512_store_si512(s + t * a->extra_row + b * 256 + 64 * p, _mm512_sub_epi32(_mm512_setzero_si512(), sum64));
        }
  }

  // Tokens in pairs: token t's 8 float lanes in the low half of a 512-bit vector, t + 1's in the
  // high half (an odd tile's last token alone in the low half), so the block's float steps
  // take one vector per pair; each lane's operations are still the decode tile's.
  template <class F, int NR, int NT>
  static void tile(const PrefillActs& a, int64_t t0, const uint8_t* u, int64_t u_row, int64_t blocks, float* y,
                   int64_t ldy) {
    constexpr int NP = (NT + 1) / 2;
    __m512 facc[NR][NP];
    for (int r = 0; r < NR; ++r)
      for (int p = 0; p < NP; ++p) facc[r][p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* wu[NR];
      for (int r = 0; r < NR; ++r) wu[r] = u + r * u_row + b * kUnpackedBytes;
      const ActQ8_K* xb[NT];
      const uint8_t* st[NT];
      for (int t = 0; t < NT; ++t) {
        xb[t] = act_block(a.x, a.x_row_bytes, t0 + t, b);
        st[t] = F::kIq1 ? nullptr : a.extra + (t0 + t) * a.extra_row + b * 256;
      }
      __m512i acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) {
        __m512i q[NR], sc[NR];
        for (int r = 0; r < NR; ++r) {
          q[r] = _mm512_load_si512(wu[r] + 64 * p);
          sc[r] = _mm512_load_si512(wu[r] + 256 + 64 * p);
        }
        for (int t = 0; t < NT; ++t) {
          const __m512i xv = _mm512_loadu_si512(xb[t]->qs + 64 * p);
          for (int r = 0; r < NR; ++r) {
            const __m512i start = F::kIq1 ? _mm512_setzero_si512() : _mm512_load_si512(st[t] + 64 * p);
            acc[r][t] = _mm512_dpwssd_epi32(acc[r][t], _mm512_dpbusd_epi32(start, q[r], xv), sc[r]);
          }
        }
      }
      // per pair: [d_x of t (8 lanes) | d_x of t + 1], and for iq1 [bsums of t | bsums of t + 1]
      __m512 dx[NP];
      __m512i bsums[NP];
      for (int p = 0; p < NP; ++p) {
        const int t1 = 2 * p + 1 < NT ? 2 * p + 1 : 2 * p;
        dx[p] = _mm512_insertf32x8(_mm512_set1_ps(xb[2 * p]->d), _mm256_set1_ps(xb[t1]->d), 1);
        if constexpr (F::kIq1)
          bsums[p] = _mm512_inserti64x4(_mm512_castsi256_si512(load256(xb[2 * p]->bsums)), load256(xb[t1]->bsums), 1);
      }
      for (int r = 0; r < NR; ++r) {
        float dw;
        std::memcpy(&dw, wu[r] + 544, 4);
        const __m512 dwv = _mm512_set1_ps(dw);
        for (int p = 0; p < NP; ++p) {
          const __m512i a0 = acc[r][2 * p], a1 = acc[r][2 * p + 1 < NT ? 2 * p + 1 : 2 * p];
          // [low half of t | low half of t + 1] + [high half of t | high half of t + 1]
          __m512i sum = _mm512_add_epi32(_mm512_shuffle_i64x2(a0, a1, 0x44), _mm512_shuffle_i64x2(a0, a1, 0xEE));
          if constexpr (F::kIq1) {
            const __m512i coefs = _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i*>(wu[r] + 512)));
            sum = _mm512_add_epi32(_mm512_madd_epi16(coefs, bsums[p]), sum);
          }
          facc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dwv, dx[p]), facc[r][p]);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t)
        y[t * ldy + r] = hsum8(t % 2 ? _mm512_extractf32x8_ps(facc[r][t / 2], 1) : _mm512_castps512_ps256(facc[r][t / 2]));
  }
};

// ---- iq2_xxs / iq2_xs / iq3_xxs decode with VBMI's byte permutes ----
// Where the CPU has AVX-512 VBMI (Ice Lake and later, Zen 4), calls of fewer than kSmallBatch
// tokens (a decode step, a verification pass) build a whole super-block's magnitudes with byte
// permutes, once for all their tokens, rather than iq_tile's grid loads and blends and the
// scalar index extraction between them (or the unpacked tiles' per-call unpacking). These
// formats' grids hold few distinct values: a kIq2xxsGrid / kIq2xsGrid entry is 8 bytes from {8,
// 25, 43} (2-bit codes), a kIq3xxsGrid entry 4 bytes from 8 levels 4 .. 62 (3-bit codes), so an
// entry's codes fit two bytes, kept as two tables (GridCodes: the codes of its first and its
// second half). Per super-block two vpermi2b per table (indices below and above 128) and a
// blend look up all its grid indices (32 or 64) at once (iq2_xs: twice, its 9th index bit
// picking the half); per 64 values (sub-blocks 2p, 2p + 1) a vpermi2b puts the code bytes of
// the qword's entries in each qword, a vpmultishiftqb moves value j's code to the low bits of
// byte j, and a vpermb maps codes to magnitudes. Every group of 8 values has a 7-bit sign index
// (kKsigns): one more vpmultishiftqb pulls a sub-block's 4 out of its qword (and iq2_xxs /
// iq3_xxs's scale from the same word), and a vpermi2b looks the sign bytes up in kKsigns (128
// bytes): no scalar work. Each 512-bit accumulator lane holds what iq_tile<F, 1, 1>'s lane m
// holds for one sub-block; low + high half gives its 8 int32 lanes of the super-block exactly
// (integer sums), and the float steps are iq_tile's: the same bits as the other decode path and
// as the prefill tiles.
struct GridCodes {
  alignas(64) uint8_t lo[512];  // entry i's codes of its first half's values, packed from bit 0
  alignas(64) uint8_t hi[512];  // of its second half's
};

// The codes of a grid of n entries of kValues bytes, each one of `levels` (code: its rank),
// `bits` bits each.
template <class G, int kValues>
GridCodes grid_codes(const G* grid, int n, const uint8_t* levels, int n_levels, int bits) {
  GridCodes c{};
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < kValues; ++j) {
      const int v = int(uint64_t(grid[i]) >> (8 * j) & 0xFF);
      int code = 0;
      while (code < n_levels - 1 && levels[code] != v) ++code;
      (j < kValues / 2 ? c.lo : c.hi)[i] |= uint8_t(code << (bits * (j % (kValues / 2))));
    }
  return c;
}

// A byte-permute index per vector p of a super-block (constexpr tables).
struct PermuteIndex {
  alignas(64) uint8_t index[4][64];
};

#define R1LITE_VBMI __attribute__((target("avx512vbmi")))

// The bytes of a 256-byte table t at the index bytes of q: two vpermi2b (indices below and above
// 128, by `upper`: bit 7 of each index) and a blend.
R1LITE_VBMI inline __m512i lookup_bytes(const uint8_t* t, __m512i q, __mmask64 upper) {
  return _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(_mm512_load_si512(t), q, _mm512_load_si512(t + 64)),
                                _mm512_permutex2var_epi8(_mm512_load_si512(t + 128), q, _mm512_load_si512(t + 192)));
}

// The code bytes of 256 grid entries (tables tlo, thi) at the index bytes of q.
R1LITE_VBMI inline void lookup256(const uint8_t* tlo, const uint8_t* thi, __m512i q, __m512i* lo, __m512i* hi) {
  const __mmask64 upper = _mm512_movepi8_mask(q);
  *lo = lookup_bytes(tlo, q, upper);
  *hi = lookup_bytes(thi, q, upper);
}

// What the formats below share unless they say otherwise: qs (the grid indices) right after
// the f16 d, a 256-entry grid, and per sub-block one 32-bit word of sign indices and scale
// whose scale (word bits 28-31) the side fields put in the low nibble of byte 4 of qword ib.
struct VbmiFormat {
  static __m512i indices(const uint8_t* wb) { return _mm512_loadu_si512(wb + 2); }
  R1LITE_VBMI static void lookup(const GridCodes& c, __m512i q, __m512i* lo, __m512i* hi) {
    lookup256(c.lo, c.hi, q, lo, hi);
  }
  // the qs vector, where a format keeps the words in the high halves of its qwords
  static __m512i side_words(const uint8_t*, __m512i indices) { return indices; }
  // bytes 2s + 1 of the scales: byte 8ib + 4 (the rest unused)
  R1LITE_VBMI static __m512i scales(const uint8_t*, __m512i fields) {
    return _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(fields, _mm512_set1_epi8(0x0F)), 1),
                           _mm512_set1_epi8(1));
  }
  // word w of vector p takes sub-block 2p's scale byte (w < 16) or 2p + 1's
  static constexpr PermuteIndex scale_words() {
    PermuteIndex t{};
    for (int p = 0; p < 4; ++p)
      for (int w = 0; w < 32; ++w) t.index[p][2 * w] = uint8_t(8 * (2 * p + (w < 16 ? 0 : 1)) + 4);
    return t;
  }
  // iq2's grids: entries of 8 bytes from {8, 25, 43}, 2-bit codes (built once per grid)
  template <const uint64_t* kGrid, int kEntries>
  static const GridCodes& iq2_codes() {
    static const uint8_t levels[] = {8, 25, 43};
    static const GridCodes c = grid_codes<uint64_t, 8>(kGrid, kEntries, levels, 3, 2);
    return c;
  }
  // byte j of a qword starts at bit 8j + 2(j % 4): value j's code, from byte j (codes replicated)
  static constexpr int64_t kIq2CodeShift = 0x3E342A201E140A00ll;
  static constexpr int64_t kIq2Levels = 0x002B1908002B1908ll;  // vpermb by the low 2 bits: 8, 25, 43
};

// iq2_xxs: per sub-block ib, qs bytes 8ib .. 8ib + 3 are its 4 grid indices (an entry of 8
// values each) and bytes 8ib + 4 .. 8ib + 7 its word of signs and scale.
struct Iq2xxsVbmi : VbmiFormat {
  using F = Iq2xxs;
  static const GridCodes& codes() { return iq2_codes<kIq2xxsGrid, 256>(); }
  static constexpr int64_t kSideFields = 0x0000003C352E2720ll;  // bits 32, 39, 46, 53, 60
  // byte 8e + j of vector p: entry e (grid index 16p + e for e < 4, 16p + 4 + e after), the code
  // byte of its value j (+64: vpermi2b's second table)
  static constexpr PermuteIndex expand() {
    PermuteIndex t{};
    for (int p = 0; p < 4; ++p)
      for (int e = 0; e < 8; ++e)
        for (int j = 0; j < 8; ++j)
          t.index[p][8 * e + j] = uint8_t((e < 4 ? 16 * p + e : 16 * p + 4 + e) + (j < 4 ? 0 : 64));
    return t;
  }
  static constexpr int64_t kCodeShift = kIq2CodeShift, kLevels = kIq2Levels;
};

// iq2_xs: qs word 4ib + g (sub-block ib's qword) = a 9-bit grid index | the 7-bit sign index
// << 9; two 4-bit scales per sub-block (its first and last 16 values) in scales[ib].
struct Iq2xsVbmi : VbmiFormat {
  using F = Iq2xs;
  static const GridCodes& codes() { return iq2_codes<kIq2xsGrid, 512>(); }
  // the low byte of word g looked up in both 256-entry halves, bit 8 of the word picking one
  R1LITE_VBMI static void lookup(const GridCodes& c, __m512i q, __m512i* lo, __m512i* hi) {
    __m512i lo0, hi0, lo1, hi1;
    lookup256(c.lo, c.hi, q, &lo0, &hi0);
    lookup256(c.lo + 256, c.hi + 256, q, &lo1, &hi1);
    const __mmask32 bit8 = _mm512_test_epi16_mask(q, _mm512_set1_epi16(0x100));
    *lo = _mm512_mask_blend_epi16(bit8, lo0, lo1);
    *hi = _mm512_mask_blend_epi16(bit8, hi0, hi1);
  }
  // the sign index of word k of the qword at bits 16k + 9 (nothing at byte 4: scales come apart)
  static constexpr int64_t kSideFields = 0x0000000039291909ll;
  // 2s + 1 of the 16 scales, byte 2ib the first half's of sub-block ib, 2ib + 1 the second's
  R1LITE_VBMI static __m512i scales(const uint8_t* wb, __m512i) {
    const __m128i s = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(wb + 66));
    const __m128i low4 = _mm_set1_epi8(0x0F);
    const __m128i nibbles = _mm_unpacklo_epi8(_mm_and_si128(s, low4), _mm_and_si128(_mm_srli_epi16(s, 4), low4));
    return _mm512_castsi128_si512(_mm_or_si128(_mm_add_epi8(nibbles, nibbles), _mm_set1_epi8(1)));
  }
  // word w of vector p: sub-block 2p + w / 16, its half (w / 8) % 2
  static constexpr PermuteIndex scale_words() {
    PermuteIndex t{};
    for (int p = 0; p < 4; ++p)
      for (int w = 0; w < 32; ++w) t.index[p][2 * w] = uint8_t(4 * p + w / 8);
    return t;
  }
  // byte 8e + j of vector p: group e (sub-block 2p's 4, then 2p + 1's) is word 8p + e, its low
  // byte at 16p + 2e
  static constexpr PermuteIndex expand() {
    PermuteIndex t{};
    for (int p = 0; p < 4; ++p)
      for (int e = 0; e < 8; ++e)
        for (int j = 0; j < 8; ++j) t.index[p][8 * e + j] = uint8_t(16 * p + 2 * e + (j < 4 ? 0 : 64));
    return t;
  }
  static constexpr int64_t kCodeShift = kIq2CodeShift, kLevels = kIq2Levels;
};

// iq3_xxs: qs holds the 64 grid indices (an entry of 4 values each, 8 per sub-block),
// signs_scales the 8 words.
struct Iq3xxsVbmi : VbmiFormat {
  using F = Iq3xxs;
  static const GridCodes& codes() {
    static const uint8_t levels[] = {4, 12, 20, 28, 36, 44, 52, 62};
    static const GridCodes c = grid_codes<uint32_t, 4>(kIq3xxsGrid, 256, levels, 8, 3);
    return c;
  }
  static __m512i side_words(const uint8_t* wb, __m512i) {
    return _mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + 66)));
  }
  static constexpr int64_t kSideFields = 0x0000001C150E0700ll;  // bits 0, 7, 14, 21, 28
  // qword m of vector p holds entries 2m, 2m + 1 (grid indices 16p + 2m, + 1): bytes 0-3 are the
  // code bytes lo, hi of the first, lo, hi of the second
  static constexpr PermuteIndex expand() {
    PermuteIndex t{};
    for (int p = 0; p < 4; ++p)
      for (int m = 0; m < 8; ++m)
        for (int k = 0; k < 8; ++k)
          t.index[p][8 * m + k] = uint8_t(16 * p + 2 * m + (k / 2) % 2 + (k % 2 ? 64 : 0));
    return t;
  }
  // value j (< 4) of the first entry: byte j / 2, bits 3(j % 2); of the second: 2 bytes on
  static constexpr int64_t kCodeShift = 0x1B1813100B080300ll;
  static constexpr int64_t kLevels = 0x3E342C241C140C04ll;  // by the low 3 bits: 4, 12, .., 62
};

// Rows [r0, r1) of NT tokens' products (a decode step, a speculative verification pass): each
// block's magnitudes, signs and scales built once, then every token's lanes and float steps.
template <class V, int NT>
R1LITE_VBMI void iq_rows_vbmi(const void* x, int64_t x_row_bytes, const uint8_t* w, int64_t w_row_bytes,
                              int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  using F = typename V::F;
  static constexpr PermuteIndex kExpand = V::expand(), kScaleWords = V::scale_words();
  const GridCodes& c = V::codes();
  const __m512i code_shift = _mm512_set1_epi64(V::kCodeShift);
  // vpermb's table: a byte's low bits (its code; the bits above are the next codes') -> magnitude
  const __m512i magnitude = _mm512_set1_epi64(V::kLevels);
  // Per sub-block (qword ib of V::side_words): its 4 sign indices to bytes 0-3 (vpermi2b reads 7
  // bits), for iq2_xxs / iq3_xxs the scale (word bits 28-31) to the low nibble of byte 4.
  const __m512i side_fields = _mm512_set1_epi64(V::kSideFields);
  const __m512i ksigns0 = _mm512_loadu_si512(kKsigns), ksigns1 = _mm512_loadu_si512(kKsigns + 64);
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + r * w_row_bytes;
    __m256 acc[NT];
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* wb = row + b * F::kBlockBytes;
      prefetch_next<F::kBlockBytes, 1>(wb, 0);
      const __m512i q = V::indices(wb);
      __m512i lo, hi;
      V::lookup(c, q, &lo, &hi);
      const __m512i fields = _mm512_multishift_epi64_epi8(side_fields, V::side_words(wb, q));
      // byte 4ib + g: group g's sign bits (kKsigns of its index)
      const __m256i signs = _mm512_cvtepi64_epi32(_mm512_permutex2var_epi8(ksigns0, fields, ksigns1));
      const __m512i scales = V::scales(wb, fields);  // bytes 2s + 1
      const __m128i s01 = _mm256_castsi256_si128(signs), s23 = _mm256_extracti128_si256(signs, 1);
      const __mmask64 neg[4] = {_cvtu64_mask64(uint64_t(_mm_cvtsi128_si64(s01))),
                                _cvtu64_mask64(uint64_t(_mm_extract_epi64(s01, 1))),
                                _cvtu64_mask64(uint64_t(_mm_cvtsi128_si64(s23))),
                                _cvtu64_mask64(uint64_t(_mm_extract_epi64(s23, 1)))};
      __m512i mag[4], sc[4];
      for (int p = 0; p < 4; ++p) {
        const __m512i codes = _mm512_multishift_epi64_epi8(
            code_shift, _mm512_permutex2var_epi8(lo, _mm512_load_si512(kExpand.index[p]), hi));
        mag[p] = _mm512_permutexvar_epi8(codes, magnitude);
        // each int16 word: 2s + 1 of its values (high bytes zeroed)
        sc[p] = _mm512_maskz_permutexvar_epi8(0x5555555555555555ull, _mm512_load_si512(kScaleWords.index[p]), scales);
      }
      const float unit = F::unit(wb);
      for (int t = 0; t < NT; ++t) {
        const ActQ8_K* xb = act_block(x, x_row_bytes, t, b);
        __m512i sum[2] = {zero, zero};
        for (int p = 0; p < 4; ++p) {
          const __m512i xv = _mm512_loadu_si512(xb->qs + 64 * p);
          const __m512i xs = _mm512_mask_sub_epi8(xv, neg[p], zero, xv);
          sum[p % 2] = _mm512_dpwssd_epi32(sum[p % 2], _mm512_maddubs_epi16(mag[p], xs), sc[p]);
        }
        const __m512i s = _mm512_add_epi32(sum[0], sum[1]);
        const __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(unit * xb->d), acc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) y[t * ldy + r] = hsum8(acc[t]);
  }
}

#undef R1LITE_VBMI

// Calls of fewer than kSmallBatch tokens (decode, verification passes) of iq2_xxs, iq2_xs, iq3_xxs
// through iq_rows_vbmi where the CPU has VBMI (read from inside the kernel, as blocks32_avx512.cpp
// reads GFNI), the rest through iq_kernel.
template <class V>
void vbmi_kernel(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes,
                 int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (n_tok < kSmallBatch && cpu_features().avx512_vbmi) {
    with_token_count<kSmallBatch - 1>(n_tok, [&](auto nt) {
      iq_rows_vbmi<V, decltype(nt)::value>(x, x_row_bytes, static_cast<const uint8_t*>(w), w_row_bytes, blocks, r0,
                                           r1, y, ldy);
    });
    return;
  }
  iq_kernel<typename V::F, PrefillAvx512>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
}

}  // namespace

const BlockKernel kIQuantsAvx512[] = {
    {DType::IQ2_XXS, vbmi_kernel<Iq2xxsVbmi>},
    {DType::IQ2_XS, vbmi_kernel<Iq2xsVbmi>},
    {DType::IQ2_S, iq_kernel<Iq2s, PrefillAvx512>},
    {DType::IQ3_XXS, vbmi_kernel<Iq3xxsVbmi>},
    {DType::IQ3_S, iq_kernel<Iq3s, PrefillAvx512>},
    {DType::IQ1_S, iq_kernel<Iq1s, PrefillAvx512>},
    {DType::IQ1_M, iq_kernel<Iq1m, PrefillAvx512>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
