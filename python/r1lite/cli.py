"""The `r1lite` command: run, chat, info, bench, convert, serve."""

from __future__ import annotations

import argparse
import json
import sys

DIM, RESET = "\x1b[2m", "\x1b[0m"
DEFAULT_MAX_TOKENS = 2048  # run's and chat's -n: every default path ends
THINK_SHARE = 0.75  # without --max-think, a model that thinks reasons for at most this share of -n
HELP = """commands:
  /set think on|off|hide|show   reason (on), skip it (off); show it dimmed or hide it
  /set think budget N           close the reasoning after N tokens (-1: no budget but -n's)
  /set temperature X            also top_k, top_p, min_p, repeat_penalty, seed, num_predict,
                                dry_multiplier, dry_base, dry_allowed_length,
                                dry_penalty_last_n, loop_guard on|off, stop TEXT
  /set parameter NAME VALUE     the same, as ollama spells it
  /set system TEXT              the system prompt (/set system alone removes it)
  /set verbose | /set quiet     a stats line after each answer, or not
  /show info                    architecture, formats, context, bytes per token
  /show parameters              the settings the next answer uses
  /show system                  the system prompt
  /save FILE | /load FILE       write or read the conversation (JSON)
  /clear                        forget the conversation
  /bye                          leave (also /exit, or Ctrl-D)
  /help                         this text
\"\"\" starts and ends a message of several lines. Ctrl-C stops the current answer."""

# /set names (ollama's first) -> generation keyword, and how the value is read
SETTINGS = {
    "temperature": ("temperature", float), "temp": ("temperature", float),
    "top_k": ("top_k", int), "top_p": ("top_p", float), "min_p": ("min_p", float),
    "repeat_penalty": ("repetition_penalty", float),
    "repetition_penalty": ("repetition_penalty", float), "seed": ("seed", int),
    "num_predict": ("max_new_tokens", int), "max_tokens": ("max_new_tokens", int),
    "dry_multiplier": ("dry_multiplier", float), "dry_base": ("dry_base", float),
    "dry_allowed_length": ("dry_allowed_length", int),
    "dry_penalty_last_n": ("dry_penalty_last_n", int),
    "loop_guard": ("loop_guard", "bool"), "stop": ("stop", str),
    "think_margin": ("thinking_margin", int), "thinking_margin": ("thinking_margin", int),
}


