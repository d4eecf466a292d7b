#!/usr/bin/env python3
"""QAT fine-tune-and-benchmark for quantune, in plain PyTorch (configs/gemma1b-qat.toml).

One trial: fine-tune a causal language model at the trial's learning rate and batch size with
the linear layers' weights (and, for int8/fp8, their inputs) fake-quantized through a
straight-through estimator; evaluate the loss on held-out text against the unquantized model;
then time greedy generation — per-token latency at batch 1 and throughput at the study's batch —
with warm-up first and CUDA events on a GPU (perf_counter on CPU), several repeats, median, p90
and spread. Parameters come in and metrics go out through ``quantune_trial`` (examples/).

Models:
  --model tiny         a small byte-level transformer defined here (no downloads; --d-model,
                       --layers, --heads size it: 128/2/4 for CPU tests, 1024/8/16 on a GPU)
  --model HF_NAME      a Hugging Face causal LM (needs ``transformers``), e.g. google/gemma-3-1b-pt

Formats (``quantization``): f32, f16, bf16, int8 (per-output-channel symmetric weights, per-token
activations), int4 (weights in groups of 32, symmetric), fp8 (e4m3 weights and activations;
needs torch.float8_e4m3fn, compute capability >= 8.9 for fast kernels).

What the timing measures: on a CUDA GPU, int8 runs on ``torch._int_mm`` and fp8 on
``torch._scaled_mm`` (both in plain PyTorch; the weights stored quantized, the activations
quantized per call). int4 has no kernel in plain PyTorch: with ``torchao`` installed int8/int4
weights are converted by ``torchao.quantization`` and run on its kernels; otherwise (and on CPU)
the fake-quantized weights are *materialized* (stored dequantized in the compute dtype). The
final line's ``kernel`` says which one ran, so a leaderboard never mistakes dequantized timing
for real int4 speed.
"""

import argparse
import contextlib
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import quantune_trial as qt  # noqa: E402

