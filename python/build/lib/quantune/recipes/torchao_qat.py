"""QAT with torchao on a Hugging Face causal LM, then timing of the real quantized kernels.

One quantune trial (``workload = "command"``; configs/gemma3-1b-torchao.toml, docs/TORCHAO.md):

1. Load the model (``--model``: a Hub name or a local path for ``AutoModelForCausalLM``, or
   ``tiny-llama``/``tiny-gemma3``: a config built here with random weights, no download).
2. Measure the unquantized model's held-out loss and perplexity (the baseline).
3. QAT: torchao's ``QATConfig(base, step="prepare")`` inserts fake quantization for the
   trial's ``scheme``; fine-tune ``qat_steps`` steps at ``learning_rate`` and ``batch_size``,
   reporting the fake-quantized held-out loss every ``--eval-every`` steps (the pruner and the
   quality gate can stop the trial there, before its benchmark).
4. Convert: ``QATConfig(base, step="convert")`` swaps in torchao's real quantized tensors
   (their kernels run from now on); measure held-out loss and perplexity again.
5. Benchmark: prefill latency (TTFT) and per-token decode latency (TPOT) at batch 1, and decode
   throughput at ``batch_size``; warm-up runs first, then timed repeats (CUDA events on a GPU,
   ``perf_counter`` on CPU), median, p90 and spread (max − min of the repeats' medians).
6. Record what the timing depended on: GPU name, driver, SM/memory clocks, power and
   temperature before and after (NVML, when there is one), torch/torchao/transformers
   versions, the tensor type of every linear layer and the operators one decode step ran.

Schemes (``scheme``): ``bf16`` (no quantization, the reference), ``int8-dyn-int4-weight``
(int8 dynamic per-token activations, int4 grouped weights), ``int4-weight-only`` (int4 grouped
weights; tinygemm on CUDA), ``int8-weight-only``, ``fp8-rowwise`` (float8 e4m3 activations and
weights, per-row scales; CUDA compute capability >= 8.9). ``group_size`` applies to the two int4
schemes. A scheme torchao cannot run on this device (checked on a probe layer first) is reported
``infeasible`` with torchao's own reason, and nothing is timed.

Parameters come from quantune (``$QUANTUNE_PARAMS``) over the command line, so the script also
runs by hand: ``python -m quantune.recipes.torchao_qat --model tiny-llama --scheme int8-weight-only``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

from quantune import trial as qt

SCHEMES = (
    "bf16",
    "int8-dyn-int4-weight",
    "int4-weight-only",
    "int8-weight-only",
    "fp8-rowwise",
)
TINY = ("tiny-llama", "tiny-gemma3")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m quantune.recipes.torchao_qat", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", default="tiny-llama", help="Hub name, local path, or " + "/".join(TINY))
    p.add_argument("--hidden", type=int, default=64, help="width of a tiny-* model")
    p.add_argument("--layers", type=int, default=2, help="layers of a tiny-* model")
    p.add_argument("--heads", type=int, default=4, help="attention heads of a tiny-* model")
    p.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 × hidden)")
    p.add_argument("--scheme", choices=SCHEMES, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--qat-steps", type=int, default=None)
    p.add_argument("--group-size", type=int, default=None, help="int4 schemes: weights per scale")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=8, help="held-out batches of --batch-size")
    p.add_argument("--text", default=None, help="UTF-8 training text; its last 10%% is held out "
                   "(default: deterministic synthetic text)")
    p.add_argument("--prompt-len", type=int, default=64, help="prefill length for TTFT")
    p.add_argument("--decode-tokens", type=int, default=32, help="decoded tokens per repeat")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--record", default=None, help="also write the timing record (JSON) here")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    prm = qt.params(
        {
            "scheme": a.scheme or "bf16",
            "learning_rate": a.learning_rate if a.learning_rate is not None else 2e-5,
            "batch_size": a.batch_size or 4,
            "qat_steps": a.qat_steps if a.qat_steps is not None else 100,
            "group_size": a.group_size or 128,
        }
    )
    a.scheme = str(prm["scheme"])
    if a.scheme not in SCHEMES:
        p.error(f"scheme {a.scheme!r}: allowed {', '.join(SCHEMES)}")
    a.learning_rate = float(prm["learning_rate"])
    a.batch_size = int(prm["batch_size"])
    a.qat_steps = int(prm["qat_steps"])
    a.group_size = int(prm["group_size"])
    if a.learning_rate <= 0 or a.batch_size < 1 or a.qat_steps < 0 or a.group_size < 1:
        p.error("learning_rate > 0, batch_size >= 1, qat_steps >= 0 and group_size >= 1 needed")
    if a.warmup < 2:
        p.error("--warmup must be >= 2")
    if a.repeats < 5:
        p.error("--repeats must be >= 5")
    if a.eval_every < 1:
        p.error("--eval-every must be >= 1")
    return a


# ---- model and data ----

def tiny_model(torch: Any, a: argparse.Namespace, vocab: int) -> Any:
    """A small causal LM from a config built here, random weights (no download)."""
    import transformers

    inter = a.intermediate or 4 * a.hidden
    kv = max(1, a.heads // 2)
    common = dict(
        vocab_size=vocab, hidden_size=a.hidden, intermediate_size=inter,
        num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=kv,
        max_position_embeddings=max(a.seq_len, a.prompt_len + a.decode_tokens) + 8,
    )
    if a.model == "tiny-llama":
        cfg = transformers.LlamaConfig(**common)
    else:
        cfg = transformers.Gemma3TextConfig(head_dim=a.hidden // a.heads, sliding_window=64, **common)
    torch.manual_seed(a.seed)
    return transformers.AutoModelForCausalLM.from_config(cfg)


def synthetic_text(n: int, seed: int) -> str:
    """Deterministic word salad with some structure (a first-order chain over a small lexicon)."""
    rng = random.Random(seed)
    words = [
        "the", "model", "quantized", "weights", "tensor", "kernel", "latency", "of", "a", "and",
        "int4", "int8", "fp8", "scale", "group", "token", "decode", "prefill", "fine", "tuning",
    ]
    nxt = {w: rng.sample(words, 4) for w in words}
    out, w = [], "the"
    while sum(len(x) + 1 for x in out) < n:
        out.append(w)
        w = rng.choice(nxt[w])
    return " ".join(out) + "\n"


class Data:
    """Token ids of the training text, split 90/10 into training and held-out windows."""

    def __init__(self, torch: Any, ids: List[int], seq_len: int, seed: int) -> None:
        cut = int(len(ids) * 0.9)
        self.torch = torch
        self.train = torch.tensor(ids[:cut], dtype=torch.long)
        self.held = torch.tensor(ids[cut:], dtype=torch.long)
        self.seq_len = seq_len
        self.gen = torch.Generator().manual_seed(seed)
        if len(self.held) < seq_len + 1 or len(self.train) < seq_len + 1:
            raise ValueError(
                f"the text is too short for --seq-len {seq_len}: {len(ids)} tokens, "
                f"{len(self.held)} held out"
            )

    def batch(self, b: int) -> Any:
        starts = self.torch.randint(0, len(self.train) - self.seq_len - 1, (b,), generator=self.gen)
        return self.torch.stack([self.train[s : s + self.seq_len] for s in starts.tolist()])

    def held_out(self, b: int, batches: int) -> List[Any]:
        n = (len(self.held) - 1) // self.seq_len
        windows = [self.held[i * self.seq_len : (i + 1) * self.seq_len] for i in range(n)]
        windows = windows[: b * batches] or windows[:1]
        return [self.torch.stack(windows[i : i + b]) for i in range(0, len(windows), b)]


def held_out_loss(torch: Any, model: Any, batches: List[Any], device: str) -> float:
    """Mean next-token cross-entropy (nats/token) over the held-out windows."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x in batches:
            x = x.to(device)
            out = model(input_ids=x, labels=x)
            n = x.numel() - x.shape[0]
            total += float(out.loss) * n
            count += n
    model.train()
    return total / count


