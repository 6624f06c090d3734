// Avx512 kernels of GGUF's block formats q4_k, q5_k, q6_k (core/blocks.h), for
// cpu/matmul.cpp's dispatch (cpu/matmul_kernels.h). Compiled with this ISA's flags; everything
// here has internal linkage except the list.
//
// One super-block (256 values) of a weight row against one ActQ8_K block of a token, all in
// integers until the block's end:
//   - the weight quants are made unsigned bytes, 64 per 512-bit vector, arranged so that each
//     int32 lane of VNNI's vpdpbusd (u8 quant x s8 activation, 4 products per lane) belongs to
//     one sub-block; the activations are rearranged once per call to match (K4Act, Q6Act);
//   - those lanes fit int16, so vpackssdw puts two vectors' lanes side by side and one vpmaddwd
//     multiplies them by their sub-blocks' scales (q4_k/q5_k: the low and the high nibble
//     vectors each chained through 2 vpdpbusd; q6_k: A/B vectors sharing sub-blocks lane by
//     lane, chained the same way), 4 vpdpbusd + 1 vpackssdw + 1 vpmaddwd per block and token;
//   - what depends only on the activations' sums (q4_k/q5_k's mins) comes from the block's bsums
//     (ActQ8_K: sums of each 16 activations), rearranged per call too; q6_k's -32 from lane
//     starts -32·(sum of the lane's activations), arranged per call;
//   - the int32 lanes become floats once per block, times d_w·d_x (and dmin_w·d_x for the mins).
//
// Integer ranges (vpdpbusd, vpmaddwd and vpdpwssd do not saturate except vpmaddwd's
// -32768·-32768 pair, impossible with scales of at most 128 in size; vpackssdw would saturate
// outside int16): q4_k/q5_k: a packed lane sums 8 products of a quant <= 31 (q5_k) with x:
// <= 8·31·128 = 31744 < 32767 (|x| <= 128). q6_k: a lane sums 8 products (q - 32)·x with
// |q - 32| <= 32: <= 8·32·127 = 32512, which needs |x| <= 127 (ActQ8_K's quantizer,
// round(x·127/max|x|), gives no -128). A block's int32 sum is at most 256·63·31·128 = 6.4e7
// (q5_k) or 256·128·32·128 = 1.3e8 (q6_k), far from 2^31; the mins' 8 products
// min·(sum of 32 x) <= 63·4096 each.
//
// Prefill: tiles of NR rows x 8 tokens over a block of 16 rows unpacked once (Weights::unpack)
// into a buffer every token tile reads, d_w·d_x for the tile's tokens in one multiply, then
// tiles of 4 tokens, the rest through the decode step (the raw blocks, one row at a time, the
// next prefetched). A token's float results go through the same operations, in the same order,
// in every tile and in the decode step, so a row's result does not depend on its batch (the
// server batches requests and each must get what it gets alone).
//
// AMX (below): prefill's q4_k, q5_k and q6_k as tile products of 16 rows x 16 tokens x 64
// values, the sub-block scales folded into byte planes of the weights; on AMX CPUs these
// kernels use their exact variant (one int32 per block) so that every path gives the same bits.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/blocks.h"
#include "core/cpu_features.h"
#include "cpu/matmul_kernels.h"

namespace r1lite {
namespace {

#include "cpu/block_kernel_helpers.inc"

// 32 bytes at p in both halves of a 512-bit vector.
inline __m512i broadcast32(const uint8_t* p) {
  return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// ---- q4_k and q5_k ----
// The 12 packed scale bytes of BlockQ4_K / BlockQ5_K (blocks.h scale_min_k4) as 16 bytes
// [scale 0-7 | min 0-7]. In 32-bit words u0, u1, u2 of the packed bytes:
//   scales 0-3 = u0 & 63, mins 0-3 = u1 & 63 (per byte),
//   scales 4-7 = (u2 & 15) | (u0 >> 6) << 4,  mins 4-7 = (u2 >> 4) | (u1 >> 6) << 4.
// Reads 16 bytes from p: the 4 after the scales are still the block's (its quants).
inline __m128i unpack_k4_scales(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));  // u0, u2, u1, u2
  const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));  // u0, u0, u1, u1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_set_epi32(4, 0, 0, 0)),
                                    _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
  // (u >> 6) << 4 per byte = (u >> 2) & 0x30
  const __m128i high = _mm_srlv_epi32(b, _mm_set_epi32(2, 0, 2, 0));
  return _mm_ternarylogic_epi32(low, high, _mm_set_epi32(0x30303030, 0, 0x30303030, 0), 0xF8);  // a | (b & c)
}

// The q4_k/q5_k tiles read the 128 quant bytes of a block as two 512-bit vectors A' and B'
// whose 128-bit lane p holds bytes 0-15 (A') or 16-31 (B') of qs[32p ..]: their low nibbles
// are then sub-block 2p in every lane p (values 64p + 0-15 and 64p + 16-31), their high
// nibbles sub-block 2p + 1. vpdpbusd (u8 nibble x s8 activation, 4 products per int32 lane)
// of both low-nibble vectors into one accumulator gives int32 lanes that each belong to one
// sub-block, 2p in lane p, and of the high ones 2p + 1. Both fit int16 (at most 2·4·31·128 =
// 31744 for q5_k): vpackssdw puts them side by side (lane p: 4 words of sub-block 2p, 4 of
// 2p + 1; nothing saturates) and one vpmaddwd multiplies them by their scales.
// The activations are arranged once per call to match (K4Act below): 16-byte chunk g of a
// block (values 16g ..) goes to vector g % 4, lane g / 4.
struct K4Act {
  int8_t x[4][64];     // the 4 vectors against low A', low B', high A', high B'
  int16_t neg_bs[16];  // words 8-15: minus the sum of the 32 activations of sub-block word - 8
  float d;
  int32_t pad[7];
};
static_assert(sizeof(K4Act) == 320, "arranged activation block");

// The arranged activations of a call: token t's blocks at x + t·stride, and d of token t,
// block b at d[b·n_tok + t] (the prefill tiles read a row of tokens' d at once).
struct Arranged {
  const uint8_t* x;
  int64_t stride;
  const float* d;
  int64_t n_tok;
  const int32_t* neg_bs;  // q4_k/q5_k: word pair p of token t, block b at neg_bs[(4b + p)·n_tok + t]
};

// [d, dmin] of a q4_k/q5_k block as floats (lanes 0, 1).
inline __m128 k4_d_dmin(const uint16_t* d_dmin) {
  int32_t both;
  __builtin_memcpy(&both, d_dmin, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(both));
}

