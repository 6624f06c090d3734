// One attention task over a sequence's cache, shared by grouped-query attention (one task per kv
// head) and MLA (one task per block of heads over the latent rows), and the flash-decoding split:
// a long context's positions cut into ranges that run as separate tasks, each leaving an
// unnormalized partial sum with its softmax max and exp-sum, merged afterwards (ARCH.md §4
// step 4: softmax(s)·V = Σ_r e^{m_r - M}·(Σ_{t∈r} e^{s_t - m_r} v_t) / Σ_r e^{m_r - M}·l_r).
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/matmul.h"
#include "model/kv_cache.h"

namespace r1lite {

// Where a task's keys and values are: head `head` of `layer`; MLA reads its values (the latent)
// as the first value_dim entries of the key rows themselves.
struct HeadRows {
  KVCache* cache = nullptr;
  int64_t layer = 0, head = 0, value_dim = 0;
  bool values_in_keys = false;
  StoredRows keys(int64_t pos) const { return cache->keys(layer, head, pos); }
  StoredRows values(int64_t pos) const {
    return values_in_keys ? cache->keys(layer, head, pos) : cache->values(layer, head, pos);
  }
};

// Positions per range below which a context is not split (the merge and the extra task cost
// more than they save).
constexpr int64_t kMinSplitPositions = 1024;

// How many position ranges one token's attention over `len` positions is cut into when `units`
// tasks per token (its kv heads; 1 for MLA) would leave some of `threads` idle. Depends on the
// sequence alone, never on the batch, so that a request's result does not depend on what it is
// batched with (issue 9).
int64_t attention_splits(int64_t len, int64_t units, int64_t threads);

// The range [begin, end) of split r of `splits` over len positions, in whole cache pages.
void split_range(int64_t len, int64_t splits, int64_t r, int64_t* begin, int64_t* end);

// `heads` prepared query rows against positions [begin, end): out[h·value_dim ..] (zeroed here)
// gets Σ_t p_ht·v_t. With ml == nullptr the range is the whole context and p is the softmax;
// otherwise p_ht = e^{scale·s_ht - m_h}, and ml[2h], ml[2h+1] receive m_h and Σ_t p_ht.
void attend(const QueryRows& queries, int64_t heads, const HeadRows& rows, int64_t begin, int64_t end,
            float scale, std::vector<float>& scores, float* out, float* ml);

// `tokens` consecutive queries of one sequence (positions len0 - 1 .., `group` prepared rows each,
// token after token) against their cache at once: each key and value row is read once for all of
// them rather than once per token (prefill). Query row b·group + h sees positions [0, len0 + b)
// and gets exactly what attend() gives it alone: the same dot products, its softmax over its own
// positions, zero weight on the later ones. out[(b·group + h)·value_dim ..] (zeroed here).
void attend_block(const QueryRows& queries, int64_t group, int64_t tokens, int64_t len0, const HeadRows& rows,
                  float scale, std::vector<float>& scores, float* out);

// The tasks of one attention call: token i's `units` (kv heads or head blocks) each cut into
// splits[i] position ranges; task t is (token, unit, range) in that order. Ranges of split
// tokens keep their partial results in slots first_part[i] + unit·splits[i] + range.
struct SplitPlan {
  std::vector<int64_t> lens, splits, first_task, first_part;  // first_*: n + 1 entries
  int64_t units = 1;
  bool any_split = false;

  void build(const std::vector<int64_t>& token_lens, int64_t units_per_token, int64_t threads);
  int64_t tasks() const { return first_task.back(); }
  int64_t part_slots() const { return first_part.back(); }
  void locate(int64_t task, int64_t* token, int64_t* unit, int64_t* range) const;
};

// Task (token, unit, range) of `plan` for `heads` prepared query rows (a unit's partial results
// are `block` heads of rows.value_dim values): the whole context into whole_out, or the range
// into the plan's partial slot in sums / ml.
void attend_task(const SplitPlan& plan, int64_t token, int64_t unit, int64_t range, const QueryRows& queries,
                 int64_t heads, int64_t block, const HeadRows& rows, float scale, std::vector<float>& scores,
                 float* whole_out, std::vector<float>& sums, std::vector<float>& ml);

// out[h·dim ..] for h < heads = the softmax-weighted sum from `splits` partial results, each
// `stride` heads long (range r: sums at sums + r·stride·dim, its m and l at ml + r·2·stride).
void merge_splits(const float* sums, const float* ml, int64_t splits, int64_t heads, int64_t stride,
                  int64_t dim, float* out);

}  // namespace r1lite