# ---- schemes ----

def base_config(scheme: str, group_size: int, device: str) -> Any:
    """torchao's post-training config for a scheme (None for bf16)."""
    import torch
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8DynamicActivationIntxWeightConfig,
        Int8WeightOnlyConfig,
        PerGroup,
        PerRow,
    )

    if scheme == "bf16":
        return None
    if scheme == "int8-dyn-int4-weight":
        return Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(group_size)
        )
    if scheme == "int4-weight-only":
        # Plain packing for QAT's fake quantizer; tinygemm's tiled packing to run on CUDA.
        return Int4WeightOnlyConfig(group_size=group_size)
    if scheme == "int8-weight-only":
        return Int8WeightOnlyConfig(granularity=PerRow())
    if scheme == "fp8-rowwise":
        return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    raise ValueError(scheme)


def convert_config(scheme: str, group_size: int, device: str) -> Any:
    """The config the converted model runs with (int4: the kernel's own packing)."""
    if scheme == "int4-weight-only":
        from torchao.quantization import Int4WeightOnlyConfig

        fmt = "tile_packed_to_4d" if device.startswith("cuda") else "plain"
        return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format=fmt)
    return base_config(scheme, group_size, device)


def prepare(model: Any, scheme: str, group_size: int, device: str) -> None:
    """Inserts torchao's fake quantization for ``scheme`` (QAT's prepare step)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

    if scheme == "bf16":
        return
    if scheme == "int8-weight-only":
        # torchao infers no fake quantizer from Int8WeightOnlyConfig: the same numerics by hand
        # (symmetric int8, one scale per output row).
        import torch

        wc = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
        quantize_(model, QATConfig(weight_config=wc, step="prepare"), filter_fn=_linear_filter)
        return
    quantize_(model, QATConfig(base_config(scheme, group_size, device), step="prepare"),
              filter_fn=_linear_filter)


def convert(model: Any, scheme: str, group_size: int, device: str) -> None:
    """Removes the fake quantizers and quantizes to torchao's real tensors (QAT's convert)."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    if scheme == "bf16":
        return
    if scheme == "int8-weight-only":
        quantize_(model, QATConfig(step="convert"), filter_fn=_linear_filter)
        quantize_(model, base_config(scheme, group_size, device), filter_fn=_linear_filter)
        return
    quantize_(model, QATConfig(convert_config(scheme, group_size, device), step="convert"),
              filter_fn=_linear_filter)