FORMATS = ("f32", "f16", "bf16", "int8", "int4", "fp8")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEXT = os.path.join(HERE, "..", "..", "data", "qat-bench", "persuasion.txt")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--d-model", type=int, default=128, help="width of --model tiny")
    p.add_argument("--layers", type=int, default=2, help="blocks of --model tiny")
    p.add_argument("--heads", type=int, default=4, help="attention heads of --model tiny")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--quantization", choices=FORMATS, default=None)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--text", default=DEFAULT_TEXT, help="fine-tuning text; its last 10%% is held out")
    p.add_argument("--eval-tokens", type=int, default=8192)
    p.add_argument("--bench-tokens", type=int, default=64)
    p.add_argument("--bench-repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    a = p.parse_args(argv)
    # quantune's parameters override the command line (QUANTUNE_PARAMS).
    prm = qt.params({"learning_rate": a.learning_rate, "batch_size": a.batch_size,
                     "quantization": a.quantization})
    a.learning_rate = float(prm["learning_rate"] or 1e-4)
    a.batch_size = int(prm["batch_size"] or 8)
    a.quantization = str(prm["quantization"] or "bf16")
    if a.quantization not in FORMATS:
        p.error(f"quantization {a.quantization!r}: allowed {', '.join(FORMATS)}")
    if a.bench_repeats < 5:
        p.error("--bench-repeats must be >= 5")
    return a


# ---- fake quantization (straight-through estimator) ----

def make_quantizers(torch):
    def ste(x, q):
        # The value of q(x), the gradient of the identity: round() alone has zero gradient.
        return x + (q - x).detach()

    def int8_weight(w):
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        return (w / scale).round().clamp(-127, 127) * scale

    def int8_act(x):
        scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 127.0
        return (x / scale).round().clamp(-127, 127) * scale

    def int4_weight(w, group=32):
        out_f, in_f = w.shape
        g = w.reshape(out_f, in_f // group, group)
        scale = g.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / 7.0
        return ((g / scale).round().clamp(-8, 7) * scale).reshape(out_f, in_f)

    def fp8(x):
        return x.to(torch.float8_e4m3fn).to(x.dtype)

    def cast(dtype):
        return lambda x: x.to(dtype).to(x.dtype)

    weight = {"f32": None, "f16": cast(torch.float16), "bf16": cast(torch.bfloat16),
              "int8": int8_weight, "int4": int4_weight, "fp8": fp8}
    act = {"f32": None, "f16": None, "bf16": None, "int8": int8_act, "int4": None, "fp8": fp8}
    return ste, weight, act


def add_fake_quant(torch, model, fmt):
    """Wraps every nn.Linear's forward so weights (and inputs, where the format implies it) are
    fake-quantized. Returns the number of layers wrapped."""
    ste, weight_q, act_q = make_quantizers(torch)
    wq, aq = weight_q[fmt], act_q[fmt]
    n = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear) and (fmt != "int4" or mod.in_features % 32 == 0):
            def forward(x, mod=mod):
                w = mod.weight
                if wq is not None:
                    w = ste(w, wq(w))
                if aq is not None:
                    x = ste(x, aq(x))
                return torch.nn.functional.linear(x, w, mod.bias)
            mod.forward = forward
            n += 1
    return n


def materialize(torch, model, fmt, device):
    """After fine-tuning: store the quantized values for inference and pick the kernel the
    timing runs on. On a CUDA GPU int8 runs on ``torch._int_mm`` (int8 x int8 -> int32, per-channel
    weight and per-token activation scales) and fp8 on ``torch._scaled_mm`` (e4m3, per-tensor
    scales); elsewhere torchao's kernels when installed; else the dequantized values on dense
    matmul. Returns the kernel's name."""
    _, weight_q, _ = make_quantizers(torch)
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.__dict__.pop("forward", None)  # back to nn.Linear.forward
    if device.type == "cuda" and fmt in ("int8", "fp8"):
        try:
            n = real_kernels(torch, model, fmt)
            return {"int8": f"torch._int_mm int8 ({n} layers)",
                    "fp8": f"torch._scaled_mm fp8 e4m3 ({n} layers)"}[fmt]
        except Exception as e:  # an older PyTorch, or shapes the kernel refuses
            print(f"qat_finetune: no {fmt} kernel here ({e}); timing dequantized weights",
                  file=sys.stderr)
    if fmt in ("int8", "int4"):
        try:
            from torchao.quantization import int4_weight_only, int8_weight_only, quantize_
            quantize_(model, int8_weight_only() if fmt == "int8" else int4_weight_only(group_size=32))
            return f"torchao {fmt} weight-only"
        except Exception as e:  # no torchao, or no kernel for this device/dtype
            print(f"qat_finetune: torchao unavailable for {fmt} ({e}); timing dequantized weights",
                  file=sys.stderr)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear) and weight_q[fmt] is not None:
                if fmt != "int4" or mod.in_features % 32 == 0:
                    mod.weight.copy_(weight_q[fmt](mod.weight))
    return {"f32": "dense f32", "f16": "dense f16", "bf16": "dense bf16"}.get(
        fmt, f"dequantized {fmt} (dense matmul)")