// One weight block of q4_k/q5_k as the tiles use it: the four unsigned quant vectors (see
// above; q5_k adds 16 where the fifth bit is set), the int16 scales in vpackssdw's order, and
// the scales and mins as 16 int16 words (mins in words 8-15, against K4Act::neg_bs).
template <bool kFifthBit>
struct K4Weights {
  __m512i q[4], scale;
  __m256i scale_min;
  template <class Block>
  void load(const Block* wb) {
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __m512i a = _mm512_loadu_si512(wb->qs), b = _mm512_loadu_si512(wb->qs + 64);
    const __m512i a2 = _mm512_shuffle_i64x2(a, b, 0x88), b2 = _mm512_shuffle_i64x2(a, b, 0xDD);
    q[0] = _mm512_and_si512(a2, low4);
    q[1] = _mm512_and_si512(b2, low4);
    q[2] = _mm512_and_si512(_mm512_srli_epi16(a2, 4), low4);
    q[3] = _mm512_and_si512(_mm512_srli_epi16(b2, 4), low4);
    if constexpr (kFifthBit) {
      // bit k of qh[l] for value 32k + l: in vector v, lane p, byte j the value is
      // 64p + 32(v / 2) + 16(v % 2) + j, so its bit is 2p + v / 2 of qh[16(v % 2) + j]. qh's
      // 16-byte halves in every lane, then per lane p shifted right by 2p.
      const __m512i lane_shift = _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0);
      const __m512i h = _mm512_srlv_epi64(
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb->qh))), lane_shift);
      const __m512i h2 = _mm512_srlv_epi64(
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb->qh + 16))), lane_shift);
      const __m512i sixteen = _mm512_set1_epi8(16);
      q[0] = _mm512_mask_add_epi8(q[0], _mm512_test_epi8_mask(h, _mm512_set1_epi8(1)), q[0], sixteen);
      q[1] = _mm512_mask_add_epi8(q[1], _mm512_test_epi8_mask(h2, _mm512_set1_epi8(1)), q[1], sixteen);
      q[2] = _mm512_mask_add_epi8(q[2], _mm512_test_epi8_mask(h, _mm512_set1_epi8(2)), q[2], sixteen);
      q[3] = _mm512_mask_add_epi8(q[3], _mm512_test_epi8_mask(h2, _mm512_set1_epi8(2)), q[3], sixteen);
    }
    scale_min = _mm256_cvtepu8_epi16(unpack_k4_scales(wb->scales));
    scale = _mm512_permutexvar_epi16(
        _mm512_set_epi16(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
        _mm512_castsi256_si512(scale_min));
  }
  // The unpacked block in kUnpackedBytes at p (q, scale, scale_min, then [d, dmin] as floats),
  // as the prefill tiles read it: unpacked once per block of rows, read by every token tile.
  template <class Block>
  static void unpack(const Block* wb, uint8_t* p) {
    K4Weights kw;
    kw.load(wb);
    for (int i = 0; i < 4; ++i) _mm512_storeu_si512(p + 64 * i, kw.q[i]);
    _mm512_storeu_si512(p + 256, kw.scale);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 320), kw.scale_min);
    _mm_storel_pi(reinterpret_cast<__m64*>(p + 352), k4_d_dmin(&wb->d));
  }
  static constexpr int64_t kUnpackedBytes = 384;
  void load_unpacked(const uint8_t* p) {
    for (int i = 0; i < 4; ++i) q[i] = _mm512_loadu_si512(p + 64 * i);
    scale = _mm512_loadu_si512(p + 256);
    scale_min = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 320));
  }
};

// A q4_k/q5_k block's int32 lanes: sum of scale·quant·x over the block (each lane a fixed
// share), from the two vpdpbusd chains (low and high nibble vectors) of K4Weights.
template <bool kFifthBit>
inline __m512i k4_dot(const K4Weights<kFifthBit>& kw, __m512i x0, __m512i x1, __m512i x2, __m512i x3) {
  const __m512i lo = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), kw.q[0], x0), kw.q[1], x1);
  const __m512i hi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), kw.q[2], x2), kw.q[3], x3);
  return _mm512_madd_epi16(_mm512_packs_epi32(lo, hi), kw.scale);
}

// Lane i: the sum of v[i]'s 16 int32 lanes (a tile's (row, token) pairs' block sums at once).
inline __m512i sum_lanes16(const __m512i (&v)[16]) {
  __m512i a[8], b[4], c[2];
  for (int k = 0; k < 8; ++k)  // lanes 0-7: v[2k]'s halves added, 8-15: v[2k + 1]'s
    a[k] = _mm512_add_epi32(_mm512_shuffle_i64x2(v[2 * k], v[2 * k + 1], 0x44),
                            _mm512_shuffle_i64x2(v[2 * k], v[2 * k + 1], 0xEE));
  for (int m = 0; m < 4; ++m)  // 128-bit lane q: 4 partial sums of v[4m + q]
    b[m] = _mm512_add_epi32(_mm512_shuffle_i64x2(a[2 * m], a[2 * m + 1], 0x88),
                            _mm512_shuffle_i64x2(a[2 * m], a[2 * m + 1], 0xDD));
  for (int n = 0; n < 2; ++n)  // lane q, dwords 0-1: v[8n + q], 2-3: v[8n + 4 + q]
    c[n] = _mm512_add_epi32(_mm512_unpacklo_epi64(b[2 * n], b[2 * n + 1]), _mm512_unpackhi_epi64(b[2 * n], b[2 * n + 1]));
  const __m512i lo = _mm512_unpacklo_epi32(c[0], c[1]), hi = _mm512_unpackhi_epi32(c[0], c[1]);
  const __m512i slo = _mm512_add_epi32(lo, _mm512_shuffle_epi32(lo, _MM_PERM_BADC));  // v[q], v[8 + q]
  const __m512i shi = _mm512_add_epi32(hi, _mm512_shuffle_epi32(hi, _MM_PERM_BADC));  // v[4 + q], v[12 + q]
  // lane 4q + k of the blend: v[q], v[8 + q], v[4 + q], v[12 + q] for k = 0..3
  const __m512i mixed = _mm512_mask_blend_epi32(__mmask16(0xCCCC), slo, _mm512_shuffle_epi32(shi, _MM_PERM_BADC));
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15), mixed);
}

// Per (row, token) the float steps, in decode and in every tile alike, in one of two variants
// (kq_rows at the end of this file picks one per process):
//   lanes (CPUs without AMX):
//     acc (16 lanes) = fma(float(block lanes), d_w·d_x, acc)   block after block
//     macc (1 value) = fma(float(-sum(min·bsum32)), dmin_w·d_x, macc)   block after block
//     y = reduce_add(acc) + macc
//   exact (AMX CPUs; the AMX tiles below do the same): the block's lanes summed in integers to
//   I_b (exact, so in any order), then
//     acc = fma(float(I_b), d_w·d_x, acc), macc as above, block after block; y = acc + macc
// The tiles compute macc for 8 tokens at once (one vector lane per token, the same operations
// lane by lane): the mins' dot is then 4 vpdpwssd per row and block for all 8 tokens; the exact
// tiles their (row, token) pairs' I_b in one vector (sum_lanes16), acc one vector lane per pair.

// A format with two variants of its float steps: its decode holds both (a few lines differ),
// its prefill is its exact tile (prefill_exact) or its lanes tile.
template <class F, bool kExact>
struct Variants {
  template <int NR, int NT>
  static void prefill(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                      float* y, int64_t ldy) {
    if constexpr (kExact) F::template prefill_exact<NR, NT>(a, t0, w, w_row_bytes, blocks, y, ldy);
    else F::template prefill_lanes<NR, NT>(a, t0, w, w_row_bytes, blocks, y, ldy);
  }
};

template <bool kFifthBit, bool kExact>
struct K4Format : Variants<K4Format<kFifthBit, kExact>, kExact> {
  using Block = std::conditional_t<kFifthBit, BlockQ5_K, BlockQ4_K>;
  static constexpr bool kAmx = kExact, kFifthBit_ = kFifthBit, kIsQ6 = false;
  using Weights = K4Weights<kFifthBit>;
// 2 rows x 8 tokens: every accumulator in a register (measured against 1x8, 2x6, 3x8, 4x4,
  // 4x8: with its smaller integer work per block, spilling cost q4_k more than it saved)
  static constexpr int kPrefillRows = 2, kPrefillTokens = 8;

