#!/usr/bin/env python3
# One-command comparison of IA3 training: PyTorch + PEFT on CUDA against ia3-webgpu on Dawn, on the
# same GPU, the same GPT-2-shaped model (same weights), the same batches, optimizer and initial
# vectors. Writes one JSON: tokens/s of both and their ratio, the peak memory of each, and the
# losses of both after N steps, which must agree within the stated tolerance (exit status 1 if not).
#
#   python3 tests/bench/compare/compare.py --out compare.json          # NVIDIA GPU: CUDA + Vulkan
#   /usr/bin/python3 tests/bench/compare/compare.py --dry --out x.json  # CPU PyTorch, SwiftShader
#
# Needs (nothing is downloaded): Python with torch and onnx; transformers and peft for the real run;
# Node >= 20.19 and this repository with its node_modules (vite, webgpu, the sources); for the GPU
# run, the GPU's Vulkan driver (Dawn reaches the GPU through Vulkan). See README "PyTorch + PEFT".
#
# How the two sides are made equal:
#   model     transformers' GPT2LMHeadModel built from a GPT2Config (eager attention, no dropout),
#             random weights from torch.manual_seed(seed). Exported to ONNX through the hand-written
#             HF-identical GPT-2 of tests/fixtures/generate.py (same module paths, which the toolkit
#             recovers from the graph) loaded with those same weights; the two are checked to give
#             the same logits before anything is trained. Exporting transformers' module directly
#             would tie the run to how each transformers release traces its attention masks.
#   IA3       PEFT's IA3Config(task_type CAUSAL_LM) with GPT-2's default targets (c_attn,
#             mlp.c_proj; mlp.c_proj feed-forward), vectors initialised to ones on both sides.
#   batches   one epoch of steps x batch token sequences; the toolkit's Trainer shuffles them with
#             its seed, train-node.ts reports the order, and PyTorch trains on that same order.
#   optimizer AdamW (lr, betas, eps, weight decay), global-norm clipping, constant schedule, fp32.
#   loss      causal-LM cross-entropy (shifted, mean over tokens), as GPT2LMHeadModel computes it.
#   timing    both sides read each step's loss (a sync per step); tokens/s over the steps after
#             the warm-up steps. Memory: torch.cuda.max_memory_allocated over the training steps;
#             the toolkit's peak of live GPU buffer bytes (weights included on both sides).
#
# --dry runs the whole pipeline here without a GPU: PyTorch on the CPU, Dawn on SwiftShader, a small
# model. When transformers or peft cannot be imported, it uses the hand-written GPT-2 and the
# hand-written PEFT-exact IA3 of tests/fixtures/generate.py, and says so in the JSON.

import argparse
import inspect
import io
import json
import math
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
_threads = torch.get_num_threads()
import generate as handwritten  # noqa: E402  (the fixtures' HF-identical modules; sets 1 thread)
torch.set_num_threads(_threads)

# GPT-2's PEFT defaults (peft.utils.constants TRANSFORMERS_MODELS_TO_IA3_*), given explicitly so a
# PEFT release with other defaults cannot make the two sides differ.
TARGET_MODULES = ["c_attn", "mlp.c_proj"]
FEEDFORWARD_MODULES = ["mlp.c_proj"]