MODEL_HELP = ("the model: an r1lite file (r1lite convert), a Hugging Face folder (config.json + "
              "safetensors), a .gguf file (a split one by its first part), a store name "
              "(r1lite list), a hub id owner/name (downloaded and converted once, as r1lite pull "
              "does), or demo (SmolLM2-135M-Instruct)")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help=MODEL_HELP)
    common.add_argument("-c", "--context", type=int, default=None,
                        help="most tokens the KV cache holds (default: the model's trained context)")
    common.add_argument("-t", "--threads", type=int, default=None,
                        help="threads (default: one per physical core)")
    common.add_argument("--kv-cache", default=None, choices=("f16", "bf16", "q8_0", "f32"),
                        help="KV cache format (default f16 on the CPU, f32 on a GPU; q8_0 halves "
                             "f16's bytes at some accuracy)")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="cpu",
                        help="cpu (default), or cuda / cuda:N to run on that GPU")

    gen = argparse.ArgumentParser(add_help=False)
    gen.add_argument("-n", "--max-tokens", type=int, default=None,
                     help=f"most tokens per answer (default {DEFAULT_MAX_TOKENS}, of which the "
                          f"reasoning takes at most {int(DEFAULT_MAX_TOKENS * THINK_SHARE)}; -1: "
                          f"until the end of the answer or the context)")
    gen.add_argument("--temp", type=float, default=None, help="temperature (0: greedy)")
    gen.add_argument("--top-k", type=int, default=None, help="sample among the K likeliest tokens (0: off)")
    gen.add_argument("--top-p", type=float, default=None,
                     help="sample among the likeliest tokens whose probabilities add up to P (1: off)")
    gen.add_argument("--min-p", type=float, default=None,
                     help="drop tokens less likely than P times the likeliest one (0: off)")
    gen.add_argument("--repeat-penalty", type=float, default=None,
                     help="divide the logits of tokens already seen by this (1: off)")
    gen.add_argument("--seed", type=int, default=None, help="random seed (same seed, same answer)")
    gen.add_argument("--max-think", type=int, default=None,
                     help="close the reasoning within this many tokens (0: skip reasoning)")
    gen.add_argument("--think-margin", type=int, default=None,
                     help="tokens before the budget's end where a sentence end closes the "
                          "reasoning (default 64)")
    gen.add_argument("--reasoning-effort", choices=["low", "medium", "high"], default=None,
                     help="reasoning budget of 1024 / 4096 / 16384 tokens")
    think = gen.add_mutually_exclusive_group()
    think.add_argument("--think", dest="think", action="store_true", default=None,
                       help="reason before answering (the default for R1 models)")
    think.add_argument("--no-think", dest="think", action="store_false",
                       help="skip the reasoning (an empty think block is prefilled)")
    gen.add_argument("--no-loop-guard", dest="loop_guard", action="store_false",
                     help="do not stop verbatim loops (on by default: a loop closes the "
                          "reasoning, or ends the answer)")
    gen.add_argument("--dry-multiplier", type=float, default=None,
                     help="DRY repetition penalty strength (default 0: off; 0.8 is usual)")
    gen.add_argument("--dry-base", type=float, default=None, help="DRY base (default 1.75)")
    gen.add_argument("--dry-allowed-length", type=int, default=None,
                     help="DRY: repeats this long go unpenalized (default 2)")
    gen.add_argument("--dry-penalty-last-n", type=int, default=None,
                     help="DRY: tokens looked back (default -1: the whole context; 0: off)")
    gen.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    gen.add_argument("--hide-think", action="store_true", help="do not show the reasoning")
    gen.add_argument("--system", default=None, help="system prompt")
    gen.add_argument("--spec", default=None, metavar="PROPOSER",
                     help="speculative decoding: ngram (prompt lookup: proposes what followed "
                          "the last tokens earlier in the prompt or answer; faster when the answer "
                          "repeats its input) or mtp (DeepSeek-V3/R1's multi-token-prediction "
                          "module proposes one token per step); same output (CPU only)")
    gen.add_argument("--spec-k", type=int, default=None,
                     help="the most tokens proposed per step (default 4; ngram 8, and at most half "
                          "the length of the matched context)")
    gen.add_argument("--spec-n", type=int, default=None,
                     help="ngram: the shortest suffix of the text looked up earlier (default 2)")
    gen.add_argument("--draft", default=None, metavar="MODEL",
                     help="speculative decoding with this smaller model (same tokenizer) proposing")
    gen.add_argument("--verbose", action="store_true",
                     help="prompt and generated tokens and tok/s after each answer (stderr)")

    ap = argparse.ArgumentParser(prog="r1lite", description="Run DeepSeek-R1 family models.")
    ap.add_argument("--version", action="version", version=f"r1lite {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common, device, gen], help="answer one prompt")
    run.add_argument("prompt", help="the question (or with --raw, the text to complete)")
    run.add_argument("--raw", action="store_true", help="no chat template: complete the prompt")
    sub.add_parser("chat", parents=[common, device, gen], help="interactive chat")
    info = sub.add_parser("info", parents=[common, device], help="describe a model")
    info.add_argument("--plan", action="store_true",
                      help="from the config alone (a config.json is enough): each recipe's weights, "
                           "bytes read per token, KV cache at -c (default 4096), memory, decode bound")
    info.add_argument("--ram", type=float, default=None, help="with --plan: GB of memory to fit in")
    info.add_argument("--bandwidth", type=float, default=None,
                      help="with --plan: read bandwidth in GB/s (default: measured now, -t threads)")
    bench = sub.add_parser("bench", parents=[common, device], help="prefill and decode speed")
    bench.add_argument("--prefill", type=int, default=512, help="prompt tokens (default 512)")
    bench.add_argument("--decode", type=int, default=128, help="generated tokens (default 128)")
    bench.add_argument("--repeats", type=int, default=1, help="rounds; medians are reported")
    bench.add_argument("--depth", type=int, default=0,
                       help="decode after this many cached positions (default: after the prompt)")
    srv = sub.add_parser("serve", parents=[common], help="an OpenAI- and Anthropic-compatible HTTP server")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    srv.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    srv.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (or x-api-key: KEY)")
    srv.add_argument("--max-batch", type=int, default=8, help="requests decoded together")
    srv.add_argument("--name", default=None, help="model id clients send (default: MODEL)")
    srv.add_argument("--no-webui", action="store_true", help="no browser chat at / (API only)")
    srv.add_argument("--cache-ram", type=int, default=1024, metavar="MIB",
                     help="MiB of finished requests' KV caches kept for a later request that starts "
                          "the same, e.g. a chat's next turn (default 1024; 0: no reuse)")
    srv.add_argument("--spec", default=None, metavar="PROPOSER",
                     help="speculative decoding in every request's decode steps: ngram (prompt "
                          "lookup) or mtp (DeepSeek-V3/R1's multi-token-prediction module); the "
                          "same outputs; each request proposes fewer tokens when few are accepted "
                          "(CPU only)")
    srv.add_argument("--draft", default=None, metavar="MODEL",
                     help="speculative decoding with this smaller model (same tokenizer) proposing "
                          "greedy guesses for each request in turn")
    srv.add_argument("--spec-k", type=int, default=None,
                     help="the most tokens a request proposes per step (default: ngram 8, draft 4, "
                          "mtp 1)")
    srv.add_argument("--spec-n", type=int, default=None,
                     help="ngram: the shortest suffix of the text looked up earlier (default 2)")
    srv.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                     help="info (default): a line per request (client, path, status, tokens, "
                          "seconds); warning: only problems")
    srv.add_argument("--quiet", action="store_true", help="no banner and no request lines "
                     "(--log-level warning)")
    on_ray = srv.add_argument_group("Ray (the ray extra): replicas behind Ray Serve's HTTP proxy, "
                                 "which listens on --host/--port")
    on_ray.add_argument("--ray", action="store_true", help="serve through Ray Serve")
    on_ray.add_argument("--replicas", type=int, default=None,
                     help="with --ray: replicas, each a model and engine (default 1)")
    on_ray.add_argument("--ray-address", default=None, metavar="auto|ADDR",
                     help="with --ray: join this cluster (auto: the one this node is part of; "
                          "default: start a Ray here)")
    from .recipes import RECIPES, describe_recipes

    conv = sub.add_parser("convert", help="write a checkpoint as an r1lite model file",
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          epilog="QUANT, how the weight matrices are stored (norms and biases stay f32):\n"
                                 + describe_recipes())
    conv.add_argument("src", help="Hugging Face model folder, GGUF file, hub id, or demo")
    conv.add_argument("out", help="output .safetensors file")
    conv.add_argument("--quant", default="q8_0", choices=list(RECIPES), metavar="QUANT",
                      help="a recipe listed below (default q8_0)")
    conv.add_argument("--allow-requantize", action="store_true",
                      help="quantize a source that is already quantized in another format (rounds twice)")
    conv.add_argument("--imatrix", default=None, metavar="FILE",
                      help="an importance matrix (r1lite imatrix, or llama.cpp's llama-imatrix: GGUF or "
                           "legacy .dat) the K-quants (q2_k..q6_k) and i-quants (iq2_*) weight their "
                           "rounding error by; the iq2 recipes want one")
    imx = sub.add_parser("imatrix", parents=[common],
                         help="compute an importance matrix (llama.cpp's imatrix GGUF) over a text")
    imx.add_argument("text", help="calibration text file")
    imx.add_argument("-o", "--output", default="imatrix.gguf", help="output file (default imatrix.gguf)")
    imx.add_argument("--chunk", type=int, default=512, help="tokens per chunk, each from an empty cache (default 512)")
    imx.add_argument("--chunks", type=int, default=None, help="at most this many chunks (default: all)")
    imx.add_argument("--process-output", action="store_true", help="include the output head (output.weight)")
    pull = sub.add_parser("pull", help="download a hub model and convert it into the model store")
    pull.add_argument("repo_id", help="Hugging Face hub id, owner/name")
    pull.add_argument("--quant", default=None, choices=list(RECIPES), metavar="QUANT",
                      help="weight format, a recipe of r1lite convert (default q8_0, or R1LITE_HUB_QUANT)")
    sub.add_parser("list", help="the models in the store (R1LITE_HOME/models)")
    rm = sub.add_parser("rm", help="remove a model from the store")
    rm.add_argument("name", help="store name, as r1lite list shows it")
    return ap