  // Every token's activations as K4Act blocks, token after token; d and the mins' word pairs
  // token-major too (Arranged).
  static Arranged arrange(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
    thread_local KernelScratch scratch;
    const int64_t stride = blocks * int64_t(sizeof(K4Act));
    uint8_t* base = scratch.reserve(size_t(n_tok * stride + n_tok * blocks * 4 * 5));
    auto* out = reinterpret_cast<K4Act*>(base);
    float* dT = reinterpret_cast<float*>(base + n_tok * stride);
    int32_t* bsT = reinterpret_cast<int32_t*>(dT + n_tok * blocks);
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t b = 0; b < blocks; ++b, ++out) {
        const ActQ8_K* xb = act_block(x, x_row_bytes, int(t), b);
        __m512i r[4];
        for (int i = 0; i < 4; ++i) r[i] = _mm512_loadu_si512(xb->qs + 64 * i);
        // 4x4 transpose of 16-byte chunks: vector c gets chunks c, 4 + c, 8 + c, 12 + c
        const __m512i t0 = _mm512_shuffle_i64x2(r[0], r[1], 0x44), t1 = _mm512_shuffle_i64x2(r[0], r[1], 0xEE);
        const __m512i t2 = _mm512_shuffle_i64x2(r[2], r[3], 0x44), t3 = _mm512_shuffle_i64x2(r[2], r[3], 0xEE);
        _mm512_storeu_si512(out->x[0], _mm512_shuffle_i64x2(t0, t2, 0x88));
        _mm512_storeu_si512(out->x[1], _mm512_shuffle_i64x2(t0, t2, 0xDD));
        _mm512_storeu_si512(out->x[2], _mm512_shuffle_i64x2(t1, t3, 0x88));
        _mm512_storeu_si512(out->x[3], _mm512_shuffle_i64x2(t1, t3, 0xDD));
        // -(bsums 2k + 2k+1) in word 8 + k (|.| <= 32·127, an int16)
        const __m256i pairs = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums)),
                                                _mm256_set1_epi16(-1));
        const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out->neg_bs), _mm256_inserti128_si256(_mm256_setzero_si256(), words, 1));
        out->d = xb->d;
        dT[b * n_tok + t] = xb->d;
        alignas(16) int32_t w4[4];
        _mm_store_si128(reinterpret_cast<__m128i*>(w4), words);
        for (int p = 0; p < 4; ++p) bsT[(4 * b + p) * n_tok + t] = w4[p];
      }
    }
    return {base, stride, dT, n_tok, bsT};
  }

  // Tokens t0 .. t0 + NT - 1 (NT < kSmallBatch), one row straight from its blocks, each block
  // unpacked once for all of them.
  template <int NT>
  static void decode(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                           float* y, int64_t ldy) {
    __m128 eacc[NT], macc[NT];  // exact: one value per token
    __m512 facc[NT];            // lanes: 16 per token
    for (int t = 0; t < NT; ++t) eacc[t] = _mm_setzero_ps(), facc[t] = _mm512_setzero_ps(), macc[t] = _mm_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const Block* wb = reinterpret_cast<const Block*>(w) + b;
      prefetch_next<sizeof(Block), 1>(reinterpret_cast<const uint8_t*>(wb), w_row_bytes);
      K4Weights<kFifthBit> kw;
      kw.load(wb);
      const __m128 d_dmin = k4_d_dmin(&wb->d);
      for (int t = 0; t < NT; ++t) {
        const K4Act* xb = reinterpret_cast<const K4Act*>(a.x + (t0 + t) * a.stride) + b;
        const __m512i p = k4_dot(kw, _mm512_loadu_si512(xb->x[0]), _mm512_loadu_si512(xb->x[1]),
                                 _mm512_loadu_si512(xb->x[2]), _mm512_loadu_si512(xb->x[3]));
        const __m128 dd = _mm_mul_ps(d_dmin, _mm_set1_ps(a.d[b * a.n_tok + t0 + t]));  // [d·dx, dmin·dx]
        if constexpr (kExact)
          eacc[t] = _mm_fmadd_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), _mm512_reduce_add_epi32(p)), dd, eacc[t]);
        else
          facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_broadcastss_ps(dd), facc[t]);
        // -sum(min·bsum32): words 8-15 of scale_min against neg_bs (words 0-7 there are 0)
        const __m256i mm = _mm256_madd_epi16(kw.scale_min, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->neg_bs)));
        __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(mm), _mm256_extracti128_si256(mm, 1));
        m4 = _mm_add_epi32(m4, _mm_shuffle_epi32(m4, _MM_SHUFFLE(1, 0, 3, 2)));
        m4 = _mm_add_epi32(m4, _mm_shuffle_epi32(m4, _MM_SHUFFLE(2, 3, 0, 1)));
        macc[t] = _mm_fmadd_ss(_mm_cvtepi32_ps(m4), _mm_movehdup_ps(dd), macc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      if constexpr (kExact)
        y[t * ldy] = _mm_cvtss_f32(eacc[t]) + _mm_cvtss_f32(macc[t]);
      else
        y[t * ldy] = _mm512_reduce_add_ps(facc[t]) + _mm_cvtss_f32(macc[t]);
    }
  }

  // Tokens t0 .. t0 + NT - 1 (NT <= 8), rows NR (NR·NT <= 16): each (row, token)'s float
  // operations are decode's; pair (r, t) in lane r·NT + t of acc.
  template <int NR, int NT>
  static void prefill_exact(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                            float* y, int64_t ldy) {
    static_assert(NT <= 8 && NR * NT <= 16, "one ymm of tokens, one zmm of pairs");
    __m512 acc = _mm512_setzero_ps();
    __m256 macc[NR];
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) macc[r] = _mm256_setzero_ps();
    alignas(64) float dd[24] = {};
    const __mmask8 m = __mmask8((1u << NT) - 1);
    for (int64_t b = 0; b < blocks; ++b) {
      K4Weights<kFifthBit> kw[NR];
      const __m256 dx = _mm256_maskz_loadu_ps(m, a.d + b * a.n_tok + t0);
      __m256i bs[4];
      for (int p = 0; p < 4; ++p) bs[p] = _mm256_maskz_loadu_epi32(m, a.neg_bs + (4 * b + p) * a.n_tok + t0);
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wu = w + r * w_row_bytes + b * K4Weights<kFifthBit>::kUnpackedBytes;
        kw[r].load_unpacked(wu);
        const __m128 d_dmin = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(wu + 352)));
        _mm256_storeu_ps(dd + r * NT, _mm256_mul_ps(_mm256_broadcastss_ps(d_dmin), dx));  // rows in order
        // -sum(min·bsum32) of the 8 tokens: min pair p (dword 4 + p of scale_min) against
        // each token's word pair p
        __m256i mm = _mm256_setzero_si256();
        for (int p = 0; p < 4; ++p)
          mm = _mm256_dpwssd_epi32(mm, bs[p], _mm256_permutevar8x32_epi32(kw[r].scale_min, _mm256_set1_epi32(4 + p)));
        macc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_mul_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin)), dx),
                                  macc[r]);
      }
      const auto* xb = reinterpret_cast<const K4Act*>(a.x + t0 * a.stride) + b;
      __m512i lanes[16];
#pragma GCC unroll 16
      for (int i = NR * NT; i < 16; ++i) lanes[i] = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const K4Act* xt = reinterpret_cast<const K4Act*>(reinterpret_cast<const uint8_t*>(xb) + t * a.stride);
        const __m512i x0 = _mm512_loadu_si512(xt->x[0]), x1 = _mm512_loadu_si512(xt->x[1]);
        const __m512i x2 = _mm512_loadu_si512(xt->x[2]), x3 = _mm512_loadu_si512(xt->x[3]);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) lanes[r * NT + t] = k4_dot(kw[r], x0, x1, x2, x3);
      }
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_lanes16(lanes)), _mm512_loadu_ps(dd), acc);
    }
    alignas(64) float av[16];
    _mm512_store_ps(av, acc);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      alignas(32) float mv[8];
      _mm256_store_ps(mv, macc[r]);
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = av[r * NT + t] + mv[t];
    }
  }



  // Tokens t0 .. t0 + NT - 1 (NT <= 8), rows NR: each (row, token)'s float operations are decode's.
  template <int NR, int NT>
  static void prefill_lanes(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                            float* y, int64_t ldy) {
    static_assert(NT <= 8, "one ymm of tokens");
    __m512 facc[NR][NT];
    __m256 macc[NR];
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      macc[r] = _mm256_setzero_ps();
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm512_setzero_ps();
    }
    alignas(32) float dd[NR][8];
    const __mmask8 m = __mmask8((1u << NT) - 1);
    for (int64_t b = 0; b < blocks; ++b) {
      K4Weights<kFifthBit> kw[NR];
      const __m256 dx = _mm256_maskz_loadu_ps(m, a.d + b * a.n_tok + t0);
      __m256i bs[4];
      for (int p = 0; p < 4; ++p) bs[p] = _mm256_maskz_loadu_epi32(m, a.neg_bs + (4 * b + p) * a.n_tok + t0);
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wu = w + r * w_row_bytes + b * K4Weights<kFifthBit>::kUnpackedBytes;
        kw[r].load_unpacked(wu);
        const __m128 d_dmin = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(wu + 352)));
        _mm256_store_ps(dd[r], _mm256_mul_ps(_mm256_broadcastss_ps(d_dmin), dx));
        // -sum(min·bsum32) of the 8 tokens: min pair p (dword 4 + p of scale_min) against
        // each token's word pair p
        __m256i mm = _mm256_setzero_si256();
        for (int p = 0; p < 4; ++p)
          mm = _mm256_dpwssd_epi32(mm, bs[p], _mm256_permutevar8x32_epi32(kw[r].scale_min, _mm256_set1_epi32(4 + p)));
        macc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mm), _mm256_mul_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin)), dx),
                                  macc[r]);
      }
      // read back as broadcasts from memory (a load each), not as register permutes
      asm volatile("" : : "r"(dd) : "memory");
      const auto* xb = reinterpret_cast<const K4Act*>(a.x + t0 * a.stride) + b;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const K4Act* xt = reinterpret_cast<const K4Act*>(reinterpret_cast<const uint8_t*>(xb) + t * a.stride);
        const __m512i x0 = _mm512_loadu_si512(xt->x[0]), x1 = _mm512_loadu_si512(xt->x[1]);
        const __m512i x2 = _mm512_loadu_si512(xt->x[2]), x3 = _mm512_loadu_si512(xt->x[3]);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r)
          facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(k4_dot(kw[r], x0, x1, x2, x3)), _mm512_set1_ps(dd[r][t]),
                                       facc[r][t]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      alignas(32) float mv[8];
      _mm256_store_ps(mv, macc[r]);
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(facc[r][t]) + mv[t];
    }
  }
};