def _linear_filter(module: Any, fqn: str) -> bool:
    import torch

    # The output head and embeddings stay in the compute dtype (as torchao's recipes do).
    return isinstance(module, torch.nn.Linear) and "lm_head" not in fqn


def feasibility(torch: Any, scheme: str, group_size: int, device: str, dtype: Any) -> Optional[str]:
    """Why torchao cannot run ``scheme`` here (prepare, convert and a forward on a probe layer),
    or None when it can."""
    if scheme == "bf16":
        return None
    k = max(256, group_size)
    probe = torch.nn.Sequential(torch.nn.Linear(k, 256, bias=False)).to(device=device, dtype=dtype)
    try:
        prepare(probe, scheme, group_size, device)
        probe(torch.randn(2, k, device=device, dtype=dtype)).sum().backward()
        convert(probe, scheme, group_size, device)
        with torch.no_grad():
            probe(torch.randn(2, k, device=device, dtype=dtype))
    except Exception as e:  # noqa: BLE001 - the reason is the point
        msg = " ".join(str(e).split())[:400]
        return f"{scheme} cannot run on {device}: {type(e).__name__}: {msg}"
    return None


# ---- timing ----

class Timer:
    """Elapsed milliseconds of a callable: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, torch: Any, device: str) -> None:
        self.torch = torch
        self.cuda = device.startswith("cuda")

    def __call__(self, fn: Callable[[], Any]) -> Tuple[float, Any]:
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)), out
        t = time.perf_counter()
        out = fn()
        return (time.perf_counter() - t) * 1e3, out


def p90(xs: List[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, math.ceil(0.9 * len(s)) - 1)]


def bench(torch: Any, model: Any, a: argparse.Namespace, device: str, vocab: int) -> Dict[str, Any]:
    """TTFT and TPOT at batch 1, decode throughput at the trial's batch size."""
    timer = Timer(torch, device)
    gen = torch.Generator().manual_seed(a.seed + 1)

    def run(batch: int) -> Tuple[float, List[float]]:
        prompt = torch.randint(0, vocab, (batch, a.prompt_len), generator=gen).to(device)
        ttft, out = timer(lambda: model(input_ids=prompt, use_cache=True))
        pkv = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        steps = []
        for _ in range(a.decode_tokens):
            ms, out = timer(lambda: model(input_ids=tok, past_key_values=pkv, use_cache=True))
            pkv = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            steps.append(ms)
        return ttft, steps

    model.eval()
    res: Dict[str, Any] = {}
    with torch.no_grad():
        for label, batch in (("b1", 1), ("bn", a.batch_size)):
            for _ in range(a.warmup):
                run(batch)
            ttfts, meds, all_steps = [], [], []
            for _ in range(a.repeats):
                ttft, steps = run(batch)
                ttfts.append(ttft)
                meds.append(statistics.median(steps))
                all_steps += steps
            res[label] = {"ttft": ttfts, "step_medians": meds, "steps": all_steps, "batch": batch}
    b1, bn = res["b1"], res["bn"]
    tput = [bn["batch"] * 1e3 / m for m in bn["step_medians"]]
    return {
        "ttft_ms": statistics.median(b1["ttft"]),
        "ttft_ms_p90": p90(b1["ttft"]),
        "ttft_ms_spread": max(b1["ttft"]) - min(b1["ttft"]),
        "tpot_ms": statistics.median(b1["steps"]),
        "tpot_ms_p90": p90(b1["steps"]),
        "tpot_ms_spread": max(b1["step_medians"]) - min(b1["step_medians"]),
        "throughput_tok_s": statistics.median(bn["batch"] * 1e3 / s for s in bn["steps"]),
        "throughput_tok_s_spread": max(tput) - min(tput),
    }


