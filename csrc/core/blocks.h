// The byte layout of every block format r1lite reads in GGUF's own blocks (ggml's definitions,
// DESIGN.md "Weight formats"), and of the quantized activations their dot products take. This is
// the one place in C++ where these layouts are written down; core/formats.h describes each format
// (block size, bytes, activation format, reference dequantizer) from them.
//
// A row of such a tensor is cols / elems_per_block whole blocks, one after another; the scales
// live inside each block. f16 fields hold IEEE binary16 bits. K-quants group 256 values in a
// super-block with one f16 scale (and min), and 6- or 4-bit scales per sub-block of 16 or 32.
#pragma once
#include <cstdint>

namespace r1lite {

constexpr int kQK = 256;  // values per K-quant super-block

#pragma pack(push, 1)
// value j (j < 16) = (qs[j] & 15) - 8, value j + 16 = (qs[j] >> 4) - 8, times d
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
// value = nibble (as q4_0's, unsigned) * d + m
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
// q4_0's nibbles with a fifth bit: bit j of qh for value j, bit j + 16 for value j + 16; value =
// (5-bit q - 16) * d
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
// q5_0's 5-bit values, unsigned: value = q * d + m
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
// value j = qs[j] * d
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
// 16 sub-blocks of 16: scales[i] low nibble the scale, high nibble the min; 2-bit quants, four
// per byte: value (128 * h + 32 * s + l) for h < 2, s < 4, l < 32 is (qs[32h + l] >> 2s) & 3, in
// sub-block 8h + 2s + l/16; value = d * scale * q - dmin * min
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
// 16 sub-blocks of 16: 2 low bits as q2_K's, a third from hmask (bit 4h + s of hmask[l] for
// value 128h + 32s + l; a clear bit subtracts 4); 6-bit signed scales (minus 32) packed in 12
// bytes (kmask unpacking, see the reference dequantizer); value = d * scale * q
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
// 8 sub-blocks of 32 with 6-bit scale and min packed in 12 bytes (scale_min_k4); value
// (64 * p + l) for p < 4 is qs[32p + l] & 15 (sub-block 2p), value 64p + 32 + l is
// qs[32p + l] >> 4 (sub-block 2p + 1); value = d * scale * q - dmin * min
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
// q4_K plus a fifth bit: bit 2p of qh[l] for value 64p + l, bit 2p + 1 for value 64p + 32 + l
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
// 16 sub-blocks of 16 with int8 scales; 6-bit quants minus 32: in half h (128 values) value
// 128h + 32s + l takes its low nibble from ql[64h + l + 32(s & 1)] (low nibble for s < 2, high
// for s >= 2) and 2 high bits from (qh[32h + l] >> 2s) & 3; sub-block 8h + 2s + l/16
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
// q4_0's nibble layout, each nibble an index into kIq4nlValues; value = d * table[nibble]
struct BlockIQ4_NL { uint16_t d; uint8_t qs[16]; };
// 8 sub-blocks of 32 as iq4_nl's nibbles; 6-bit scale of sub-block i: low 4 bits
// (scales_l[i/2] >> 4(i%2)) & 15, high 2 bits (scales_h >> 2i) & 3; value =
// d * (scale - 32) * table[nibble]
struct BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; };
// i-quants: values come in groups of 8 whose magnitudes are one entry of a codebook (grid, in
// core/iquant_tables.cpp) and whose signs are 7 stored bits plus an even-parity eighth
// (kKsigns). Sub-block ib (< 8) holds values 32ib .. 32ib + 31, groups 4ib .. 4ib + 3.
// iq2_xxs: qs[4ib .. 4ib + 3] as two uint32 words: word 0's byte g is group g's kIq2xxsGrid
// index; word 1's bits 7g .. 7g + 6 are group g's sign index, bits 28-31 the 4-bit scale s;
// value = d * (0.5 + s) / 4 * grid * sign
struct BlockIQ2_XXS { uint16_t d; uint16_t qs[32]; };
// iq2_xs: qs[4ib + g] = 9-bit kIq2xsGrid index | 7-bit sign index << 9; the 4-bit scale s of
// values 32ib .. 32ib + 15 is scales[ib] & 15, of 32ib + 16 .. 32ib + 31 scales[ib] >> 4;
// value = d * (0.5 + s) / 4 * grid * sign
struct BlockIQ2_XS { uint16_t d; uint16_t qs[32]; uint8_t scales[8]; };
// iq2_s: group g = 4ib + l takes kIq2sGrid index qs[g] | ((qh[ib] >> 2l) & 3) << 8 and its 8 sign
// bits straight from signs[g]; scales as iq2_xs'; value = d * (0.5 + s) / 4 * grid * sign
struct BlockIQ2_S { uint16_t d; uint8_t qs[32]; uint8_t signs[32]; uint8_t qh[8]; uint8_t scales[8]; };
// iq1 (1.5 / 1.75 bits): a group's 8 values g in {-1, 0, 1} are one kIq1sGrid entry (stored as
// g + 1), shifted by a delta of +-1/8 (kIq1Delta) with the group's sign bit, then scaled by
// d * (2s + 1) with a 3-bit s: value = d * (2s + 1) * (g + delta).
// iq1_s: group g = 4ib + l takes index qs[g] | ((qh[ib] >> 3l) & 7) << 8; bits 12-14 of qh[ib]
// are sub-block ib's s, bit 15 its delta sign (set: -1/8).
struct BlockIQ1_S { uint16_t d; uint8_t qs[32]; uint16_t qh[8]; };
// iq1_m: no d field; group g takes index qs[g] | (n & 7) << 8 and its delta sign from bit 3 of n,
// n = qh[g / 2] >> 4(g % 2) (a nibble per group); s of the 16 values 16k .. 16k + 15 is
// (scales[k / 4] >> 3(k % 4)) & 7; the f16 bits of d are the top nibbles of the four scales
// words, scales[0]'s the lowest: d bits = sum_w (scales[w] >> 12) << 4w.
struct BlockIQ1_M { uint8_t qs[32]; uint8_t qh[16]; uint16_t scales[4]; };
// iq3: grid entries of 4 magnitudes, so a group of 8 signs spans two entries: sub-block ib takes
// grid indices qs[8ib .. 8ib + 7] (values 32ib + 4k .. 32ib + 4k + 3 for index k).
// iq3_xxs: signs_scales[4ib .. 4ib + 3] as one uint32 word: bits 7l .. 7l + 6 are the sign index
// of values 32ib + 8l .. 32ib + 8l + 7, bits 28-31 the 4-bit scale s; 8-bit kIq3xxsGrid
// indices; value = d * (0.5 + s) / 2 * grid * sign
struct BlockIQ3_XXS { uint16_t d; uint8_t qs[64]; uint8_t signs_scales[32]; };
// iq3_s: 9-bit kIq3sGrid index qs[8ib + k] | ((qh[ib] >> k) & 1) << 8; 8 sign bits of values
// 8g .. 8g + 7 straight from signs[g]; the 4-bit scale s of sub-block ib is
// (scales[ib / 2] >> 4(ib % 2)) & 15; value = d * (1 + 2s) * grid * sign
struct BlockIQ3_S { uint16_t d; uint8_t qs[64]; uint8_t qh[8]; uint8_t signs[32]; uint8_t scales[4]; };