// ---- q6_k ----
// Half h of a BlockQ6_K (values 128h ..): ql[64h .. 64h+63] holds values 128h + i (i < 64) in
// its low nibbles and 128h + 64 + i in its high ones; their 2 high bits are (qh[32h + l] >> 2s)
// & 3 for value 128h + 32s + l. Unpacked, L (the low nibbles with their high bits) holds values
// 128h + 0..63, sub-block 8h + k in 128-bit lane k, and H values 128h + 64..127, sub-block
// 8h + 4 + k in lane k. The tiles read them as A_h = unpacklo_epi64(L, H) and
// B_h = unpackhi_epi64(L, H): int32 lane i of lane k holds, in both A_h and B_h, 4 values of
// sub-block 8h + k (i < 2) or 8h + 4 + k (i >= 2). vpdpbusd of A_h and then B_h into one
// accumulator (unsigned 6-bit quants q against the activations, arranged the same way once per
// call, Q6Act), started at -32·(the lane's 8 activations), gives each lane the sum of 8 products
// (q - 32)·x: at most 8·32·127 = 32512 in size, an int16 (this needs |x| <= 127, which ActQ8_K's
// quantizer gives: round(x·127/max|x|)). vpackssdw of the two halves' accumulators puts, in
// lane k, words 2m, 2m + 1 on sub-block 4m + k (nothing saturates), and one vpmaddwd by the
// int8 scales (as int16 words) leaves one int32 lane per sub-block: scale·sum((q - 32)·x).
// 2 accumulator starts, 4 vpdpbusd, 1 vpackssdw, 1 vpmaddwd per block and token.
struct Q6Act {
  int8_t x[4][64];       // A_0, B_0, A_1, B_1's activations
  int32_t start[2][16];  // -32·(sum of the 8 activations of each lane), per half
};
static_assert(sizeof(Q6Act) == 384, "arranged activation block");

struct Q6Weights {
  __m512i q[4], scale;
  void load(const BlockQ6_K* wb) {
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    // qh in both halves, shifted right by 2 in the high half: then the low half of L takes its
    // high bits from bits 0-1, the high half from 2-3; H from 4-5 and 6-7
    const __m512i qh_shift = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(wb->ql + 64 * h);
      const __m512i hb = _mm512_srlv_epi64(broadcast32(wb->qh + 32 * h), qh_shift);
      const __m512i l = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, low4), _mm512_slli_epi16(hb, 4), bits45, 0xF8);
      const __m512i hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), hb, bits45, 0xF8);
      q[2 * h] = _mm512_unpacklo_epi64(l, hi);
      q[2 * h + 1] = _mm512_unpackhi_epi64(l, hi);
    }
    // word 8k + 2m + e: the scale of sub-block 4m + k
    const __m512i s16 = _mm512_castsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb->scales))));
    scale = _mm512_permutexvar_epi16(
        _mm512_set_epi16(15, 15, 11, 11, 7, 7, 3, 3, 14, 14, 10, 10, 6, 6, 2, 2, 13, 13, 9, 9, 5, 5, 1, 1, 12, 12, 8, 8,
                         4, 4, 0, 0),
        s16);
  }
  // The unpacked block in kUnpackedBytes at p (q, scale, then d as a float), as the prefill
  // tiles read it: unpacked once per block of rows, read by every token tile.
  static void unpack(const BlockQ6_K* wb, uint8_t* p) {
    Q6Weights qw;
    qw.load(wb);
    for (int i = 0; i < 4; ++i) _mm512_storeu_si512(p + 64 * i, qw.q[i]);
    _mm512_storeu_si512(p + 256, qw.scale);
    const float d = _cvtsh_ss(wb->d);
    __builtin_memcpy(p + 320, &d, 4);
  }
  static constexpr int64_t kUnpackedBytes = 384;
  void load_unpacked(const uint8_t* p) {
    for (int i = 0; i < 4; ++i) q[i] = _mm512_loadu_si512(p + 64 * i);
    scale = _mm512_loadu_si512(p + 256);
  }
  // One int32 lane per sub-block: scale·sum((q - 32)·x).
  __m512i dot(const Q6Act* xa) const {
    __m512i c0 = _mm512_dpbusd_epi32(_mm512_loadu_si512(xa->start[0]), q[0], _mm512_loadu_si512(xa->x[0]));
    __m512i c1 = _mm512_dpbusd_epi32(_mm512_loadu_si512(xa->start[1]), q[2], _mm512_loadu_si512(xa->x[2]));
    c0 = _mm512_dpbusd_epi32(c0, q[1], _mm512_loadu_si512(xa->x[1]));
    c1 = _mm512_dpbusd_epi32(c1, q[3], _mm512_loadu_si512(xa->x[3]));
    return _mm512_madd_epi16(_mm512_packs_epi32(c0, c1), scale);
  }
};

