#include "core/dtype.h"

#include "core/formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace r1lite {

size_t dtype_size(DType t) {
  const FormatInfo& f = format_info(t);
  return f.layout == Layout::Float ? size_t(f.block_bytes) : 1;
}

int64_t row_bytes(DType t, int64_t cols) {
  const FormatInfo& f = format_info(t);
  return (cols + f.block - 1) / f.block * f.block_bytes;
}

const char* dtype_name(DType t) { return int(t) >= 0 && int(t) < kNumDTypes ? format_info(t).name : "?"; }

bool dtype_from_name(const char* name, DType* out) {
  const FormatInfo* f = format_by_name(name);
  if (f) *out = f->type;
  return f != nullptr;
}

float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE 754 binary16 -> binary32, including subnormals, inf and NaN.
float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65536: inf
  if (abs < 0x38800000u) {  // below 2^-14: an f16 subnormal (or zero), in units of 2^-24
    if (abs < 0x33000000u) return sign;  // below 2^-25: rounds to zero
    const uint32_t man = (abs & 0x7fffffu) | 0x800000u;  // value = man · 2^(exp - 150)
    const int rs = 126 - int(abs >> 23);                   // man >> rs counts units of 2^-24
    uint32_t q = man >> rs;
    const uint32_t rem = man & ((1u << rs) - 1u), half = 1u << (rs - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;      // 0x400 is the smallest normal: right
    return uint16_t(sign | q);
  }
  uint32_t h = ((abs >> 23) - 112) << 10 | (abs >> 13 & 0x3ffu);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: right
  return uint16_t(sign | h);
}

void encode_row(DType t, const float* src, int64_t n, void* dst, uint16_t* scales) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(src[i]);
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_f16(src[i]);
      return;
    case DType::Q8_0:
      for (int64_t b = 0; b * kQuantBlock < n; ++b) {
        const int64_t len = std::min<int64_t>(kQuantBlock, n - b * kQuantBlock);
        const float* x = src + b * kQuantBlock;
        int8_t* q = static_cast<int8_t*>(dst) + b * kQuantBlock;
        float amax = 0.f;
        for (int64_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float d = amax / 127.f, id = d > 0.f ? 1.f / d : 0.f;
        for (int64_t i = 0; i < kQuantBlock; ++i)
          q[i] = i < len ? int8_t(std::round(x[i] * id)) : int8_t(0);  // half away, as for weights
        scales[b] = f32_to_f16(d);
      }
      return;
    default:
      break;
  }
  throw std::invalid_argument("encode_row: not a cache format");
}

void convert_row_to_f32(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      break;
    case DType::BF16: {
      auto s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      break;
    }
    case DType::F16: {
      auto s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      break;
    }
    default:
      break;  // block formats: dequantize_row, or the format table's blocks_to_f32
  }
}

void dequantize_row(DType t, const void* quants, const uint16_t* scales, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = i / kQuantBlock, j = i % kQuantBlock;
    const float d = f16_to_f32(scales[b]);
    if (t == DType::Q8_0) {
      dst[i] = float(static_cast<const int8_t*>(quants)[i]) * d;
    } else {
      const uint8_t byte = static_cast<const uint8_t*>(quants)[b * 16 + j % 16];
      dst[i] = float(int(j < 16 ? byte & 0x0f : byte >> 4) - 8) * d;
    }
  }
}

}  // namespace r1lite
