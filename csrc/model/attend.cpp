// One attention task and the flash-decoding split (attend.h).
#include "model/attend.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "cpu/ops.h"

namespace r1lite {

int64_t attention_splits(int64_t len, int64_t units, int64_t threads) {
  if (units >= threads) return 1;
  const int64_t wanted = (threads + units - 1) / units;
  return std::max<int64_t>(1, std::min(wanted, len / kMinSplitPositions));
}

void split_range(int64_t len, int64_t splits, int64_t r, int64_t* begin, int64_t* end) {
  const int64_t page = KVCache::kPagePositions, pages = (len + page - 1) / page;
  *begin = r * pages / splits * page;
  *end = std::min(len, (r + 1) * pages / splits * page);
}

void SplitPlan::build(const std::vector<int64_t>& token_lens, int64_t units_per_token, int64_t threads) {
  const size_t n = token_lens.size();
  lens = token_lens;
  units = units_per_token;
  splits.resize(n);
  first_task.assign(n + 1, 0);
  first_part.assign(n + 1, 0);
  any_split = false;
  for (size_t i = 0; i < n; ++i) {
    splits[i] = attention_splits(lens[i], units, threads);
    any_split = any_split || splits[i] > 1;
    first_task[i + 1] = first_task[i] + units * splits[i];
    first_part[i + 1] = first_part[i] + (splits[i] > 1 ? units * splits[i] : 0);
  }
}

void SplitPlan::locate(int64_t task, int64_t* token, int64_t* unit, int64_t* range) const {
  const int64_t i = int64_t(std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin()) - 1;
  const int64_t local = task - first_task[size_t(i)];
  *token = i;
  *unit = local / splits[size_t(i)];
  *range = local % splits[size_t(i)];
}

void attend(const QueryRows& queries, int64_t heads, const HeadRows& rows, int64_t begin, int64_t end,
            float scale, std::vector<float>& scores, float* out, float* ml) {
  const int64_t page = KVCache::kPagePositions, count = end - begin, dim = rows.value_dim;
  if (begin % page != 0) throw std::logic_error("attend: a range starts inside a cache page");
  scores.resize(size_t(heads * count));
  for (int64_t p0 = begin; p0 < end; p0 += page)
    dot_rows(queries, rows.keys(p0), std::min(page, end - p0), &scores[size_t(p0 - begin)], count);
  for (int64_t h = 0; h < heads; ++h) {
    float* s = &scores[size_t(h * count)];
    if (ml == nullptr)
      softmax_scaled(s, count, scale);
    else
      exp_scaled_shifted(s, count, scale, &ml[2 * h], &ml[2 * h + 1]);
  }
  std::fill(out, out + heads * dim, 0.f);
  for (int64_t p0 = begin; p0 < end; p0 += page)
    weighted_sum_rows(&scores[size_t(p0 - begin)], count, heads, rows.values(p0), std::min(page, end - p0),
                      dim, out, dim);
}

void attend_block(const QueryRows& queries, int64_t group, int64_t tokens, int64_t len0, const HeadRows& rows,
                  float scale, std::vector<float>& scores, float* out) {
  const int64_t page = KVCache::kPagePositions, count = len0 + tokens - 1, heads = group * tokens;
  const int64_t dim = rows.value_dim;
  scores.resize(size_t(heads * count));
  for (int64_t p0 = 0; p0 < count; p0 += page)
    dot_rows(queries, rows.keys(p0), std::min(page, count - p0), &scores[size_t(p0)], count);
  for (int64_t b = 0; b < tokens; ++b)
    for (int64_t h = 0; h < group; ++h) {
      float* s = &scores[size_t((b * group + h) * count)];
      softmax_scaled(s, len0 + b, scale);
      std::fill(s + len0 + b, s + count, 0.f);
    }
  std::fill(out, out + heads * dim, 0.f);
  for (int64_t p0 = 0; p0 < count; p0 += page)
    weighted_sum_rows(&scores[size_t(p0)], count, heads, rows.values(p0), std::min(page, count - p0), dim, out, dim);
}

void attend_task(const SplitPlan& plan, int64_t token, int64_t unit, int64_t range, const QueryRows& queries,
                 int64_t heads, int64_t block, const HeadRows& rows, float scale, std::vector<float>& scores,
                 float* whole_out, std::vector<float>& sums, std::vector<float>& ml) {
  const int64_t splits = plan.splits[size_t(token)], len = plan.lens[size_t(token)];
  if (splits == 1) {
    attend(queries, heads, rows, 0, len, scale, scores, whole_out, nullptr);
    return;
  }
  const int64_t slot = plan.first_part[size_t(token)] + unit * splits + range;
  int64_t begin, end;
  split_range(len, splits, range, &begin, &end);
  attend(queries, heads, rows, begin, end, scale, scores, &sums[size_t(slot * block * rows.value_dim)],
         &ml[size_t(slot * 2 * block)]);
}

void merge_splits(const float* sums, const float* ml, int64_t splits, int64_t heads, int64_t stride,
                  int64_t dim, float* out) {
  for (int64_t h = 0; h < heads; ++h) {
    float top = ml[2 * h];
    for (int64_t r = 1; r < splits; ++r) top = std::max(top, ml[r * 2 * stride + 2 * h]);
    float denom = 0.f;
    float* o = out + h * dim;
    std::fill(o, o + dim, 0.f);
    for (int64_t r = 0; r < splits; ++r) {
      const float w = std::exp(ml[r * 2 * stride + 2 * h] - top);
      denom += w * ml[r * 2 * stride + 2 * h + 1];
      const float* part = sums + (r * stride + h) * dim;
      for (int64_t j = 0; j < dim; ++j) o[j] += w * part[j];
    }
    const float inv = 1.f / denom;
    for (int64_t j = 0; j < dim; ++j) o[j] *= inv;
  }
}

}  // namespace r1lite