template <bool kExact>
struct Q6KFormat : Variants<Q6KFormat<kExact>, kExact> {
  using Block = BlockQ6_K;
  static constexpr bool kAmx = kExact, kFifthBit_ = false, kIsQ6 = true;
  using Weights = Q6Weights;
  // 4 rows x 8 tokens (measured against 2x4, 2x8, 3x8, 4x6, 4x12, 8x4, 1x16: more rows per
  // loaded activation mattered more than keeping every accumulator in a register)
  static constexpr int kPrefillRows = 4, kPrefillTokens = 8;
  static Arranged arrange(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
    thread_local KernelScratch scratch;
    const int64_t stride = blocks * int64_t(sizeof(Q6Act));
    uint8_t* base = scratch.reserve(size_t(n_tok * stride + n_tok * blocks * 4));
    auto* out = reinterpret_cast<Q6Act*>(base);
    float* d = reinterpret_cast<float*>(base + n_tok * stride);
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t t = 0; t < n_tok; ++t) {
      for (int64_t b = 0; b < blocks; ++b, ++out) {
        const ActQ8_K* xb = act_block(x, x_row_bytes, int(t), b);
        for (int h = 0; h < 2; ++h) {
          const __m512i l = _mm512_loadu_si512(xb->qs + 128 * h), hi = _mm512_loadu_si512(xb->qs + 128 * h + 64);
          const __m512i a = _mm512_unpacklo_epi64(l, hi), bb = _mm512_unpackhi_epi64(l, hi);
          _mm512_storeu_si512(out->x[2 * h], a);
          _mm512_storeu_si512(out->x[2 * h + 1], bb);
          const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, a), ones, bb);
          _mm512_storeu_si512(out->start[h], _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 5)));
        }
        d[b * n_tok + t] = xb->d;
      }
    }
    return {base, stride, d, n_tok};
  }

  // Tokens t0 .. t0 + NT - 1 (NT < kSmallBatch), one row; each block unpacked once for all the
  // tokens. Lanes: the 16 lanes summed over the blocks in order, then reduced; exact: each
  // block's lanes summed in integers, then its float step.
  template <int NT>
  static void decode(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                           float* y, int64_t ldy) {
    __m128 eacc[NT];  // exact: one value per token
    __m512 facc[NT];  // lanes: 16 per token
    for (int t = 0; t < NT; ++t) eacc[t] = _mm_setzero_ps(), facc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const BlockQ6_K* wb = reinterpret_cast<const BlockQ6_K*>(w) + b;
      prefetch_next<sizeof(BlockQ6_K), 1>(reinterpret_cast<const uint8_t*>(wb), w_row_bytes);
      Q6Weights qw;
      qw.load(wb);
      const float dw = _cvtsh_ss(wb->d);
      for (int t = 0; t < NT; ++t) {
        const auto* x = reinterpret_cast<const Q6Act*>(a.x + (t0 + t) * a.stride);
        const float d = dw * a.d[b * a.n_tok + t0 + t];
        if constexpr (kExact)
          eacc[t] = _mm_fmadd_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), _mm512_reduce_add_epi32(qw.dot(x + b))),
                                 _mm_set_ss(d), eacc[t]);
        else
          facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(qw.dot(x + b)), _mm512_set1_ps(d), facc[t]);
      }
    }
    for (int t = 0; t < NT; ++t) {
      if constexpr (kExact)
        y[t * ldy] = _mm_cvtss_f32(eacc[t]);
      else
        y[t * ldy] = _mm512_reduce_add_ps(facc[t]);
    }
  }

  // Tokens t0 .. t0 + NT - 1 (NT <= 8), rows NR (NR·NT <= 32): each (row, token)'s float
  // operations are decode's; pair (r, t) in lane r·NT + t of acc (two vectors).
  template <int NR, int NT>
  static void prefill_exact(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                            float* y, int64_t ldy) {
    static_assert(NT <= 8 && NR * NT <= 32, "one ymm of tokens, two zmm of pairs");
    constexpr int kHalves = NR * NT > 16 ? 2 : 1;
    __m512 acc[kHalves];
    for (int h = 0; h < kHalves; ++h) acc[h] = _mm512_setzero_ps();
    alignas(64) float dd[40] = {};
    const __mmask8 m = __mmask8((1u << NT) - 1);
    for (int64_t b = 0; b < blocks; ++b) {
      Q6Weights qw[NR];
      const __m256 dx = _mm256_maskz_loadu_ps(m, a.d + b * a.n_tok + t0);
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wu = w + r * w_row_bytes + b * Q6Weights::kUnpackedBytes;
        qw[r].load_unpacked(wu);
        // d_w·d_x, rows in order (a row's 8 stores overwrite the previous row's zeros past NT)
        _mm256_storeu_ps(dd + r * NT, _mm256_mul_ps(_mm256_set1_ps(*reinterpret_cast<const float*>(wu + 320)), dx));
      }
      const auto* xb = reinterpret_cast<const Q6Act*>(a.x + t0 * a.stride) + b;
      __m512i lanes[16 * kHalves];
#pragma GCC unroll 32
      for (int i = NR * NT; i < 16 * kHalves; ++i) lanes[i] = _mm512_setzero_si512();
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const Q6Act* xt = reinterpret_cast<const Q6Act*>(reinterpret_cast<const uint8_t*>(xb) + t * a.stride);
        const __m512i x0 = _mm512_loadu_si512(xt->x[0]), x1 = _mm512_loadu_si512(xt->x[1]);
        const __m512i x2 = _mm512_loadu_si512(xt->x[2]), x3 = _mm512_loadu_si512(xt->x[3]);
        const __m512i s0 = _mm512_loadu_si512(xt->start[0]), s1 = _mm512_loadu_si512(xt->start[1]);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          const __m512i c0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s0, qw[r].q[0], x0), qw[r].q[1], x1);
          const __m512i c1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s1, qw[r].q[2], x2), qw[r].q[3], x3);
          lanes[r * NT + t] = _mm512_madd_epi16(_mm512_packs_epi32(c0, c1), qw[r].scale);
        }
      }
      for (int h = 0; h < kHalves; ++h) {
        const __m512i (&half)[16] = *reinterpret_cast<const __m512i(*)[16]>(lanes + 16 * h);
        acc[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_lanes16(half)), _mm512_loadu_ps(dd + 16 * h), acc[h]);
      }
    }
    alignas(64) float av[32];
    for (int h = 0; h < kHalves; ++h) _mm512_store_ps(av + 16 * h, acc[h]);
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = av[r * NT + t];
  }



  // Tokens t0 .. t0 + NT - 1, rows NR: each (row, token)'s float operations are decode's.
  template <int NR, int NT>
  static void prefill_lanes(const Arranged& a, int64_t t0, const uint8_t* w, int64_t w_row_bytes, int64_t blocks,
                            float* y, int64_t ldy) {
    __m512 facc[NR][NT];
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) facc[r][t] = _mm512_setzero_ps();
    alignas(64) float dd[NR][16];
    for (int64_t b = 0; b < blocks; ++b) {
      Q6Weights qw[NR];
      const __mmask16 m = NT >= 16 ? __mmask16(0xffff) : __mmask16((1u << NT) - 1);
      const __m512 dx = _mm512_maskz_loadu_ps(m, a.d + b * a.n_tok + t0);
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wu = w + r * w_row_bytes + b * Q6Weights::kUnpackedBytes;
        qw[r].load_unpacked(wu);
        _mm512_store_ps(dd[r], _mm512_mul_ps(_mm512_set1_ps(*reinterpret_cast<const float*>(wu + 320)), dx));
      }
      // read back as broadcasts from memory (a load each), not as register permutes
      asm volatile("" : : "r"(dd) : "memory");
      const auto* xb = reinterpret_cast<const Q6Act*>(a.x + t0 * a.stride) + b;
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) {
        const Q6Act* xt = reinterpret_cast<const Q6Act*>(reinterpret_cast<const uint8_t*>(xb) + t * a.stride);
        const __m512i x0 = _mm512_loadu_si512(xt->x[0]), x1 = _mm512_loadu_si512(xt->x[1]);
        const __m512i x2 = _mm512_loadu_si512(xt->x[2]), x3 = _mm512_loadu_si512(xt->x[3]);
        const __m512i s0 = _mm512_loadu_si512(xt->start[0]), s1 = _mm512_loadu_si512(xt->start[1]);
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) {
          const __m512i c0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s0, qw[r].q[0], x0), qw[r].q[1], x1);
          const __m512i c1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s1, qw[r].q[2], x2), qw[r].q[3], x3);
          const __m512i p = _mm512_madd_epi16(_mm512_packs_epi32(c0, c1), qw[r].scale);
          facc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_set1_ps(dd[r][t]), facc[r][t]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < NT; ++t) y[t * ldy + r] = _mm512_reduce_add_ps(facc[r][t]);
  }
};

// ---- q4_k / q5_k prefill on AMX (cpu_features().amx_int8) ----
// The sub-block scales go into the weights: scale = 2^s·hi + lo (q4_k: s = 4, lo < 16, hi < 4;
// q5_k: s = 3, lo and hi < 8), so that quant·lo and quant·hi are both bytes (at most 15·15 or
// 31·7). Two tile products, tdpbusd (u8 x s8 into int32) of the 16 rows' quant·lo (quant·hi)
// with 16 tokens' activations, accumulate over the block's 256 values, 64 per product (4 per
// plane and block):
//   I_b = C_lo + 2^s·C_hi = sum over sub-blocks of scale·sum(quant·x)
// exactly (|C| <= 256·225·127 < 2^31), the same I_b as the lanes above. Then per row, on
// vectors of 16 tokens:
//   acc = fma(float(I_b), d_w·d_x, acc), macc = fma(float(M_b), dmin_w·d_x, macc)
// with M_b = -sum(min·bsum32) from 4 vpdpwssd of the tokens' bsum pairs: decode's float steps,
// element by element. The weights are unpacked once per 16-row tile into the two planes
// (1 KB per plane and 64 values), the mins and scales d, dmin into per-row vectors; the
// activations once per call. Full 16-row tiles only: the rest take the AVX-512 tiles above,
// which give the same bits.
struct K4AmxAct {
  const uint8_t* b;  // B tiles: token tile g, block b, sub-block j at b + ((g·blocks + b)·8 + j)·512
  const float* d;    // d_x: [g][b][16 tokens]
  const int32_t* nbs;  // [g][b][pair p][16 tokens]: the int16 pair -(bsum32 2p), -(bsum32 2p + 1)
};

