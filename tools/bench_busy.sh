#!/bin/bash
# Decode and prefill of one model with 2 and 1 threads, on a quiet machine and while a busy loop
# (another process) keeps one core occupied, interleaved over ROUNDS rounds; with a GGUF of the
# same weights and LLAMA_BIN (the folder of a native llama-bench), llama-bench runs beside it:
#     bash tools/bench_busy.sh MODEL [ROUNDS [GGUF]]
# The machine should run nothing else. Prints one line per run (prefill 64, decode 48 tok/s).
set -u
MODEL=$1
ROUNDS=${2:-2}
GGUF=${3:-}
llama() {  # prefill and decode tok/s of llama-bench with $1 threads
  LD_LIBRARY_PATH=$LLAMA_BIN "$LLAMA_BIN/llama-bench" -m "$GGUF" -p 64 -n 48 -t "$1" -r 1 -o json 2>/dev/null |
    python3 -c 'import json, sys; print(" ".join("%.2f" % r["avg_ts"] for r in json.load(sys.stdin)))'
}
for r in $(seq 1 "$ROUNDS"); do
  for busy in 0 1; do
    for t in 2 1; do
      if [ "$busy" = 1 ]; then python3 -c "while True: pass" & BUSY=$!; sleep 0.5; fi
      out=$(python -m r1lite bench "$MODEL" --prefill 64 --decode 48 -t "$t" 2>/dev/null)
      pre=$(echo "$out" | grep -o "prefill 64 tokens: [0-9.]*" | awk '{print $4}')
      dec=$(echo "$out" | grep -o "decode 48 tokens: *[0-9.]*" | awk '{print $4}')
      peer=""
      if [ -n "$GGUF" ]; then peer="  llama-bench prefill decode $(llama "$t")"; fi
      if [ "$busy" = 1 ]; then kill "$BUSY"; fi
      echo "round $r busy $busy threads $t r1lite prefill $pre decode $dec$peer"
    done
  done
done