def decode_ops(torch: Any, model: Any, device: str, vocab: int, prompt_len: int) -> List[str]:
    """The operators one decode step ran, busiest first (``name×calls``), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch.no_grad():
        prompt = torch.randint(0, vocab, (1, prompt_len)).to(device)
        out = model(input_ids=prompt, use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)
        with profile(activities=acts) as prof:
            model(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        t = (getattr(e, "self_device_time_total", 0) if device.startswith("cuda") else 0) or e.self_cpu_time_total
        if t > 0 and ("mm" in e.key or "matmul" in e.key or "linear" in e.key or "gemm" in e.key.lower()
                      or "torchao" in e.key or "quant" in e.key or "int4" in e.key or "scaled" in e.key):
            rows.append((t, f"{e.key}×{e.count}"))
    return [r for _, r in sorted(rows, reverse=True)[:12]]


def layer_kernels(torch: Any, model: Any) -> Dict[str, str]:
    """Each linear layer's weight tensor type (torchao's subclass names the kernel it runs)."""
    out: Dict[str, str] = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            w = m.weight
            if type(w) in (torch.Tensor, torch.nn.Parameter):
                out[name] = f"dense({str(w.dtype).replace('torch.', '')})"
                continue
            fmt = getattr(w, "packing_format", None) or getattr(w, "int4_packing_format", None)
            fmt = getattr(fmt, "value", fmt)
            out[name] = f"{type(w).__name__}({fmt})" if fmt else type(w).__name__
    return out


# ---- NVML (ctypes, no Python package needed) ----

class Nvml:
    """The few NVML readings the timing record needs; every method is None without NVML."""

    def __init__(self) -> None:
        self.lib: Any = None
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            if lib.nvmlInit_v2() == 0:
                self.lib = lib
        except OSError:
            pass

    def _handle(self, index: int) -> Any:
        h = ctypes.c_void_p()
        if self.lib.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(h)) != 0:
            return None
        return h

    def driver(self) -> Optional[str]:
        if self.lib is None:
            return None
        buf = ctypes.create_string_buffer(96)
        return buf.value.decode() if self.lib.nvmlSystemGetDriverVersion(buf, 96) == 0 else None

    def sample(self, index: int) -> Dict[str, float]:
        """SM and memory clocks (MHz), power (W) and temperature (°C) now."""
        if self.lib is None:
            return {}
        h = self._handle(index)
        if h is None:
            return {}
        out: Dict[str, float] = {}
        v = ctypes.c_uint()
        if self.lib.nvmlDeviceGetClockInfo(h, 1, ctypes.byref(v)) == 0:  # NVML_CLOCK_SM
            out["sm_clock_mhz"] = float(v.value)
        if self.lib.nvmlDeviceGetClockInfo(h, 2, ctypes.byref(v)) == 0:  # NVML_CLOCK_MEM
            out["mem_clock_mhz"] = float(v.value)
        if self.lib.nvmlDeviceGetPowerUsage(h, ctypes.byref(v)) == 0:
            out["power_w"] = v.value / 1000.0
        if self.lib.nvmlDeviceGetTemperature(h, 0, ctypes.byref(v)) == 0:  # NVML_TEMPERATURE_GPU
            out["temperature_c"] = float(v.value)
        return out


def gpu_index(torch: Any) -> int:
    """The NVML index of the GPU torch uses (CUDA_VISIBLE_DEVICES maps it)."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    cur = torch.cuda.current_device()
    parts = [p for p in vis.split(",") if p.strip()]
    if parts and parts[cur].strip().isdigit():
        return int(parts[cur])
    return cur