def _gen_kwargs(args) -> dict:
    max_think = 0 if args.think is False else args.max_think
    n = DEFAULT_MAX_TOKENS if args.max_tokens is None else args.max_tokens
    return dict(max_new_tokens=None if n < 0 else n,
                temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                repetition_penalty=args.repeat_penalty, seed=args.seed, stop=args.stop,
                max_thinking_tokens=max_think, reasoning_effort=args.reasoning_effort,
                thinking_margin=args.think_margin, loop_guard=args.loop_guard,
                dry_multiplier=args.dry_multiplier, dry_base=args.dry_base,
                dry_allowed_length=args.dry_allowed_length,
                dry_penalty_last_n=args.dry_penalty_last_n)


def _spec_setting(args):
    """What --spec / --spec-k / --spec-n / --draft ask for, unchecked: None (off) or the
    speculative= value of generation and of the server's engine; a draft model is loaded here."""
    if args.spec is None and args.draft is None:
        return None
    spec = {"proposer": "draft" if args.draft is not None else args.spec}
    if args.draft is not None:
        import r1lite

        if not getattr(args, "quiet", False):
            print(f"loading draft {args.draft} ...", file=sys.stderr)
        spec["draft"] = r1lite.load(args.draft, threads=args.threads, context=args.context,
                                    device=getattr(args, "device", "cpu"), kv_cache=args.kv_cache)
    if args.spec_k is not None:
        spec["k"] = args.spec_k
    if args.spec_n is not None:
        spec["n"] = args.spec_n
    return spec


def _speculative(args, model):
    """_spec_setting checked against the model (bad settings fail before the first prompt)."""
    from .speculative import parse_speculative

    spec = _spec_setting(args)
    if spec is not None:
        parse_speculative(spec, model)
    return spec