def real_kernels(torch, model, fmt):
    """Replaces every nn.Linear (both sizes multiples of 16) with int8 or fp8 weights and a
    forward on the GPU's low-precision matmul; the weights are stored quantized (a buffer),
    so ``weight_mib`` counts what is really held. Checks one layer against the dense result
    first. Returns the number of layers converted."""
    F = torch.nn.functional
    f8 = torch.float8_e4m3fn if fmt == "fp8" else None
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)
              and m.in_features % 16 == 0 and m.out_features % 16 == 0]
    if not layers:
        raise RuntimeError("no linear layer with sizes that are multiples of 16")
    for mod in layers:
        w = mod.weight.detach().float()
        if fmt == "int8":
            sw = (w.abs().amax(dim=1).clamp(min=1e-12) / 127.0).contiguous()
            wq = (w / sw[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        else:
            sw = (w.abs().amax().clamp(min=1e-12) / 448.0).reshape(())
            wq = (w / sw).to(f8).contiguous()
        bias = mod.bias

        def forward(x, wq=wq, sw=sw, bias=bias, out=mod.out_features):
            shape = x.shape
            x2 = x.reshape(-1, shape[-1]).float()
            m = x2.shape[0]
            # The kernels want rows in multiples of 16 (int8: more than 16): pad, then cut.
            rows = max(32, (m + 15) // 16 * 16)
            if fmt == "int8":
                sx = x2.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
                xq = F.pad((x2 / sx).round().clamp(-127, 127).to(torch.int8), (0, 0, 0, rows - m))
                y = torch._int_mm(xq, wq.t())[:m].float() * sx * sw[None, :]
            else:
                sx = (x2.abs().amax().clamp(min=1e-12) / 448.0).reshape(())
                xq = F.pad(x2 / sx, (0, 0, 0, rows - m)).to(f8)
                y = torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw,
                                     out_dtype=torch.bfloat16)[:m].float()
            if bias is not None:
                y = y + bias.float()
            return y.to(x.dtype).reshape(*shape[:-1], out)

        with torch.no_grad():
            probe = torch.randn(3, mod.in_features, device=w.device)
            ref = probe @ w.t()
            got = forward(probe)
            err = ((got - ref).norm() / ref.norm().clamp(min=1e-12)).item()
            if not err < 0.1:
                raise RuntimeError(f"{fmt} kernel off by {err:.3f} (relative) on a probe")
        del mod._parameters["weight"]
        mod.register_buffer("weight_q", wq)
        mod.register_buffer("weight_scale", sw)
        mod.forward = forward
    return len(layers)


# ---- models ----

def autocast(torch, device, dtype):
    """Mixed precision in ``dtype``, or nothing for f32 (older PyTorch rejects an f32 autocast
    even when it is disabled)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def attention(torch, q, k, v):
    """Causal attention: PyTorch's fused kernel where it has one (2.0+), else written out."""
    sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if sdpa is not None:
        return sdpa(q, k, v, is_causal=True)
    t = q.shape[-2]
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    w = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return torch.softmax(w.masked_fill(mask, float("-inf")), dim=-1) @ v


def tiny_model(torch, seq_len, d=128, layers=2, heads=4):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
            self.up, self.down = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.n1(x)).view(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            y = attention(torch, q, k, v)
            x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
            return x + self.down(torch.nn.functional.gelu(self.up(self.n2(x))))

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(256, d), nn.Embedding(seq_len, d)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 256, bias=False)

        def forward(self, ids):
            x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.norm(x))

    return Tiny()


class ByteTokenizer:
    def encode(self, text):
        return list(text.encode("utf-8"))


def load_model(torch, args, device):
    if args.model == "tiny":
        if args.d_model % args.heads or args.d_model % 32:
            qt.infeasible("--d-model must be a multiple of --heads and of 32")
            sys.exit(0)
        model = tiny_model(torch, args.seq_len, args.d_model, args.layers, args.heads)
        return model.to(device), ByteTokenizer(), lambda m, ids: m(ids)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        qt.infeasible("--model needs the transformers package on this worker")
        sys.exit(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).to(device)
    return model, tok, lambda m, ids: m(input_ids=ids).logits


# ---- loop pieces ----

def batches(torch, data, seq_len, batch, gen, device):
    starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=gen)
    x = torch.stack([data[s:s + seq_len] for s in starts])
    y = torch.stack([data[s + 1:s + seq_len + 1] for s in starts])
    return x.to(device), y.to(device)