inline K4AmxAct k4_amx_arrange(const uint8_t* x, int64_t x_row_bytes, int64_t n_tok, int64_t blocks) {
  thread_local KernelScratch scratch;
  const int64_t groups = (n_tok + kAmxTokens - 1) / kAmxTokens, gb = groups * blocks;
  uint8_t* base = scratch.reserve(size_t(gb * (8 * kAmxBBytes + 64 + 4 * 64)));
  float* d = reinterpret_cast<float*>(base + gb * 8 * kAmxBBytes);
  int32_t* nbs = reinterpret_cast<int32_t*>(d + gb * kAmxTokens);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t i = g * blocks + b;
      for (int j = 0; j < 8; ++j)
        amx_arrange_b(g * kAmxTokens, n_tok, [&](int64_t t) { return act_block(x, x_row_bytes, t, b)->qs + 32 * j; },
                      base + (8 * i + j) * kAmxBBytes);
      for (int n = 0; n < kAmxTokens; ++n) {
        const int64_t t = g * kAmxTokens + n;
        const ActQ8_K* a = t < n_tok ? act_block(x, x_row_bytes, t, b) : nullptr;
        d[i * kAmxTokens + n] = a ? a->d : 0.0f;
        for (int p = 0; p < 4; ++p) {
          const int32_t lo = a ? -(a->bsums[4 * p] + a->bsums[4 * p + 1]) : 0;
          const int32_t hi = a ? -(a->bsums[4 * p + 2] + a->bsums[4 * p + 3]) : 0;
          nbs[(4 * i + p) * kAmxTokens + n] = int32_t(uint32_t(uint16_t(lo)) | uint32_t(uint16_t(hi)) << 16);
        }
      }
    }
  asm volatile("" : : : "memory");  // the tile loads (asm) read what was just written
  return {base, d, nbs};
}

// A 16-row tile unpacked: A tiles [b][chunk c][plane lo, hi] (1 KB: 16 rows x 64 values
// 64c ..), min pairs [b][p][16 rows] as int32, d and dmin [b][16 rows] as floats.
struct K4AmxRows {
  uint8_t* a;
  int32_t* mp;
  float* d;
  float* dmin;
};
constexpr int64_t kAmxABytes = 1024;

template <bool kFifthBit>
inline void k4_amx_unpack(const uint8_t* w, int64_t w_row_bytes, int64_t blocks, const K4AmxRows& u) {
  using Block = std::conditional_t<kFifthBit, BlockQ5_K, BlockQ4_K>;
  constexpr int kShift = kFifthBit ? 3 : 4;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (int r = 0; r < kAmxRows; ++r) {
    const auto* row = reinterpret_cast<const Block*>(w + r * w_row_bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      const Block* wb = row + b;
      alignas(16) uint8_t sm[16];  // scales 0-7, mins 0-7
      _mm_store_si128(reinterpret_cast<__m128i*>(sm), unpack_k4_scales(wb->scales));
      for (int p = 0; p < 4; ++p) u.mp[(4 * b + p) * kAmxRows + r] = sm[8 + 2 * p] | sm[9 + 2 * p] << 16;
      u.d[b * kAmxRows + r] = f16(wb->d);
      u.dmin[b * kAmxRows + r] = f16(wb->dmin);
      for (int p = 0; p < 4; ++p) {  // sub-blocks 2p, 2p + 1: chunk p
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qs + 32 * p));
        __m256i q[2] = {_mm256_and_si256(v, low4), _mm256_and_si256(_mm256_srli_epi16(v, 4), low4)};
        if constexpr (kFifthBit) {  // bit j of qh[l]: value 32j + l
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qh));
          for (int h = 0; h < 2; ++h) {
            const __m256i bit = _mm256_set1_epi8(char(1 << (2 * p + h)));
            q[h] = _mm256_or_si256(q[h], _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit),
                                                          _mm256_set1_epi8(16)));
          }
        }
        uint8_t* chunk = u.a + (4 * b + p) * 2 * kAmxABytes + 64 * r;
        for (int h = 0; h < 2; ++h) {
          const int sc = sm[2 * p + h];
          const __m512i q16 = _mm512_cvtepu8_epi16(q[h]);
          _mm256_store_si256(reinterpret_cast<__m256i*>(chunk + 32 * h),
                             _mm512_cvtepi16_epi8(_mm512_mullo_epi16(q16, _mm512_set1_epi16(short(sc & ((1 << kShift) - 1))))));
          _mm256_store_si256(reinterpret_cast<__m256i*>(chunk + kAmxABytes + 32 * h),
                             _mm512_cvtepi16_epi8(_mm512_mullo_epi16(q16, _mm512_set1_epi16(short(sc >> kShift)))));
        }
      }
    }
  }
  asm volatile("" : : : "memory");
}

// Block b's two planes into tiles CL and CH (zeroed first): 4 chunks of 64 values, A tiles 2
// and 3, B tile 4 (tile numbers: the instructions name them).
#define R1LITE_AMX_K4_BLOCK(CL, CH, b)                                          \
  do {                                                                          \
    _tile_zero(CL);                                                             \
    _tile_zero(CH);                                                             \
    for (int c4 = 0; c4 < 4; ++c4) {                                            \
      _tile_loadd(4, xb + ((b) * 8 + 2 * c4) * kAmxBBytes, 64);                \
      _tile_loadd(2, u.a + ((b) * 4 + c4) * 2 * kAmxABytes, 64);               \
      _tile_loadd(3, u.a + ((b) * 4 + c4) * 2 * kAmxABytes + kAmxABytes, 64);  \
      _tile_dpbusd(CL, 2, 4);                                                   \
      _tile_dpbusd(CH, 3, 4);                                                   \
    }                                                                           \
  } while (0)

// Tiles 0, 1 and 5, 6: the two planes' C of two blocks in flight (16 rows x 16 tokens); 2, 3: A
// (16 rows x 64 bytes); 4: B (16 rows x 64 bytes: row k holds each token's activations 4k..4k+3
// of the chunk).
R1LITE_AMX inline void amx_configure_k4() {
  AmxConfig c;
  for (int i = 0; i < 7; ++i) c.rows[i] = 16, c.colsb[i] = 64;
  _tile_loadconfig(&c);
}

// Rows [0, 16) of u x the token tile at xb / dx / nbs (blocks of it): y for its nt tokens.
R1LITE_AMX inline void k4_amx_tile(const K4AmxRows& u, const uint8_t* xb, const float* dx, const int32_t* nbs,
                                   int64_t blocks, int shift, int nt, float* y, int64_t ldy) {
  alignas(64) int32_t c[2][kAmxRows][kAmxTokens];
  __m512 acc[kAmxRows], macc[kAmxRows];
  for (int r = 0; r < kAmxRows; ++r) acc[r] = _mm512_setzero_ps(), macc[r] = _mm512_setzero_ps();
  R1LITE_AMX_K4_BLOCK(0, 1, 0);
  for (int64_t b = 0; b < blocks; ++b) {
    // the tile unit runs its instructions in order: block b's stores go before block b + 1's
    // products, which then run while block b's float steps do
    if (b % 2 == 0) {
      _tile_stored(0, c[0], 64);
      _tile_stored(1, c[1], 64);
      if (b + 1 < blocks) R1LITE_AMX_K4_BLOCK(5, 6, b + 1);
    } else {
      _tile_stored(5, c[0], 64);
      _tile_stored(6, c[1], 64);
      if (b + 1 < blocks) R1LITE_AMX_K4_BLOCK(0, 1, b + 1);
    }
    const __m512 dxv = _mm512_loadu_ps(dx + b * kAmxTokens);
    __m512i bs[4];
    for (int p = 0; p < 4; ++p) bs[p] = _mm512_loadu_si512(nbs + (4 * b + p) * kAmxTokens);
#pragma GCC unroll 16
    for (int r = 0; r < kAmxRows; ++r) {
      const __m512i sum = _mm512_add_epi32(_mm512_load_si512(c[0][r]),
                                           _mm512_sll_epi32(_mm512_load_si512(c[1][r]), _mm_cvtsi32_si128(shift)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(_mm512_set1_ps(u.d[b * kAmxRows + r]), dxv), acc[r]);
      __m512i m = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) m = _mm512_dpwssd_epi32(m, bs[p], _mm512_set1_epi32(u.mp[(4 * b + p) * kAmxRows + r]));
      macc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(_mm512_set1_ps(u.dmin[b * kAmxRows + r]), dxv),
                                macc[r]);
    }
  }
  for (int r = 0; r < kAmxRows; ++r) {
    alignas(64) float out[kAmxTokens];
    _mm512_store_ps(out, _mm512_add_ps(acc[r], macc[r]));
    for (int t = 0; t < nt; ++t) y[t * ldy + r] = out[t];
  }
}

