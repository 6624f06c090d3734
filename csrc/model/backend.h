// What a model that runs the forward pass offers, whatever it runs on: the CPU's Model
// (model.h) and the GPU's DeviceModel (cuda/device_model.h) implement it, and the Python binding
// (bindings.cpp) holds one through this interface.
#pragma once
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/config.h"

namespace r1lite {

// What a weight matrix's inputs looked like over the recorded tokens (importance matrices):
// per input column the sum of the squared input, in `groups` groups of `cols` (one per head for
// the per-head MLA matrices, else 1), and how many input rows were added.
struct ActivationStat {
  std::vector<double> sum2;  // [groups * cols]
  int64_t cols = 0, groups = 1;
  int64_t count = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Feeds n tokens at positions length..length+n-1 of sequence 0's cache. Writes logits [n, V] if
  // all_logits, else the last position's [V]. Throws std::invalid_argument on a token id outside
  // the vocabulary or past the context (nothing is changed then).
  virtual void forward(const int32_t* tokens, int64_t n, bool all_logits, float* logits) = 0;

  // Several sequences, each with its own cache, in one batch (continuous batching): segment s
  // holds seg_len[s] tokens of sequence seg_seq[s] (each sequence at most once), fed after that
  // sequence's cached positions; logits [n_seg, V] are those of each segment's last token. Throws
  // std::invalid_argument (changing nothing) on an unknown sequence, a repeated one, a bad token
  // id or a full context.
  virtual void forward_batch(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                             int64_t n_seg, float* logits) = 0;
  // forward_batch where a segment s with all_rows[s] != 0 writes the logits of every one of its
  // positions (speculative verification), the others their last: rows packed in segment order.
  virtual void forward_batch_rows(const int32_t* tokens, const int64_t* seg_seq, const int64_t* seg_len,
                                  const uint8_t* all_rows, int64_t n_seg, float* logits) {
    (void)tokens, (void)seg_seq, (void)seg_len, (void)all_rows, (void)n_seg, (void)logits;
    throw std::invalid_argument("this backend cannot return every position of a batch segment (no speculative decoding)");
  }
  // Sequence 0 always exists (forward() uses it); others are opened and closed by the caller.
  virtual int64_t open_sequence() = 0;
  virtual void close_sequence(int64_t id) = 0;
  virtual int64_t sequence_length(int64_t id) = 0;
  // Rolls sequence `id` back to its first n positions (speculative decoding drops the positions
  // of rejected tokens): the next token fed goes to position n. Throws std::invalid_argument on
  // an unknown sequence or n outside [0, its length]. A backend that cannot roll back says so.
  virtual void truncate_sequence(int64_t id, int64_t n) {
    (void)id, (void)n;
    throw std::invalid_argument("this backend cannot roll a sequence back (no speculative decoding)");
  }

  // Opens a new sequence holding a copy of the first n positions of sequence `id` (requests
  // sharing a prompt prefix compute it once); returns its id. Throws std::invalid_argument on
  // an unknown sequence or n outside [0, its length].
  virtual int64_t fork_sequence(int64_t id, int64_t n) {
    (void)id, (void)n;
    throw std::invalid_argument("this backend cannot copy a sequence");
  }
  // DeepSeek's multi-token prediction (ARCH.md §12, model/mtp.cpp). A backend or a model without
  // an MTP module throws std::invalid_argument.
  // Rows fed by the last forward() or forward_batch() (0 after any other call; a batch's rows in
  // segment order), and their hidden states [rows, D] as the output head reads them (after the
  // final norm): what an MTP module takes as h_j.
  virtual int64_t hidden_rows() const { return 0; }
  virtual void last_hidden(float* out) {
    (void)out;
    throw std::invalid_argument("this backend does not hand out hidden states (no MTP)");
  }
  // MTP module 0 over the n positions j = mtp_length(id)..+n-1 of sequence id (all fed to the
  // model already): the token t_{j+1} and the hidden state h_j [n, D] of each; logits [n, V]
  // predicting t_{j+2}.
  virtual void forward_mtp(int64_t id, const int32_t* tokens, const float* hidden, int64_t n, float* logits) {
    (void)id, (void)tokens, (void)hidden, (void)n, (void)logits;
    throw std::invalid_argument("this backend cannot run an MTP module (speculative decoding is CPU only)");
  }
  virtual int64_t mtp_length(int64_t id) {
    (void)id;
    return 0;
  }

  // Activation recording (off by default): while on, every matmul against a named weight
  // matrix adds its inputs' squares per column into activation_stats()[name] (r1lite names;
  // a routed expert's matrices over the tokens routed to it). Turning it on clears the stats.
  virtual void record_activations(bool on) {
    if (on) throw std::invalid_argument("this backend cannot record activations");
  }
  virtual std::map<std::string, ActivationStat> activation_stats() const { return {}; }

  // Empties sequence 0's cache.
  virtual void reset() = 0;
  virtual int64_t n_past() const = 0;
  virtual int64_t cache_bytes() const = 0;            // allocated now, all sequences
  virtual int64_t cache_bytes_per_token() const = 0;  // one position of one sequence
  virtual int threads() const = 0;
  virtual const ModelConfig& config() const = 0;
};

// Throws std::invalid_argument unless 0 < n and every id is in [0, vocab_size).
void check_tokens(const int32_t* tokens, int64_t n, int64_t vocab_size);

}  // namespace r1lite