def parse_args():
    p = argparse.ArgumentParser(description="IA3 training: PyTorch + PEFT (CUDA) vs ia3-webgpu (Dawn), one JSON")
    p.add_argument("--out", required=True, help="where to write the JSON")
    p.add_argument("--dry", action="store_true", help="CPU PyTorch and SwiftShader Dawn, small model: a test of the pipeline")
    p.add_argument("--layers", type=int, help="n_layer (default 6; dry 2)")
    p.add_argument("--hidden", type=int, help="n_embd (default 384; dry 64)")
    p.add_argument("--heads", type=int, help="n_head (default 6; dry 4)")
    p.add_argument("--vocab", type=int, help="vocab_size (default 512; dry 128)")
    p.add_argument("--batch", type=int, help="sequences per step (default 8; dry 4)")
    p.add_argument("--seq", type=int, help="tokens per sequence (default 128; dry 16)")
    p.add_argument("--steps", type=int, help="training steps N (default 40; dry 6)")
    p.add_argument("--warmup", type=int, help="first steps left out of the timing (default 5; dry 2)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 0.01; dry 0.03)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--loss-rtol", type=float, help="agreement: relative difference of the losses (default 2e-3; dry 1e-3)")
    p.add_argument("--torch-impl", choices=["auto", "hf", "handwritten"], default="auto",
                   help="auto: transformers + peft when importable; else the hand-written modules (--dry only)")
    p.add_argument("--node", default=os.environ.get("NODE") or shutil.which("node"), help="Node binary (default: $NODE, then PATH)")
    p.add_argument("--workdir", help="keep the exported model, the spec and Node's result here")
    a = p.parse_args()
    dry = a.dry
    for name, real, small in [("layers", 6, 2), ("hidden", 384, 64), ("heads", 6, 4), ("vocab", 512, 128), ("batch", 8, 4),
                              ("seq", 128, 16), ("steps", 40, 6), ("warmup", 5, 2), ("lr", 0.01, 0.03), ("loss_rtol", 2e-3, 1e-3)]:
        if getattr(a, name) is None:
            setattr(a, name, small if dry else real)
    if not 1 <= a.warmup < a.steps:
        p.error(f"--warmup must be in [1, steps), got {a.warmup} with {a.steps} steps")
    if a.hidden % a.heads:
        p.error(f"--hidden {a.hidden} is not a multiple of --heads {a.heads}")
    if not a.node:
        p.error("no Node binary: pass --node or put node on PATH")
    return a


def hf_modules():
    """(transformers, peft) modules, or (None, reason)."""
    try:
        import peft
        import transformers
        return (transformers, peft), None
    except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
        return None, f"{type(e).__name__}: {e}"


def config_dict(a):
    return dict(
        model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=a.vocab, n_positions=a.seq, n_ctx=a.seq,
        n_embd=a.hidden, n_layer=a.layers, n_head=a.heads, n_inner=None, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, initializer_range=0.02,
        bos_token_id=a.vocab - 1, eos_token_id=a.vocab - 1, pad_token_id=0, tie_word_embeddings=True, torch_dtype="float32",
    )


