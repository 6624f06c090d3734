#!/bin/bash
# Decode and prefill of one model with 2 and 1 threads, on a quiet machine and while a busy loop
# (another process) keeps one core occupied, interleaved over ROUNDS rounds:
#     bash tools/bench_busy.sh MODEL [ROUNDS]
# The machine should run nothing else. Prints one line per run.
set -u
MODEL=$1
ROUNDS=${2:-2}
for r in $(seq 1 "$ROUNDS"); do
  for busy in 0 1; do
    for t in 2 1; do
      if [ "$busy" = 1 ]; then python3 -c "while True: pass" & BUSY=$!; sleep 0.5; fi
      out=$(python -m r1lite bench "$MODEL" --prefill 64 --decode 48 -t "$t" 2>/dev/null)
      if [ "$busy" = 1 ]; then kill "$BUSY"; fi
      pre=$(echo "$out" | grep -o "prefill 64 tokens: [0-9.]*" | awk '{print $4}')
      dec=$(echo "$out" | grep -o "decode 48 tokens: *[0-9.]*" | awk '{print $4}')
      echo "round $r busy $busy threads $t prefill $pre decode $dec"
    done
  done
done