# ---- the trial ----

def main(argv: Optional[List[str]] = None) -> int:
    a = parse_args(argv)
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own chatter on stderr
    try:
        import torch
        import torchao
        import transformers
    except ImportError as e:
        print(
            f"this recipe needs torch, transformers and torchao ({e}); "
            "pip install torch transformers torchao",
            file=sys.stderr,
        )
        return 2
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(a.seed)
    threads = torch.get_num_threads()
    info: Dict[str, str] = {
        "scheme": a.scheme,
        "device": device,
        "torch": torch.__version__,
        "torchao": torchao.__version__,
        "transformers": transformers.__version__,
        "model": a.model,
    }
    record: Dict[str, Any] = {"info": info, "args": vars(a).copy()}

    reason = feasibility(torch, a.scheme, a.group_size, device, dtype)
    if reason is not None:
        print(reason, file=sys.stderr)
        qt.infeasible(reason)
        return 0

    # Model and tokens.
    if a.model in TINY:
        text = open(a.text, encoding="utf-8").read() if a.text else synthetic_text(60_000, a.seed)
        ids = list(text.encode("utf-8"))
        vocab = 256
        model = tiny_model(torch, a, vocab)
    else:
        tok = transformers.AutoTokenizer.from_pretrained(a.model)
        if not a.text:
            print("--text is required with a pretrained model (held-out text to measure on)",
                  file=sys.stderr)
            return 2
        ids = tok(open(a.text, encoding="utf-8").read())["input_ids"]
        model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
        vocab = int(model.config.vocab_size)
    model.to(device=device, dtype=dtype)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    info["model_params_m"] = f"{params_m:.1f}"
    data = Data(torch, ids, a.seq_len, a.seed)
    held = data.held_out(a.batch_size, a.eval_batches)

    base_loss = held_out_loss(torch, model, held, device)
    qt.should_prune()  # handle the daemon's SIGTERM from here on (pruning)

    # QAT.
    t0 = time.perf_counter()
    prepare(model, a.scheme, a.group_size, device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.learning_rate, weight_decay=0.0)
    model.train()
    for step in range(1, a.qat_steps + 1):
        x = data.batch(a.batch_size).to(device)
        loss = model(input_ids=x, labels=x).loss
        if not torch.isfinite(loss):
            qt.infeasible(f"the training loss diverged at step {step} (learning_rate = {a.learning_rate})")
            return 0
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % a.eval_every == 0 or step == a.qat_steps:
            el = held_out_loss(torch, model, held, device)
            qt.report(step, eval_loss=el, eval_loss_delta=el - base_loss, train_loss=float(loss))
            if qt.should_prune():
                print(f"stopping at step {step}: the daemon asked this trial to stop", file=sys.stderr)
                return 0
    train_s = time.perf_counter() - t0
    qat_loss = held_out_loss(torch, model, held, device)

    # Convert to the real kernels.
    del opt
    convert(model, a.scheme, a.group_size, device)
    q_loss = held_out_loss(torch, model, held, device)
    weight_mib = _weight_mib(torch, model)

    # The timing record, then the timing.
    nvml = Nvml() if device.startswith("cuda") else None
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info["gpu"] = f"{props.name} (sm_{props.major}{props.minor})"
        info["cuda"] = str(torch.version.cuda)
        drv = nvml.driver() if nvml else None
        if drv:
            info["gpu_driver"] = drv
        before = nvml.sample(gpu_index(torch)) if nvml else {}
    else:
        info["cpu"] = _cpu_name()
        info["threads"] = str(threads)
        before = {}
    layers = layer_kernels(torch, model)
    info["layer_kernels"] = ", ".join(f"{k}×{n}" for k, n in Counter(layers.values()).most_common())
    ops = decode_ops(torch, model, device, vocab, a.prompt_len)
    info["decode_ops"] = ", ".join(ops)
    t1 = time.perf_counter()
    timing = bench(torch, model, a, device, vocab)
    bench_s = time.perf_counter() - t1
    after = nvml.sample(gpu_index(torch)) if nvml else {}
    for k, v in before.items():
        info[f"{k}_before"] = f"{v:g}"
    for k, v in after.items():
        info[f"{k}_after"] = f"{v:g}"

    metrics: Dict[str, float] = {
        **timing,
        "eval_loss": q_loss,
        "base_eval_loss": base_loss,
        "qat_eval_loss": qat_loss,
        "eval_loss_delta": q_loss - base_loss,
        "perplexity": math.exp(min(q_loss, 50.0)),
        "base_perplexity": math.exp(min(base_loss, 50.0)),
        "weight_mib": weight_mib,
        "train_s": train_s,
        "bench_s": bench_s,
    }
    record.update(metrics=metrics, layers=layers, decode_ops=ops, nvml_before=before,
                  nvml_after=after, host=platform.node())
    if a.record:
        with open(a.record, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    print(json.dumps(record), file=sys.stderr)
    qt.final(**metrics, **info)
    return 0


def _weight_mib(torch: Any, model: Any) -> float:
    """Bytes of every parameter as stored (a torchao tensor counts its quantized data)."""
    total = 0
    for p in model.parameters():
        t = p.data if hasattr(p, "data") else p
        inner = getattr(t, "__tensor_flatten__", None)
        if inner is not None and type(t) is not torch.Tensor:
            names, _ = t.__tensor_flatten__()
            total += sum(getattr(t, n).numel() * getattr(t, n).element_size() for n in names
                         if isinstance(getattr(t, n, None), torch.Tensor))
        else:
            total += t.numel() * t.element_size()
    return total / 2**20


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