def hf_init_(model, n_layer):
    """transformers' GPT-2 initialisation (normal 0.02, residual projections 0.02/sqrt(2 n_layer)),
    for the hand-written module; the transformers run gets it from GPT2LMHeadModel itself."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln_" in name or name.startswith("transformer.ln_f"):
                p.fill_(1.0)
            elif name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02 / math.sqrt(2 * n_layer))
            else:
                p.normal_(0.0, 0.02)


class Side:
    """The PyTorch model being trained: forward(ids, mask) -> logits, its IA3 parameters by PEFT key."""

    def __init__(self, a, device, hf):
        cfg = config_dict(a)
        torch.manual_seed(a.seed)
        if hf:
            transformers, peft = hf
            # Eager attention (plain matmul + softmax, as the exported graph), no KV cache in training.
            hf_config = transformers.GPT2Config(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures", "torch_dtype")},
                                                attn_implementation="eager", use_cache=False)
            try:
                hf_config._attn_implementation = "eager"  # releases that ignore the keyword
            except AttributeError:
                pass
            base = transformers.GPT2LMHeadModel(hf_config)
            self.base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
            model = peft.get_peft_model(base, peft.IA3Config(task_type="CAUSAL_LM", target_modules=TARGET_MODULES,
                                                             feedforward_modules=FEEDFORWARD_MODULES, fan_in_fan_out=True))
            self.ia3 = {n.replace(".ia3_l.default", ".ia3_l"): p for n, p in model.named_parameters() if p.requires_grad}
            self.forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits
            self.impl = f"transformers {transformers.__version__} GPT2LMHeadModel (eager attention) + peft {peft.__version__} IA3"
        else:
            model = handwritten.GPT2LMHeadModel(cfg)
            hf_init_(model, a.layers)
            self.base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            layers = handwritten.inject_ia3(model, TARGET_MODULES, FEEDFORWARD_MODULES)
            for p in model.parameters():
                p.requires_grad_(False)
            self.ia3 = {}
            for path, layer in layers.items():
                shape = (1, layer.in_features) if layer.is_feedforward else (layer.out_features, 1)
                layer.add_adapter("default", torch.ones(shape))  # PEFT's init_ia3_weights: ones
                layer.active_adapters = ["default"]
                self.ia3[f"base_model.model.{path}.ia3_l"] = layer.ia3_l["default"]
            self.forward = lambda ids, mask: model(ids, mask)
            self.impl = "fallback: the hand-written HF-identical GPT-2 and PEFT-exact IA3 of tests/fixtures/generate.py"
        self.model = model.to(device)
        self.model.train()  # no dropout anywhere (all p = 0): train() and eval() compute the same


def lm_loss(logits, ids):
    """GPT2LMHeadModel's loss: next-token cross-entropy, mean over the (b, s-1) predicted tokens."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def export(a, side, workdir):
    """The HF folder the toolkit loads: config.json + onnx/model.onnx, from the hand-written GPT-2
    holding the weights of the model PyTorch trains. Returns (folder, max |logits difference|)."""
    cfg = config_dict(a)
    hand = handwritten.GPT2LMHeadModel(cfg)
    own = hand.state_dict()
    missing = [k for k in own if k not in side.base_state]
    if missing:
        raise SystemExit(f"export: the PyTorch model lacks {missing[:5]} (transformers changed GPT-2's parameter names?)")
    hand.load_state_dict({k: side.base_state[k].cpu() for k in own})
    hand.eval()
    g = torch.Generator().manual_seed(a.seed + 1)
    ids = torch.randint(0, a.vocab, (2, a.seq), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = side.forward(ids.to(next(side.model.parameters()).device), mask.to(next(side.model.parameters()).device)).float().cpu()
        got = hand(ids, mask)
    diff = (want - got).abs().max().item()
    if not diff < 1e-4:
        raise SystemExit(f"export: the hand-written GPT-2 and the trained model disagree (max |logits diff| {diff:.3g} >= 1e-4)")
    folder = Path(workdir) / "model"
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}  # keep module scopes
    buf = io.BytesIO()
    torch.onnx.export(hand, (ids, mask), buf, input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ["input_ids", "attention_mask", "logits"]},
                      opset_version=14, do_constant_folding=True, **kwargs)
    (folder / "onnx" / "model.onnx").write_bytes(buf.getvalue())
    return folder, diff


def data(a):
    """steps x batch training sequences and one evaluation batch of a learnable toy language: each
    sequence repeats a random 4-token motif over 16 tokens with noise, so IA3 can lower the loss."""
    rnd = random.Random(a.seed)
    alphabet = list(range(10, 10 + min(16, a.vocab - 10)))

    def sequence():
        motif = [rnd.choice(alphabet) for _ in range(4)]
        return [motif[i % 4] if rnd.random() < 0.8 else rnd.choice(alphabet) for i in range(a.seq)]

    return [sequence() for _ in range(a.steps * a.batch)], [sequence() for _ in range(a.batch)]


def run_node(a, spec, workdir):
    spec_path, result_path = Path(workdir) / "spec.json", Path(workdir) / "result-node.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [a.node, str(ROOT / "tests/bench/node-run.mjs"), "tests/bench/compare/train-node.ts", str(spec_path), str(result_path)]
    print("$", " ".join(cmd), flush=True)
    status = subprocess.run(cmd, cwd=ROOT).returncode
    if status != 0 or not result_path.exists():
        raise SystemExit(f"the ia3-webgpu run failed (exit status {status}); its output is above")
    return json.loads(result_path.read_text())