def _effective(model, kw: dict, default_n: bool) -> dict:
    """kw with the thinking budget the default answer length needs: on the default -n
    (default_n), a model that thinks and has no budget of its own reasons for at most
    THINK_SHARE of it, so that the answer still comes."""
    kw = dict(kw)
    thinks = model.tokenizer is not None and model.tokenizer.thinks
    if (default_n and thinks and kw.get("max_thinking_tokens") is None
            and kw.get("reasoning_effort") is None and kw.get("max_new_tokens")):
        kw["max_thinking_tokens"] = int(kw["max_new_tokens"] * THINK_SHARE)
    return kw


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
              f"finish: {g.finish_reason}"
              + (f", {s['acceptance_rate']:.0%} of proposed tokens accepted, "
                 f"{s['tokens_per_step']:.2f} tokens per step" if "acceptance_rate" in s else "")
              + (f", reasoning closed by the {s['reasoning_closed_by'].replace('_', ' ')}"
                 if s.get("reasoning_closed_by") else "") + "]", file=sys.stderr)
    elif g.finish_reason == "repetition":
        print("[stopped: the answer repeated itself verbatim]", file=sys.stderr)
    return g


def _check_args(args) -> None:
    """Refuse bad flag values before a model loads (seconds for the demo, minutes for a 70B file):
    InvalidArgument (a ValueError) or RuntimeError (a GPU that is not there) naming the flag."""
    from .errors import InvalidArgument
    from .generate import check_generation_kwargs
    from .loader import check_device_available, parse_kv_cache

    for flag, name in (("-c/--context", "context"), ("-t/--threads", "threads"),
                       ("--prefill", "prefill"), ("--decode", "decode"), ("--repeats", "repeats"),
                       ("--max-batch", "max_batch"), ("--replicas", "replicas")):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InvalidArgument(f"{flag} must be >= 1, got {value}", name)
    if getattr(args, "cache_ram", 0) < 0:
        raise InvalidArgument(f"--cache-ram must be >= 0 MiB, got {args.cache_ram}", "cache_ram")
    if getattr(args, "depth", 0) < 0:
        raise InvalidArgument(f"--depth must be >= 0, got {args.depth}", "depth")
    if getattr(args, "max_tokens", None) is not None and (args.max_tokens == 0 or args.max_tokens < -1):
        raise InvalidArgument(f"-n/--max-tokens must be >= 1 (or -1: no limit), got {args.max_tokens}",
                              "max_tokens")
    if hasattr(args, "temp"):
        check_generation_kwargs(**_gen_kwargs(args))
    if hasattr(args, "spec"):
        _check_spec_flags(args)
    if hasattr(args, "kv_cache"):
        parse_kv_cache(args.kv_cache, getattr(args, "device", "cpu"))
    if hasattr(args, "device"):
        check_device_available(args.device)
    if args.command == "serve" and args.ray:
        _check_ray_args(args)
    elif args.command == "serve":
        from .server import listen_socket

        if args.replicas is not None or args.ray_address is not None:
            raise InvalidArgument("--replicas and --ray-address need --ray", "ray")
        args.socket = listen_socket(args.host, args.port)  # a port in use fails before loading


def _check_spec_flags(args) -> None:
    """The speculative decoding flags that can be refused without a model."""
    from .errors import InvalidArgument

    if args.spec not in (None, "ngram", "mtp", "draft"):
        raise InvalidArgument(f"--spec must be ngram or mtp (or draft, with --draft MODEL), got {args.spec!r}", "spec")
    if args.spec == "mtp" and args.spec_n is not None:
        raise InvalidArgument("--spec-n is for --spec ngram, not mtp", "spec")
    draft = getattr(args, "draft", None)
    if args.command == "serve" and (args.spec is not None or draft is not None) and args.ray:
        raise InvalidArgument("--spec and --draft are not supported with --ray yet", "spec")
    if args.spec == "draft" and draft is None:
        raise InvalidArgument("--spec draft needs --draft MODEL", "spec")
    if args.spec is None and draft is None and (args.spec_k is not None or args.spec_n is not None):
        raise InvalidArgument("--spec-k and --spec-n need --spec ngram or --draft MODEL (--spec-k "
                              "also --spec mtp)", "spec")
    if args.spec == "mtp" and args.spec_k not in (None, 1):
        raise InvalidArgument(f"--spec-k must be 1 with --spec mtp (its module proposes one token "
                              f"per step), got {args.spec_k}", "spec")
    if draft is not None and args.spec not in (None, "draft"):
        raise InvalidArgument(f"--spec {args.spec} and --draft are two proposers: choose one", "spec")
    for flag, value in (("--spec-k", args.spec_k), ("--spec-n", args.spec_n)):
        if value is not None and value < 1:
            raise InvalidArgument(f"{flag} must be >= 1, got {value}", "spec")