// Rows [r0, r0 + 16·row_tiles) through AMX, every token.
template <bool kFifthBit>
R1LITE_AMX void k4_rows_amx(const void* x, int64_t x_row_bytes, int64_t n_tok, const uint8_t* w, int64_t w_row_bytes,
                            int64_t blocks, int64_t r0, int64_t row_tiles, float* y, int64_t ldy) {
  const K4AmxAct xa = k4_amx_arrange(static_cast<const uint8_t*>(x), x_row_bytes, n_tok, blocks);
  thread_local KernelScratch rows_buf;
  uint8_t* base = rows_buf.reserve(size_t(blocks * (8 * kAmxABytes + kAmxRows * 4 * (4 + 2))));
  K4AmxRows u;
  u.a = base;
  u.mp = reinterpret_cast<int32_t*>(base + blocks * 8 * kAmxABytes);
  u.d = reinterpret_cast<float*>(u.mp + blocks * 4 * kAmxRows);
  u.dmin = u.d + blocks * kAmxRows;
  const int64_t groups = (n_tok + kAmxTokens - 1) / kAmxTokens;
  amx_configure_k4();
  for (int64_t rt = 0; rt < row_tiles; ++rt) {
    const int64_t r = r0 + kAmxRows * rt;
    k4_amx_unpack<kFifthBit>(w + r * w_row_bytes, w_row_bytes, blocks, u);
    for (int64_t g = 0; g < groups; ++g) {
      const int nt = int(n_tok - g * kAmxTokens < kAmxTokens ? n_tok - g * kAmxTokens : kAmxTokens);
      k4_amx_tile(u, xa.b + g * blocks * 8 * kAmxBBytes, xa.d + g * blocks * kAmxTokens,
                  xa.nbs + g * blocks * 4 * kAmxTokens, blocks, kFifthBit ? 3 : 4, nt, y + g * kAmxTokens * ldy + r, ldy);
    }
  }
  _tile_release();
}

// ---- q6_k prefill on AMX ----
// value = scale·(q - 32) with q - 32 in [-32, 31] and int8 scales per 16 values: the scale as
// three digits in [-3, 4], scale = e0 + 8·e1 + 64·e2 (e2 in [-2, 2]), so that (q - 32)·e is a
// signed byte (at most 128 in size only as -32·4). Three planes of the weights, tdpbssd (s8 x s8
// into int32) with the activations, 64 values per product, accumulated over the block:
//   I_b = C0 + 8·C1 + 64·C2 = sum over sub-blocks of scale·sum((q - 32)·x)
// exactly (|C| <= 256·128·127 < 2^31), the lanes' I_b above; then acc = fma(float(I_b), d_w·d_x,
// acc) per row on vectors of 16 tokens, decode's steps element by element.
struct Q6AmxRows {
  uint8_t* a;  // [b][chunk c][plane k]: 1 KB, 16 rows x 64 values 64c ..
  float* d;    // [b][16 rows]
};

inline void q6_amx_unpack(const uint8_t* w, int64_t w_row_bytes, int64_t blocks, const Q6AmxRows& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
  for (int r = 0; r < kAmxRows; ++r) {
    const auto* row = reinterpret_cast<const BlockQ6_K*>(w + r * w_row_bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      const BlockQ6_K* wb = row + b;
      alignas(64) int8_t q[256];  // q - 32, value by value
      for (int h = 0; h < 2; ++h) {
        const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->ql + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb->qh + 32 * h));
        const __m256i lows[4] = {_mm256_and_si256(ql0, low4), _mm256_and_si256(ql1, low4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                 _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4)};
        for (int s4 = 0; s4 < 4; ++s4) {  // values 128h + 32·s4 + l
          const __m256i high = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * s4), three);
          const __m256i v = _mm256_or_si256(lows[s4], _mm256_slli_epi16(high, 4));
          _mm256_store_si256(reinterpret_cast<__m256i*>(q + 128 * h + 32 * s4), _mm256_sub_epi8(v, k32));
        }
      }
      // the scales' digits, each repeated over its 16 values: e[k][sub-block]
      alignas(64) int8_t e[3][16];
      for (int sb = 0; sb < 16; ++sb) {
        int rest = wb->scales[sb];
        for (int k = 0; k < 2; ++k) {
          const int digit = ((rest + 3) & 7) - 3;
          e[k][sb] = int8_t(digit);
          rest = (rest - digit) >> 3;
        }
        e[2][sb] = int8_t(rest);
      }
      u.d[b * kAmxRows + r] = f16(wb->d);
      for (int c4 = 0; c4 < 4; ++c4) {
        const __m512i q64 = _mm512_load_si512(q + 64 * c4);
        const __m512i qlo = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(q64));
        const __m512i qhi = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(q64, 1));
        for (int k = 0; k < 3; ++k) {
          // digit of sub-block 4·c4 + i/16 for value i of the chunk
          const __m512i dig = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e[k]))),
                                                  _mm512_set_epi8(4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3,
                                                                  4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3,
                                                                  4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3, 4 * c4 + 3,
                                                                  4 * c4 + 3, 4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2,
                                                                  4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2,
                                                                  4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 2,
                                                                  4 * c4 + 2, 4 * c4 + 2, 4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1,
                                                                  4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1,
                                                                  4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1,
                                                                  4 * c4 + 1, 4 * c4 + 1, 4 * c4 + 1, 4 * c4, 4 * c4, 4 * c4,
                                                                  4 * c4, 4 * c4, 4 * c4, 4 * c4, 4 * c4, 4 * c4, 4 * c4,
                                                                  4 * c4, 4 * c4, 4 * c4, 4 * c4, 4 * c4, 4 * c4));
          const __m512i dlo = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(dig));
          const __m512i dhi = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(dig, 1));
          uint8_t* plane = u.a + ((4 * b + c4) * 3 + k) * kAmxABytes + 64 * r;
          _mm256_store_si256(reinterpret_cast<__m256i*>(plane), _mm512_cvtepi16_epi8(_mm512_mullo_epi16(qlo, dlo)));
          _mm256_store_si256(reinterpret_cast<__m256i*>(plane + 32), _mm512_cvtepi16_epi8(_mm512_mullo_epi16(qhi, dhi)));
        }
      }
    }
  }
  asm volatile("" : : : "memory");
}

// Block b's three planes into tiles C0, C1, C2 (zeroed first): 4 chunks of 64 values, A tile 3,
// B tile 4.
#define R1LITE_AMX_Q6_BLOCK(C0, C1, C2, b)                                        \
  do {                                                                            \
    _tile_zero(C0);                                                               \
    _tile_zero(C1);                                                               \
    _tile_zero(C2);                                                               \
    for (int c4 = 0; c4 < 4; ++c4) {                                              \
      const uint8_t* planes = u.a + ((b) * 4 + c4) * 3 * kAmxABytes;             \
      _tile_loadd(4, xb + ((b) * 8 + 2 * c4) * kAmxBBytes, 64);                  \
      _tile_loadd(3, planes, 64);                                                 \
      _tile_dpbssd(C0, 3, 4);                                                     \
      _tile_loadd(3, planes + kAmxABytes, 64);                                    \
      _tile_dpbssd(C1, 3, 4);                                                     \
      _tile_loadd(3, planes + 2 * kAmxABytes, 64);                                \
      _tile_dpbssd(C2, 3, 4);                                                     \
    }                                                                             \
  } while (0)

// Tiles 0-2 and 5-7: the planes' C of two blocks in flight; 3: A; 4: B (all 16 x 64 bytes).
R1LITE_AMX inline void amx_configure_q6() {
  AmxConfig c;
  for (int i = 0; i < 8; ++i) c.rows[i] = 16, c.colsb[i] = 64;
  _tile_loadconfig(&c);
}