def train_torch(a, side, device, examples, order, eval_set):
    params = list(side.ia3.values())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=a.weight_decay)
    as_batch = lambda rows: torch.tensor(rows, dtype=torch.long, device=device)  # noqa: E731

    def evaluate():
        with torch.no_grad():
            ids = as_batch(eval_set)
            return lm_loss(side.forward(ids, torch.ones_like(ids)), ids).item()

    before = evaluate()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, norms, times = [], [], []
    t0 = time.perf_counter()
    for step in range(a.steps):
        ids = as_batch([examples[i] for i in order[step]])
        loss = lm_loss(side.forward(ids, torch.ones_like(ids)), ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, a.max_grad_norm)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        opt.step()
        losses.append(loss.item())  # a sync per step, as the toolkit reads each step's loss
        norms.append(float(norm))
        times.append(time.perf_counter())
    wall = time.perf_counter() - t0
    if cuda:
        peak = {"peak_memory_bytes": torch.cuda.max_memory_allocated(), "peak_memory_kind": "torch.cuda.max_memory_allocated during training",
                "peak_reserved_bytes": torch.cuda.max_memory_reserved()}
    else:
        peak = {"peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "peak_memory_kind": "peak RSS of the whole Python process (CPU run: not comparable with GPU memory)"}
    timed = a.steps - a.warmup
    seconds = times[-1] - times[a.warmup - 1]
    return {
        "step_losses": losses,
        "step_grad_norms": norms,
        "eval_loss_before": before,
        "eval_loss_after": evaluate(),
        "tokens_per_second": timed * a.batch * a.seq / seconds,
        "timed_steps": timed,
        "timed_seconds": seconds,
        "train_wall_seconds": wall,
        **peak,
        "state": {k: p.detach().cpu().flatten().tolist() for k, p in side.ia3.items()},
    }


def rel(x, y):
    return abs(x - y) / max(abs(y), 1e-12)


def main():
    a = parse_args()
    hf, why_not = hf_modules() if a.torch_impl != "handwritten" else (None, "--torch-impl handwritten")
    if a.torch_impl == "hf" and not hf:
        raise SystemExit(f"--torch-impl hf: transformers/peft cannot be imported ({why_not})")
    if not hf and not a.dry and a.torch_impl == "auto":
        raise SystemExit(f"transformers and peft are needed for the GPU run ({why_not}); --dry runs the pipeline with the hand-written fallback")
    if a.dry:
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("the GPU run needs CUDA (torch.cuda.is_available() is False); --dry runs on the CPU")
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as WebGPU computes
        torch.backends.cudnn.allow_tf32 = False

    workdir = a.workdir or tempfile.mkdtemp(prefix="ia3-compare-")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    side = Side(a, device, hf)
    folder, export_diff = export(a, side, workdir)
    examples, eval_set = data(a)

    # The toolkit first (it decides the batch order), then PyTorch on the same GPU, one at a time.
    node = run_node(a, {
        "model_dir": str(folder), "examples": examples, "eval": eval_set, "batch": a.batch, "seq": a.seq, "steps": a.steps,
        "timing_warmup": a.warmup, "lr": a.lr, "weight_decay": a.weight_decay, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps,
        "max_grad_norm": a.max_grad_norm, "seed": a.seed, "target_modules": TARGET_MODULES, "feedforward_modules": FEEDFORWARD_MODULES,
        "require_hardware": not a.dry,
    }, workdir)
    torch_result = train_torch(a, side, device, examples, node["order"], eval_set)

    keys = sorted(torch_result["state"])
    if sorted(node["state"]) != keys:
        raise SystemExit(f"the two sides train different vectors: {sorted(set(keys) ^ set(node['state']))[:6]}")
    vector_diff = max(max(abs(x - y) for x, y in zip(node["state"][k], torch_result["state"][k])) for k in keys)
    first = rel(node["step_losses"][0], torch_result["step_losses"][0])
    after = rel(node["eval_loss_after"], torch_result["eval_loss_after"])
    steps_diff = max(rel(x, y) for x, y in zip(node["step_losses"], torch_result["step_losses"]))
    agree = first < a.loss_rtol and after < a.loss_rtol and steps_diff < a.loss_rtol
    trainable = sum(p.numel() for p in side.ia3.values())
    n_params = sum(p.numel() for p in side.model.parameters())  # tied weights once, IA3 vectors included, as PEFT counts
    gpu_name = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    result = {
        "what": "IA3 training, PyTorch + PEFT vs ia3-webgpu (Dawn), same model weights, batches, optimizer, initial vectors",
        "mode": "dry (CPU PyTorch, Dawn on whatever adapter it finds: SwiftShader here)" if a.dry else "gpu",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "host": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__, "gpu": gpu_name},
        "model": {"shape": f"GPT-2, {a.layers} layers x {a.hidden} hidden, {a.heads} heads, vocab {a.vocab}, context {a.seq}",
                  "parameters": n_params - trainable, "export_check_max_abs_logits_diff": export_diff},
        "training": {"steps": a.steps, "batch": a.batch, "seq": a.seq, "tokens_per_step": a.batch * a.seq, "timing_warmup_steps": a.warmup,
                     "optimizer": {"name": "AdamW", "lr": a.lr, "betas": [a.beta1, a.beta2], "eps": a.eps, "weight_decay": a.weight_decay,
                                   "max_grad_norm": a.max_grad_norm, "schedule": "constant"},
                     "ia3": {"target_modules": TARGET_MODULES, "feedforward_modules": FEEDFORWARD_MODULES, "init": "ones"},
                     "seed": a.seed},
        "pytorch": {"implementation": side.impl, **({"fallback_reason": f"transformers/peft not importable: {why_not}"} if not hf else {}),
                    "device": gpu_name or "cpu", "trainable_parameters": handwritten.peft_print_line(trainable, n_params),
                    **{k: v for k, v in torch_result.items() if k != "state"}},
        "ia3_webgpu": {"implementation": "ia3-webgpu Trainer in Node on Dawn (webgpu package)", "adapter": node["adapter"],
                       "peak_memory_kind": "peak live bytes of the toolkit's GPU buffer pool during training",
                       "peak_memory_bytes": node["peak_bytes"], "weights_bytes": node["weights_bytes"],
                       **{k: node[k] for k in ["tokens_per_second", "timed_steps", "timed_seconds", "train_wall_seconds", "step_losses",
                                               "step_grad_norms", "eval_loss_before", "eval_loss_after", "trainable_parameters"]}},
        "ratio": {"tokens_per_second_ia3_webgpu_over_pytorch": node["tokens_per_second"] / torch_result["tokens_per_second"],
                  "peak_memory_ia3_webgpu_over_pytorch": node["peak_bytes"] / torch_result["peak_memory_bytes"]},
        "agreement": {"tolerance": {"loss_rtol": a.loss_rtol, "applies_to": "first-step loss, every step's loss, evaluation loss after N steps"},
                      "first_step_loss_rel_diff": first, "max_step_loss_rel_diff": steps_diff,
                      "eval_loss_after_rel_diff": after, "max_vector_abs_diff_after": vector_diff, "agree": agree},
    }
    if a.workdir:
        result["workdir"] = workdir
    result["notes"] = [
        "'all params' of ia3_webgpu counts the ONNX file's initializers: torch.onnx.export stores identical tensors once "
        "(with transformers' initialisation every bias is zero and every LayerNorm weight one) and adds the folded transpose of the tied "
        "lm_head, so it differs from PEFT's count of the same model",
    ]
    if a.dry:
        result["notes"].insert(0, "dry mode: a test of the pipeline; tokens/s and memory compare a CPU with a software GPU and mean nothing")
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ["mode", "ratio", "agreement"]}, indent=2))
    print(f"written to {a.out}")
    if not a.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
