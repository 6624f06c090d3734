"""The `r1lite` command: run, chat, info, bench, convert, serve."""

from __future__ import annotations

import argparse
import sys

DIM, RESET = "\x1b[2m", "\x1b[0m"
HELP = """commands:
  /clear   forget the conversation
  /bye     leave (also /exit, or Ctrl-D)
  /help    this text
Ctrl-C stops the current answer."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help="model folder (Hugging Face config.json + safetensors)")
    common.add_argument("-c", "--context", type=int, default=None, help="context size in tokens")
    common.add_argument("-t", "--threads", type=int, default=None, help="threads (default: all cores)")
    common.add_argument("--device", default="cpu",
                        help="cpu (default), or cuda / cuda:N to run on that GPU")

    gen = argparse.ArgumentParser(add_help=False)
    gen.add_argument("-n", "--max-tokens", type=int, default=-1,
                     help="most tokens to generate (-1: until the end of the answer or context)")
    gen.add_argument("--temp", type=float, default=None, help="temperature (0: greedy)")
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--min-p", type=float, default=None)
    gen.add_argument("--repeat-penalty", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--max-think", type=int, default=None,
                     help="close the reasoning after this many tokens (0: skip reasoning)")
    gen.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    gen.add_argument("--hide-think", action="store_true", help="do not show the reasoning")
    gen.add_argument("--system", default=None, help="system prompt")
    gen.add_argument("--verbose", action="store_true", help="speed after each answer (stderr)")

    ap = argparse.ArgumentParser(prog="r1lite", description="Run DeepSeek-R1 family models.")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common, gen], help="answer one prompt")
    run.add_argument("prompt")
    run.add_argument("--raw", action="store_true", help="no chat template: complete the prompt")
    sub.add_parser("chat", parents=[common, gen], help="interactive chat")
    sub.add_parser("info", parents=[common], help="describe a model")
    bench = sub.add_parser("bench", parents=[common], help="prefill and decode speed")
    bench.add_argument("--prefill", type=int, default=512, help="prompt tokens (default 512)")
    bench.add_argument("--decode", type=int, default=128, help="generated tokens (default 128)")
    bench.add_argument("--repeats", type=int, default=1, help="rounds; medians are reported")
    srv = sub.add_parser("serve", parents=[common], help="an OpenAI-compatible HTTP server")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY")
    srv.add_argument("--max-batch", type=int, default=8, help="requests decoded together")
    srv.add_argument("--name", default=None, help="model id clients send (default: MODEL)")
    srv.add_argument("--no-webui", action="store_true", help="no browser chat at / (API only)")
    conv = sub.add_parser("convert", help="write a checkpoint as an r1lite model file")
    conv.add_argument("src", help="Hugging Face model folder, GGUF file, or demo")
    conv.add_argument("out", help="output .safetensors file")
    conv.add_argument("--quant", default="q8_0", choices=["f32", "bf16", "f16", "q8_0", "q4_0"],
                      help="format of the weight matrices (default q8_0)")
    return ap


def _gen_kwargs(args) -> dict:
    return dict(max_new_tokens=None if args.max_tokens < 0 else args.max_tokens,
                temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop,
                max_thinking_tokens=args.max_think)


class Printer:
    """Streams pieces to stdout: reasoning dimmed on a terminal (between <think> tags when piped,
    or hidden), then the answer."""

    def __init__(self, hide_think: bool):
        self.hide_think = hide_think
        self.tty = sys.stdout.isatty()
        self.in_reasoning = False

    def piece(self, p) -> None:
        if p.kind == "reasoning":
            if self.hide_think or not p.text:
                return
            if not self.in_reasoning:
                sys.stdout.write(DIM if self.tty else "<think>\n")
                self.in_reasoning = True
            sys.stdout.write(p.text)
        else:
            self.close_reasoning()
            sys.stdout.write(p.text)
        sys.stdout.flush()

    def close_reasoning(self) -> None:
        if self.in_reasoning:
            sys.stdout.write(RESET + "\n\n" if self.tty else "\n</think>\n\n")
            self.in_reasoning = False

    def end(self) -> None:
        self.close_reasoning()
        sys.stdout.write("\n")
        sys.stdout.flush()


def _stream(stream, args) -> object:
    """Print a stream; returns its Generation, or None when Ctrl-C stopped it."""
    printer = Printer(args.hide_think)
    try:
        for piece in stream:
            printer.piece(piece)
    except KeyboardInterrupt:
        printer.end()
        print("(stopped)", file=sys.stderr)
        return None
    printer.end()
    g = stream.generation
    if args.verbose:
        s = g.stats
        print(f"[{s['prompt_tokens']} prompt tokens at {s['prefill_tok_s']:.1f} tok/s, "
              f"{s['generated_tokens']} generated at {s['decode_tok_s']:.1f} tok/s, "
              f"finish: {g.finish_reason}]", file=sys.stderr)
    return g


def _load(args):
    import r1lite

    print(f"loading {args.model} ...", file=sys.stderr)
    return r1lite.load(args.model, threads=args.threads, context=args.context, device=args.device)


def cmd_run(args) -> int:
    model = _load(args)
    kw = _gen_kwargs(args)
    if args.raw:
        stream = model.stream(args.prompt, **kw)
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        stream = model.chat_stream(messages + [{"role": "user", "content": args.prompt}], **kw)
    return 0 if _stream(stream, args) is not None else 130


def cmd_chat(args) -> int:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    model = _load(args)
    kw = _gen_kwargs(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    print("type /help for help, /bye to leave", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("\nUse Ctrl-D or /bye to leave.")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/bye", "/exit"):
            return 0
        if text == "/clear":
            history = []
            print("(conversation cleared)")
            continue
        if text in ("/help", "/?"):
            print(HELP)
            continue
        if text.startswith("/"):
            print(f"unknown command {text.split()[0]}; /help lists them")
            continue
        messages = system + history + [{"role": "user", "content": line}]
        try:
            g = _stream(model.chat_stream(messages, **kw), args)
        except ValueError as e:  # e.g. the conversation outgrew the context
            print(f"error: {e}", file=sys.stderr)
            continue
        if g is not None:
            history = messages + [{"role": "assistant", "content": g.text}]


def _attention_row(c: dict) -> tuple[str, str]:
    if c.get("attention") == "mla":
        return ("attention", f"MLA, {c['num_heads']} heads, latent {c['kv_lora_rank']} + rope "
                             f"{c['qk_rope_head_dim']}, q_lora {c['q_lora_rank'] or 'none'}")
    return ("heads / kv heads", f"{c['num_heads']} / {c['num_kv_heads']} (head dim {c['head_dim']})")


def cmd_info(args) -> int:
    model = _load(args)
    c, s, tok = model.config, model.summary, model.tokenizer
    rows = [
        ("architecture", c["architecture"]),
        ("parameters", f"{s['parameters'] / 1e9:.3f} B" if s["parameters"] >= 1e8 else f"{s['parameters']:,}"),
        ("layers", c["num_layers"]),
        ("hidden size", c["hidden_size"]),
        _attention_row(c),
        *([("experts", f"{c['num_experts']} routed ({c['experts_per_token']} per token), "
                       f"{c['num_shared_experts']} shared, from layer {c['moe_first_layer']}, "
                       f"router {c['router']}")] if c.get("num_experts") else []),
        ("cache per token", f"{model.kv_bytes_per_token / 1024:.1f} KiB"),
        ("read per token", f"{_size(s['decode_bytes_per_token'])} of weights per decode step"),
        ("weight formats", ", ".join(f"{k} ({v} tensors)" for k, v in sorted(s["tensor_formats"].items()))),
        ("context", f"{c['context']} (trained for {c['max_position_embeddings']})"),
        ("rope", c["rope_kind"] + f", theta {c['rope_theta']:g}"
                 + (", per-frequency factors (GGUF rope_freqs)" if c.get("rope_freq_factors") else "")),
        ("file size", f"{s['file_bytes'] / 2**20:.1f} MiB"),
        ("tokenizer", "none" if tok is None else
         f"{tok.vocab_size} tokens, chat template: {'yes' if tok.has_chat_template else 'no'}, "
         f"reasoning (<think>): {'yes' if tok.thinks else 'no'}"),
    ]
    for k, v in rows:
        print(f"{k:18} {v}")
    return 0


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def cmd_bench(args) -> int:
    import r1lite

    from .benchmark import bandwidth, run

    for name in ("prefill", "decode", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    print(f"loading {args.model} ...", file=sys.stderr)
    model = r1lite.load(args.model, threads=args.threads, context=args.prefill + args.decode + 1,
                        device=args.device)
    per_token = model.summary["decode_bytes_per_token"]
    read, where, measured = bandwidth(model)
    with model.session() as session:
        rates = run(session, model.config["vocab_size"], args.prefill, args.decode, args.repeats)
    achieved = rates["decode_tok_s"] * per_token
    print(f"{args.model}: {where}, {_size(per_token)} of weights read per decode step")
    print(f"prefill {args.prefill} tokens: {rates['prefill_tok_s']:.1f} tok/s")
    print(f"decode {args.decode} tokens:  {rates['decode_tok_s']:.2f} tok/s = {achieved / 1e9:.2f} GB/s, "
          f"{100 * achieved / read:.0f}% of the measured {measured} ({read / 1e9:.1f} GB/s)")
    return 0


def cmd_serve(args) -> int:
    from .server import serve

    if args.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {args.max_batch}")
    if args.device != "cpu":
        raise ValueError("r1lite serve runs on the CPU (continuous batching of several sequences); "
                         "--device cuda serves run, chat and bench")
    model = _load(args)
    name = args.name or args.model
    print(f"serving {name} on http://{args.host}:{args.port}/v1 (Ctrl-C stops)", file=sys.stderr)
    if not args.no_webui:
        print(f"chat in a browser: http://{args.host}:{args.port}/", file=sys.stderr)
    serve(model, name, host=args.host, port=args.port, api_key=args.api_key, max_batch=args.max_batch,
          webui=not args.no_webui)
    return 0


def cmd_convert(args) -> int:
    import time

    from .converter import convert

    t0 = time.perf_counter()
    out = convert(args.src, args.out, args.quant)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.quant}) in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    handler = {"run": cmd_run, "chat": cmd_chat, "info": cmd_info, "convert": cmd_convert,
               "serve": cmd_serve, "bench": cmd_bench}[args.command]
    try:
        return handler(args)
    except (FileNotFoundError, ValueError, OSError, ImportError) as e:
        print(f"r1lite: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