// Activations for the 32-value formats: q = round(x / d), d = max|x| / 127, sum = sum of q
// (the offset formats subtract 8 or 16 times it; the min formats add m * d * sum).
struct ActQ8_32 { float d; int32_t sum; int8_t qs[32]; };
// Activations for the K-quants and iq4_xs: 256 values with one scale, and the sums of each 16
// quants (bsums) for the mins and offsets.
struct ActQ8_K { float d; int8_t qs[kQK]; int16_t bsums[kQK / 16]; };
#pragma pack(pop)

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34, "ggml block sizes");
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210, "ggml K-quant block sizes");
static_assert(sizeof(BlockIQ4_NL) == 18 && sizeof(BlockIQ4_XS) == 136, "ggml iq4 block sizes");
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82,
              "ggml iq2 block sizes");
static_assert(sizeof(BlockIQ1_S) == 50 && sizeof(BlockIQ1_M) == 56, "ggml iq1 block sizes");
static_assert(sizeof(BlockIQ3_XXS) == 98 && sizeof(BlockIQ3_S) == 110, "ggml iq3 block sizes");
static_assert(sizeof(ActQ8_32) == 40 && sizeof(ActQ8_K) == 292, "activation block sizes");

// iq4_nl / iq4_xs: the 16 values a nibble selects (a non-uniform grid, denser near zero)
extern const int8_t kIq4nlValues[16];
// The i-quant tables (generated data: core/iquant_tables.cpp). A grid entry is a group of 8
// (iq2) or 4 (iq3) unsigned magnitudes, byte j of the uint64 / uint32 (little-endian) for value j.
extern const uint64_t kIq2xxsGrid[256];
extern const uint64_t kIq2xsGrid[512];
extern const uint64_t kIq2sGrid[1024];
extern const uint64_t kIq1sGrid[2048];  // iq1_s and iq1_m: bytes g + 1 in {0, 1, 2}
constexpr float kIq1Delta = 0.125f;
extern const uint32_t kIq3xxsGrid[256];
extern const uint32_t kIq3sGrid[512];
extern const uint8_t kKsigns[128];  // 7-bit sign index -> 8 sign bits (bit j set: value j < 0)

// The unpacking helpers below are static (each file that includes this gets its own copy):
// the per-ISA kernel files include this header, and a shared inline definition could let the
// linker keep an AVX-512 copy for code that runs on any CPU (cpu/matmul_kernels.h).

// iq1_m: d's f16 bits from the top nibbles of the four scales words.
static inline uint16_t iq1m_d_bits(const uint16_t* scales) {
  return uint16_t((scales[0] >> 12) | (scales[1] >> 8 & 0x00F0) | (scales[2] >> 4 & 0x0F00) | (scales[3] & 0xF000));
}

// q4_K / q5_K: the 6-bit scale and min of sub-block j (< 8) from the 12 packed bytes.
static inline void scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *min = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// q3_K: the 16 6-bit scales (still offset by 32) from the 12 packed bytes.
static inline void unpack_q3k_scales(const uint8_t* packed, int8_t* out16) {
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? (packed[j] & 0xF) : (packed[j - 8] >> 4);
    const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    out16[j] = int8_t(low | (high << 4));
  }
}

}  // namespace r1lite