def _check_ray_args(args) -> None:
    """serve --ray's flags, before Ray starts: the extra, the device, the port, and for a Ray
    started here the model (resolved once here) and room for every replica."""
    from .errors import InvalidArgument
    from .server import listen_socket
    from .serving import check_local_room, check_ray_extra, default_threads, local_model

    check_ray_extra()
    if getattr(args, "device", "cpu") != "cpu":
        raise InvalidArgument("--ray runs replicas on CPUs; --device is not supported with it yet",
                              "device")
    if args.port == 0:
        raise InvalidArgument("--ray needs a fixed --port (Ray's HTTP proxy listens on it)", "port")
    args.replicas = args.replicas or 1
    args.threads = args.threads or default_threads(args.replicas)
    if args.ray_address is None:
        listen_socket(args.host, args.port).close()  # a port in use fails before Ray starts
        check_local_room(args.replicas, args.threads)
        args.model_path = local_model(args.model)
    else:
        args.model_path = args.model  # read by the cluster's nodes


def _load(args):
    import r1lite

    if not getattr(args, "quiet", False):
        print(f"loading {args.model} ...", file=sys.stderr)
    model = r1lite.load(args.model, threads=args.threads, context=args.context,
                        device=getattr(args, "device", "cpu"), kv_cache=args.kv_cache)
    c = model.config
    if args.context is not None and args.context > c["max_position_embeddings"] and c["rope_kind"] != "yarn":
        print(f"r1lite: warning: -c {args.context} is beyond the {c['max_position_embeddings']} tokens "
              "the model was trained for; past them its output degrades", file=sys.stderr)
    return model


def cmd_run(args) -> int:
    model = _load(args)
    kw = _effective(model, _gen_kwargs(args), args.max_tokens is None)
    spec = _speculative(args, model)
    if args.raw:
        stream = model.stream(args.prompt, speculative=spec, **kw)
    else:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        stream = model.chat_stream(messages + [{"role": "user", "content": args.prompt}],
                                   speculative=spec, **kw)
    return 0 if _stream(stream, args) is not None else 130