R1LITE_AMX inline void q6_amx_tile(const Q6AmxRows& u, const uint8_t* xb, const float* dx, int64_t blocks, int nt,
                                   float* y, int64_t ldy) {
  alignas(64) int32_t c[3][kAmxRows][kAmxTokens];
  __m512 acc[kAmxRows];
  for (int r = 0; r < kAmxRows; ++r) acc[r] = _mm512_setzero_ps();
  R1LITE_AMX_Q6_BLOCK(0, 1, 2, 0);
  for (int64_t b = 0; b < blocks; ++b) {
    if (b % 2 == 0) {  // in order: block b's stores, then block b + 1's products
      _tile_stored(0, c[0], 64);
      _tile_stored(1, c[1], 64);
      _tile_stored(2, c[2], 64);
      if (b + 1 < blocks) R1LITE_AMX_Q6_BLOCK(5, 6, 7, b + 1);
    } else {
      _tile_stored(5, c[0], 64);
      _tile_stored(6, c[1], 64);
      _tile_stored(7, c[2], 64);
      if (b + 1 < blocks) R1LITE_AMX_Q6_BLOCK(0, 1, 2, b + 1);
    }
    const __m512 dxv = _mm512_loadu_ps(dx + b * kAmxTokens);
#pragma GCC unroll 16
    for (int r = 0; r < kAmxRows; ++r) {
      const __m512i sum = _mm512_add_epi32(
          _mm512_load_si512(c[0][r]),
          _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(c[1][r]), 3), _mm512_slli_epi32(_mm512_load_si512(c[2][r]), 6)));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(_mm512_set1_ps(u.d[b * kAmxRows + r]), dxv), acc[r]);
    }
  }
  for (int r = 0; r < kAmxRows; ++r) {
    alignas(64) float out[kAmxTokens];
    _mm512_store_ps(out, acc[r]);
    for (int t = 0; t < nt; ++t) y[t * ldy + r] = out[t];
  }
}

// Rows [r0, r0 + 16·row_tiles) through AMX, every token.
R1LITE_AMX void q6_rows_amx(const void* x, int64_t x_row_bytes, int64_t n_tok, const uint8_t* w, int64_t w_row_bytes,
                            int64_t blocks, int64_t r0, int64_t row_tiles, float* y, int64_t ldy) {
  const K4AmxAct xa = k4_amx_arrange(static_cast<const uint8_t*>(x), x_row_bytes, n_tok, blocks);
  thread_local KernelScratch rows_buf;
  uint8_t* base = rows_buf.reserve(size_t(blocks * (12 * kAmxABytes + kAmxRows * 4)));
  const Q6AmxRows u{base, reinterpret_cast<float*>(base + blocks * 12 * kAmxABytes)};
  const int64_t groups = (n_tok + kAmxTokens - 1) / kAmxTokens;
  amx_configure_q6();
  for (int64_t rt = 0; rt < row_tiles; ++rt) {
    const int64_t r = r0 + kAmxRows * rt;
    q6_amx_unpack(w + r * w_row_bytes, w_row_bytes, blocks, u);
    for (int64_t g = 0; g < groups; ++g) {
      const int nt = int(n_tok - g * kAmxTokens < kAmxTokens ? n_tok - g * kAmxTokens : kAmxTokens);
      q6_amx_tile(u, xa.b + g * blocks * 8 * kAmxBBytes, xa.d + g * blocks * kAmxTokens, blocks, nt,
                  y + g * kAmxTokens * ldy + r, ldy);
    }
  }
  _tile_release();
}

// Fewer than kSmallBatch tokens: every row once through the decode step with all of them.
// Otherwise rows [r0, r1) in blocks of kRowBlock, unpacked once per block; in each, tokens
// F::kPrefillTokens at a time through F::kPrefillRows x kPrefillTokens tiles (the block's last
// rows one at a time), then 4 at a time through one-row tiles, then the last 1-3.
template <class F>
void kq_rows_tiles(const void* xp, int64_t x_row_bytes, int64_t n_tok, const void* wp, int64_t w_row_bytes,
                   int64_t blocks, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wp);
  if constexpr (F::kAmx) {
    if (n_tok >= kSmallBatch && cpu_features().amx_int8 && r1 - r0 >= kAmxRows) {
      const int64_t tiles = (r1 - r0) / kAmxRows;
      if constexpr (F::kIsQ6)
        q6_rows_amx(xp, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, tiles, y, ldy);
      else
        k4_rows_amx<F::kFifthBit_>(xp, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, tiles, y, ldy);
      r0 += kAmxRows * tiles;
      if (r0 == r1) return;
    }
  }
  const Arranged a = F::arrange(static_cast<const uint8_t*>(xp), x_row_bytes, n_tok, blocks);
  constexpr int NR = F::kPrefillRows, NT = F::kPrefillTokens;
  using W = typename F::Weights;
  // the prefill tiles read the block of rows unpacked (W::unpack), u_row bytes per row
  const int64_t u_row = blocks * W::kUnpackedBytes;
  if (n_tok < kSmallBatch) {
    // One row at a time, the stream ahead prefetched (kStreamAhead): from DRAM, several rows'
    // streams at once read at half the bandwidth (measured 9-10 vs 20-22 GB/s on one thread for
    // q4_k / q6_k).
    with_token_count<kSmallBatch - 1>(n_tok, [&](auto nt) {
      for (int64_t r = r0; r < r1; ++r)
        F::template decode<decltype(nt)::value>(a, 0, w + r * w_row_bytes, w_row_bytes, blocks, y + r, ldy);
    });
    return;
  }
  thread_local KernelScratch unpacked;
  const uint8_t* u = unpacked.reserve(size_t(kRowBlock * u_row));
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    for (int64_t r = rb; r < re; ++r)
        for (int64_t b = 0; b < blocks; ++b)
          W::unpack(reinterpret_cast<const typename F::Block*>(w + r * w_row_bytes) + b,
                    unpacked.data + (r - rb) * u_row + b * W::kUnpackedBytes);
    int64_t t = 0;
    for (; t + NT <= n_tok; t += NT) {
      int64_t r = rb;
      for (; r + NR <= re; r += NR)
        F::template prefill<NR, NT>(a, t, u + (r - rb) * u_row, u_row, blocks, y + t * ldy + r, ldy);
      for (; r < re; ++r) F::template prefill<1, NT>(a, t, u + (r - rb) * u_row, u_row, blocks, y + t * ldy + r, ldy);
    }
    for (; t + 4 <= n_tok; t += 4)
      for (int64_t r = rb; r < re; ++r) F::template prefill<1, 4>(a, t, u + (r - rb) * u_row, u_row, blocks, y + t * ldy + r, ldy);
    with_token_count<3>(n_tok - t, [&](auto nt) {  // the last 1-3 tokens, the rows in cache now
      for (int64_t r = rb; r < re; ++r)
        F::template prefill<1, decltype(nt)::value>(a, t, u + (r - rb) * u_row, u_row, blocks, y + t * ldy + r, ldy);
    });
  }
}

// Where the CPU has AMX, the formats' exact variant (one int32 per block: the float steps the
// AMX tiles can follow; decode pays a reduction per block, measured on one thread at DRAM sizes:
// q6_k 0.91x, q4_k 0.98x the read rate); elsewhere the lanes variant. One variant per process:
// a row's result does not depend on its batch either way (cpu_features() read from inside the
// kernel, as in blocks32_avx512.cpp).
template <class Exact, class Lanes>
void kq_rows(const void* x, int64_t x_row_bytes, int64_t n_tok, const void* w, int64_t w_row_bytes, int64_t blocks,
             int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (cpu_features().amx_int8)
    kq_rows_tiles<Exact>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
  else
    kq_rows_tiles<Lanes>(x, x_row_bytes, n_tok, w, w_row_bytes, blocks, r0, r1, y, ldy);
}

}  // namespace

const BlockKernel kKQuantsAvx512[] = {
    {DType::Q4_K, kq_rows<K4Format<false, true>, K4Format<false, false>>},
    {DType::Q5_K, kq_rows<K4Format<true, true>, K4Format<true, false>>},
    {DType::Q6_K, kq_rows<Q6KFormat<true>, Q6KFormat<false>>},
    {DType::F32, nullptr},
};

}  // namespace r1lite