def evaluate(torch, model, logits_of, data, seq_len, tokens, device, dtype):
    model.eval()
    n = max(1, min(tokens, len(data) - 1) // seq_len)
    total = 0.0
    with torch.no_grad(), autocast(torch, device, dtype):
        for i in range(0, n, 16):
            idx = range(i, min(n, i + 16))
            x = torch.stack([data[j * seq_len:(j + 1) * seq_len] for j in idx]).to(device)
            y = torch.stack([data[j * seq_len + 1:(j + 1) * seq_len + 1] for j in idx]).to(device)
            logits = logits_of(model, x).float()
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item() * len(idx)
    model.train()
    return total / n


def time_generation(torch, model, logits_of, prompt, batch, tokens, warmup, repeats, device, ctx):
    """Greedy decoding without a KV cache (the tiny model has none, and stepping an HF model's
    cache would tie this script to one transformers version): each step runs the model on the
    last ``ctx`` tokens, so the per-token time includes the prefix. Returns per-repeat
    ms/token."""
    cuda = device.type == "cuda"
    results = []
    with torch.no_grad():
        for r in range(warmup + repeats):
            ids = prompt.repeat(batch, 1).to(device)
            if cuda:
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            else:
                t0 = time.perf_counter()
            for _ in range(tokens):
                nxt = logits_of(model, ids[:, -ctx:])[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], dim=1)
            if cuda:
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                ms = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                results.append(ms / tokens)
    return results


def p90(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("qat_finetune: PyTorch is not installed (pip install torch)", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fmt = args.quantization
    if fmt == "fp8":
        if not hasattr(torch, "float8_e4m3fn"):
            qt.infeasible("fp8 needs a PyTorch with torch.float8_e4m3fn")
            return 0
        if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
            qt.infeasible("fp8 needs compute capability >= 8.9")
            return 0
    compute = {"f16": torch.float16, "bf16": torch.bfloat16}.get(fmt, torch.float32)
    if device.type == "cpu" and compute == torch.float16:
        compute = torch.float32  # no fast f16 on CPU: fake-quant still rounds to f16

    model, tok, logits_of = load_model(torch, args, device)
    with open(args.text, encoding="utf-8") as f:
        data = torch.tensor(tok.encode(f.read()), dtype=torch.long)
    split = int(len(data) * 0.9)
    train, held = data[:split], data[split:]
    seq = min(args.seq_len, len(held) - 2)

    base_loss = evaluate(torch, model, logits_of, held, seq, args.eval_tokens, device, torch.float32)
    wrapped = add_fake_quant(torch, model, fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    t_train = time.perf_counter()
    try:
        for step in range(1, args.steps + 1):
            x, y = batches(torch, train, seq, args.batch_size, gen, device)
            with autocast(torch, device, compute):
                logits = logits_of(model, x).float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            if not torch.isfinite(loss):
                qt.infeasible(f"fine-tuning diverged at step {step} (learning_rate = {args.learning_rate})")
                return 0
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % args.eval_every == 0 or step == args.steps:
                e = evaluate(torch, model, logits_of, held, seq, min(args.eval_tokens, 2048), device, compute)
                qt.report(step, eval_loss=e, train_loss=loss.item())
    except torch.cuda.OutOfMemoryError:
        qt.infeasible(f"out of memory at batch_size = {args.batch_size}")
        return 0
    train_s = time.perf_counter() - t_train

    kernel = materialize(torch, model, fmt, device)
    if compute != torch.float32:
        model = model.to(compute)
    eval_loss = evaluate(torch, model, logits_of, held, seq, args.eval_tokens, device, compute)
    prompt = held[:8].unsqueeze(0)
    lat = time_generation(torch, model, logits_of, prompt, 1, args.bench_tokens, args.warmup,
                          args.bench_repeats, device, seq)
    thr_ms = time_generation(torch, model, logits_of, prompt, args.batch_size, args.bench_tokens,
                             args.warmup, args.bench_repeats, device, seq)
    thr = [args.batch_size * 1e3 / ms for ms in thr_ms]
    weight_bytes = sum(t.numel() * t.element_size()
                       for t in list(model.parameters()) + list(model.buffers()))
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "kernel": kernel, "model": args.model}
    if device.type == "cuda":
        info["cuda"] = str(torch.version.cuda)
    qt.final(
        latency_ms=statistics.median(lat), latency_ms_p90=p90(lat),
        latency_ms_spread=max(lat) - min(lat),
        throughput_tok_s=statistics.median(thr), throughput_tok_s_spread=max(thr) - min(thr),
        eval_loss=eval_loss, eval_loss_delta=eval_loss - base_loss, base_eval_loss=base_loss,
        weight_mib=weight_bytes / 2**20, train_s=train_s, fake_quant_layers=wrapped, **info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