class Repl:
    """`r1lite chat`: the conversation and the settings that /set changes."""

    def __init__(self, model, args):
        self.model, self.args = model, args
        self.kw = _gen_kwargs(args)
        self.budget = args.max_think  # the budget /set think on restores
        self.default_n = args.max_tokens is None  # -n not chosen (/set num_predict chooses it)
        self.system = args.system
        self.history: list[dict] = []
        self.speculative = None  # generation's speculative= (cmd_chat sets it)

    # -- commands ------------------------------------------------------------------------------

    def command(self, text: str) -> bool:
        """Run a /command; False to leave."""
        words = text.split(None, 2)
        cmd = words[0]
        if cmd in ("/bye", "/exit"):
            return False
        if cmd == "/clear":
            self.history = []
            print("(conversation cleared)")
        elif cmd in ("/help", "/?"):
            print(HELP)
        elif cmd == "/set":
            self.set(text.split(None, 1)[1] if len(words) > 1 else "")
        elif cmd == "/show":
            self.show(words[1] if len(words) > 1 else "")
        elif cmd in ("/save", "/load"):
            if len(words) < 2:
                print(f"usage: {cmd} FILE")
                return True
            path = text.split(None, 1)[1].strip()
            try:
                self.save(path) if cmd == "/save" else self.load(path)
            except (OSError, ValueError) as e:
                print(f"error: {e}")
        else:
            print(f"unknown command {text}; /help lists them")
        return True

    def set(self, rest: str) -> None:
        words = rest.split(None, 1)
        if not words:
            print("usage: /set NAME VALUE (/help lists them)")
            return
        name, value = words[0], words[1].strip() if len(words) > 1 else ""
        if name == "parameter":
            parts = value.split(None, 1)
            if len(parts) < 2:
                print("usage: /set parameter NAME VALUE")
                return
            name, value = parts[0], parts[1].strip()
        if name == "system":
            self.system = value or None
            print("(system prompt set)" if value else "(system prompt removed)")
        elif name in ("verbose", "quiet"):
            self.args.verbose = name == "verbose"
            print(f"(stats {'on' if self.args.verbose else 'off'})")
        elif name in ("think", "nothink"):
            self.set_think("off" if name == "nothink" else value)
        elif name in SETTINGS:
            self.set_value(name, value)
        else:
            print(f"unknown setting {name}; /help lists them")

    def set_think(self, value: str) -> None:
        parts = value.split()
        if parts[:1] == ["budget"] and len(parts) == 2:
            try:
                n = int(parts[1])
            except ValueError:
                print(f"the budget must be a number of tokens, got {parts[1]}")
                return
            self.budget = None if n < 0 else n
            if self.kw["max_thinking_tokens"] != 0 or self.budget == 0:
                self.kw["max_thinking_tokens"] = self.budget
            print(f"(thinking budget {'none' if self.budget is None else self.budget})")
        elif value == "on":
            self.kw["max_thinking_tokens"] = self.budget if self.budget != 0 else None
            print("(thinking on)")
        elif value == "off":
            self.kw["max_thinking_tokens"] = 0
            print("(thinking off)")
        elif value in ("hide", "show"):
            self.args.hide_think = value == "hide"
            print(f"(thinking {'hidden' if self.args.hide_think else 'shown'})")
        else:
            print("usage: /set think on|off|hide|show, or /set think budget N")

    def set_value(self, name: str, value: str) -> None:
        key, kind = SETTINGS[name]
        try:
            if kind == "bool":
                if value not in ("on", "off", "true", "false"):
                    raise ValueError(f"{name} is on or off, got {value!r}")
                parsed = value in ("on", "true")
            elif kind is str:
                if not value:
                    raise ValueError("stop needs a text")
                parsed = [value]
            else:
                parsed = kind(value)
            if key == "max_new_tokens":
                self.default_n = False
                if parsed < 0:
                    parsed = None
            trial = dict(self.kw, **{key: parsed})
            self._check(trial)
        except ValueError as e:
            print(f"error: {e}")
            return
        self.kw = trial
        print(f"(set {name} to {value})")

    def _check(self, kw: dict) -> None:
        """InvalidArgument (a ValueError) for settings generation would refuse."""
        from .model import Prompt

        self.model.new_sequence(Prompt([0]), **_effective(self.model, kw, self.default_n))

    def show(self, what: str) -> None:
        if what == "info":
            for k, v in _info_rows(self.model):
                print(f"{k:18} {v}")
        elif what == "parameters":
            for k, v in self.parameters():
                print(f"{k:20} {v}")
        elif what == "system":
            print(self.system or "(no system prompt)")
        else:
            print("usage: /show info | parameters | system")

    def parameters(self) -> list:
        kw = _effective(self.model, self.kw, self.default_n)
        defaults = self.model.sampling_defaults()
        rows = [(k, kw.get(k) if kw.get(k) is not None else f"{defaults[k]} (model default)")
                for k in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")]
        budget = kw.get("max_thinking_tokens")
        thinks = self.model.tokenizer is not None and self.model.tokenizer.thinks
        rows += [
            ("seed", kw.get("seed") if kw.get("seed") is not None else "random"),
            ("num_predict", kw.get("max_new_tokens") or "none (until the end)"),
            ("think", ("off" if budget == 0 else "on") if thinks else "(the model does not think)"),
            ("think budget", "none" if budget is None else budget),
            ("think shown", "no" if self.args.hide_think else "yes"),
            ("loop_guard", "on" if kw.get("loop_guard", True) else "off"),
            ("dry_multiplier", kw.get("dry_multiplier") or "0 (off)"),
            *[(k, kw[k]) for k in ("dry_base", "dry_allowed_length", "dry_penalty_last_n")
              if kw.get(k) is not None],
            ("stop", kw.get("stop") or "none"),
            ("verbose", "on" if self.args.verbose else "off"),
        ]
        return rows

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"system": self.system, "messages": self.history}, f, ensure_ascii=False,
                      indent=1)
        print(f"(saved {len(self.history)} messages to {path})")

    def load(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, list):
            data = {"messages": data}
        messages = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
                and isinstance(m.get("content"), str) for m in messages):
            raise ValueError(f"{path}: not a saved conversation (messages with role and content)")
        system = [m for m in messages if m["role"] == "system"]
        self.history = [m for m in messages if m["role"] != "system"]
        self.system = data.get("system") or (system[0]["content"] if system else self.system)
        print(f"(loaded {len(self.history)} messages from {path})")

    # -- a turn --------------------------------------------------------------------------------

    def ask(self, text: str) -> None:
        system = [{"role": "system", "content": self.system}] if self.system else []
        messages = system + self.history + [{"role": "user", "content": text}]
        try:
            g = _stream(self.model.chat_stream(
                messages, speculative=self.speculative,
                **_effective(self.model, self.kw, self.default_n)), self.args)
        except ValueError as e:  # e.g. the conversation outgrew the context
            print(f"error: {e}", file=sys.stderr)
            return
        if g is not None:
            self.history += [{"role": "user", "content": text},
                             {"role": "assistant", "content": g.text}]


def _read_message(first: str) -> str | None:
    """A line, or with \"\"\" the lines up to the closing \"\"\" (None: input ended)."""
    if not first.lstrip().startswith('"""'):
        return first
    text = first.lstrip()[3:]
    if text.rstrip().endswith('"""') and text.strip() != "":
        return text.rstrip()[:-3]
    lines = [text] if text else []
    while True:
        try:
            line = input("... ")
        except EOFError:
            return None
        if line.rstrip().endswith('"""'):
            lines.append(line.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(line)


def cmd_chat(args) -> int:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    model = _load(args)
    repl = Repl(model, args)
    repl._check(repl.kw)  # bad flags fail now, as run's do
    repl.speculative = _speculative(args, model)
    print("type /help for help, /bye to leave", file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
            text = _read_message(line)
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print("\nUse Ctrl-D or /bye to leave.")
            continue
        if text is None:
            print()
            return 0
        if not text.strip():
            continue
        if text.strip().startswith("/") and not line.lstrip().startswith('"""'):
            if not repl.command(text.strip()):
                return 0
            continue
        repl.ask(text)


def _attention_row(c: dict) -> tuple[str, str]:
    if c.get("attention") == "mla":
        return ("attention", f"MLA, {c['num_heads']} heads, latent {c['kv_lora_rank']} + rope "
                             f"{c['qk_rope_head_dim']}, q_lora {c['q_lora_rank'] or 'none'}")
    return ("heads / kv heads", f"{c['num_heads']} / {c['num_kv_heads']} (head dim {c['head_dim']})")


def cmd_info(args) -> int:
    if args.plan:
        return _plan(args)
    model = _load(args)
    for k, v in _info_rows(model):
        print(f"{k:18} {v}")
    return 0


def _plan(args) -> int:
    from . import _core
    from .loader import default_threads
    from .plan import describe_config, format_plan, plan, read_config

    for flag, value in (("--ram", args.ram), ("--bandwidth", args.bandwidth)):
        if value is not None and not value > 0:
            raise ValueError(f"{flag} must be a positive number of GB(/s), got {value}")
    config = read_config(args.model)
    context = args.context or 4096
    kv = args.kv_cache or "f16"
    if args.bandwidth:
        bandwidth, where = args.bandwidth * 1e9, "given"
    else:
        threads = args.threads or default_threads()
        bandwidth = _core.measure_read_bandwidth(1 << 30, threads, 5)
        where = f"measured, {threads} threads"
    print(f"{args.model}: {describe_config(config)}")
    print(f"KV cache {kv} at {context} positions; read bandwidth {bandwidth / 1e9:.1f} GB/s ({where}); "
          "decode bound = bandwidth / (weights read + cache) per token")
    for line in format_plan(plan(config, context=context, kv_cache=kv, bandwidth=bandwidth),
                            ram=args.ram * 1e9 if args.ram else None):
        print(line)
    return 0


def _info_rows(model) -> list:
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
        ("cache per token", f"{model.kv_bytes_per_token / 1024:.1f} KiB ({c['kv_cache']}); "
                            f"{_size(model.kv_bytes_per_token * c['context'])} at the full context"),
        ("read per token", f"{_size(s['decode_bytes_per_token'])} of weights per decode step"),
        ("weight formats", _format_shares(s)),
        ("context", f"{c['context']} (trained for {c['max_position_embeddings']})"),
        ("rope", c["rope_kind"] + f", theta {c['rope_theta']:g}"
                 + (", per-frequency factors (GGUF rope_freqs)" if c.get("rope_freq_factors") else "")),
        ("file size", f"{s['file_bytes'] / 2**20:.1f} MiB"),
        ("tokenizer", "none" if tok is None else
         f"{tok.vocab_size} tokens, chat template: {'yes' if tok.has_chat_template else 'no'}, "
         f"reasoning (<think>): {'yes' if tok.thinks else 'no'}"),
    ]
    return rows


def _format_shares(summary: dict) -> str:
    """Each weight format's share of the weight bytes, largest first: "q4_k 72% (113 tensors), ..."."""
    total = sum(summary["format_bytes"].values()) or 1
    shares = sorted(summary["format_bytes"].items(), key=lambda kv: -kv[1])
    return ", ".join(f"{fmt} {100 * n / total:.0f}% ({summary['tensor_formats'][fmt]} tensors)"
                     for fmt, n in shares)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def cmd_bench(args) -> int:
    import r1lite

    from .benchmark import bandwidth, run

    print(f"loading {args.model} ...", file=sys.stderr)
    depth = max(args.depth, args.prefill)
    model = r1lite.load(args.model, threads=args.threads, context=depth + args.decode + 1,
                        device=args.device, kv_cache=args.kv_cache)
    weights = model.summary["decode_bytes_per_token"]
    cache = model.kv_bytes_per_token * (depth + args.decode // 2)  # the cache read, mid-decode
    per_token = weights + cache
    before, where, measured = bandwidth(model)
    with model.session() as session:
        rates = run(session, model.config["vocab_size"], args.prefill, args.decode, args.repeats,
                    depth=args.depth)
    after, _, _ = bandwidth(model)
    read = max(before, after)  # probed before and after: a load that came and went shows
    achieved = rates["decode_tok_s"] * per_token
    print(f"{args.model}: {where}, {_size(per_token)} read per decode step at depth {depth}: "
          f"{_size(weights)} of weights, {_size(cache)} of {model.config['kv_cache']} KV cache "
          f"({100 * cache / per_token:.0f}%)")
    print(f"prefill {args.prefill} tokens: {rates['prefill_tok_s']:.1f} tok/s")
    print(f"decode {args.decode} tokens:  {rates['decode_tok_s']:.2f} tok/s = {achieved / 1e9:.2f} GB/s, "
          f"{100 * achieved / read:.0f}% of the measured {measured} ({read / 1e9:.1f} GB/s)")
    if achieved > read or min(before, after) < 0.8 * read:
        print(f"note: the probe read {before / 1e9:.1f} GB/s before and {after / 1e9:.1f} GB/s after the "
              f"run: the machine's load changed; rerun when it is quiet", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from .server import serve

    if args.ray:
        return _serve_ray(args)
    from .batch_speculation import BatchSpeculation

    model = _load(args)
    speculative = BatchSpeculation.parse(_spec_setting(args), model)  # before the banner
    name = args.name or args.model
    port = args.socket.getsockname()[1]  # --port 0: the port the system chose
    if not args.quiet:
        print(f"serving {name} on http://{args.host}:{port}/v1 (Ctrl-C stops)", file=sys.stderr)
        if not args.no_webui:
            print(f"chat in a browser: http://{args.host}:{port}/", file=sys.stderr)
    serve(model, name, host=args.host, port=args.port, api_key=args.api_key, max_batch=args.max_batch,
          webui=not args.no_webui, sock=args.socket, log_level="warning" if args.quiet else args.log_level,
          cache_ram=args.cache_ram << 20, speculative=speculative)
    return 0


def _serve_ray(args) -> int:
    from .serving import serve_on_ray

    serve_on_ray(args.model_path, address=args.ray_address, host=args.host, port=args.port,
                 quiet=args.quiet, replicas=args.replicas, threads=args.threads,
                 name=args.name or args.model, context=args.context, kv_cache=args.kv_cache,
                 max_batch=args.max_batch, api_key=args.api_key, webui=not args.no_webui,
                 log_level="warning" if args.quiet else args.log_level)
    return 0


def cmd_convert(args) -> int:
    import time

    from .converter import convert

    t0 = time.perf_counter()
    out = convert(args.src, args.out, args.quant, allow_requantize=args.allow_requantize,
                  imatrix=args.imatrix)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.quant}) in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def cmd_imatrix(args) -> int:
    from .imatrix import compute_imatrix, write_imatrix

    if args.chunk < 1 or (args.chunks is not None and args.chunks < 1):
        raise ValueError("--chunk and --chunks must be positive")
    from pathlib import Path

    text = Path(args.text).read_text(encoding="utf-8")
    model = _load(args)
    tok = model.tokenizer
    if tok is None:
        raise ValueError(f"{args.model}: no tokenizer to read the text with")
    ids = tok.encode(text, add_special_tokens=True)
    bos = tok.bos_id if ids and tok.bos_id is not None and ids[0] == tok.bos_id else None

    def progress(i, n):
        print(f"\rchunk {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)

    im = compute_imatrix(model, ids, chunk=args.chunk, chunks=args.chunks, bos_id=bos,
                         include_output=args.process_output, progress=progress)
    im.datasets = [args.text]
    write_imatrix(args.output, im)
    print(f"wrote {args.output}: {len(im.entries)} matrices, {im.chunk_count} chunks of {args.chunk} "
          f"tokens", file=sys.stderr)
    return 0


def cmd_pull(args) -> int:
    from . import store

    entry = store.pull(args.repo_id, args.quant)
    print(f"{entry.name}  ({entry.path.stat().st_size / 2**20:.1f} MiB, {entry.path})")
    return 0


def cmd_list(args) -> int:
    from . import store

    rows = [e.describe() for e in store.entries()]
    if not rows:
        print(f"(no models in {store.store_dir()}; r1lite pull OWNER/NAME adds one)", file=sys.stderr)
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'NAME':{width}}  {'ARCHITECTURE':12}  {'FORMAT':8}  {'SIZE':>10}  CONTEXT")
    for r in rows:
        print(f"{r['name']:{width}}  {r['architecture']:12}  {r['format']:8}  "
              f"{_size(r['size']):>10}  {r['context']}")
    return 0


def cmd_rm(args) -> int:
    from . import store

    entry = store.remove(args.name)
    print(f"removed {entry.name} ({entry.path})")
    return 0


# Errors a user can act on: one line, exit status 1. Anything else is a bug: one line too, with
# the way to see where it happened (R1LITE_DEBUG=1 re-raises it with its traceback).
USER_ERRORS = (FileNotFoundError, ValueError, OSError, ImportError, RuntimeError, MemoryError)


def main(argv=None) -> int:
    import os

    args = _parser().parse_args(argv)
    handler = {"run": cmd_run, "chat": cmd_chat, "info": cmd_info, "convert": cmd_convert,
               "serve": cmd_serve, "bench": cmd_bench, "pull": cmd_pull, "list": cmd_list,
               "rm": cmd_rm, "imatrix": cmd_imatrix}[args.command]
    try:
        _check_args(args)
        return handler(args)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("R1LITE_DEBUG"):
            raise
        if isinstance(e, MemoryError):
            print("r1lite: error: out of memory (a smaller -c, or a smaller quantization, needs less)",
                  file=sys.stderr)
        elif isinstance(e, USER_ERRORS):
            print(f"r1lite: error: {e}", file=sys.stderr)
        else:
            print(f"r1lite: error: {type(e).__name__}: {e} (an r1lite bug: please report it; "
                  "R1LITE_DEBUG=1 shows where it happened)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
