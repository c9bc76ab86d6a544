#!/usr/bin/python3
# Replays the demo page's style run in PyTorch (one CPU thread), to choose the Style tab's recipe
# without a browser: the same model (weights read from demo/public/models/sotu-gpt2/onnx/model.onnx),
# the same tokenizer and text, the same split (windows over the first 90% of the tokens to train on,
# at most `--eval` windows over the last 10% for perplexity), the same IA3 placement and
# initialisation (ones; a target's output scaled, a feed-forward target's input), and the page
# Trainer's optimisation: AdamW (0.9, 0.999, eps 1e-8, no weight decay), gradient clipping at norm
# 1, a linear warm-up of demo/src/settings.ts's warmupStepsFor(steps) then linear decay to 0
# (transformers' schedule), batches of shuffled windows, mean token cross-entropy.  The batch order differs from the page's
# (another shuffle), so a replay agrees with the page to within seed noise, not bit for bit.
#
#   /usr/bin/python3 demo/tools/style-recipe.py --lr 0.02 --steps 24 --seqlen 32 --eval 64
#   /usr/bin/python3 demo/tools/style-recipe.py --lr 0.1 --steps 64 --targets all-linear --every 16
#   /usr/bin/python3 demo/tools/style-recipe.py --targets all-linear --text /tmp/other.txt   # another text
#
# Prints the held-out perplexity before and after (and every `--every` steps) as JSON lines.
# Requirements: Debian's python3-torch and python3-onnx; nothing is written.

import argparse
import importlib.util
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from onnx import load as load_onnx, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "demo" / "public" / "models" / "sotu-gpt2"
TEXT = ROOT / "demo" / "public" / "data" / "style" / "moby-dick.txt"
TRAIN_FRACTION = 0.9  # STYLE_TRAIN_FRACTION in demo/src/worker.ts
# PEFT's 'all-linear' for GPT-2: every Conv1D but the output layer.
ALL_LINEAR = ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # both define classes and functions; their main() runs under __main__ only
    return module


# The model classes (HF GPT-2 module paths) and the byte-level BPE encoder the model was built with
# (tests/unit/demo-tokenizer.test.ts checks the page's tokenizer gives its ids).
pretrain = load(ROOT / "demo" / "tools" / "pretrain.py", "pretrain")
fixture = pretrain.fixture


def load_model():
    config = json.loads((MODEL_DIR / "config.json").read_text())
    model = fixture.GPT2LMHeadModel(config)
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in load_onnx(str(MODEL_DIR / "onnx" / "model.onnx")).graph.initializer}
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name != "lm_head.weight":  # tied to transformer.wte.weight
                tensor.copy_(weights[name])
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), config["pad_token_id"]


def tokenize(path):
    tj = json.loads((MODEL_DIR / "tokenizer.json").read_text())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tj["model"]["merges"]]
    return pretrain.ByteLevelBPE(merges).encode(Path(path).read_text())


def windows(ids, seq):
    """Non-overlapping windows (a last, shorter one when two tokens remain), as the page's windows()."""
    return [ids[i:i + seq] for i in range(0, len(ids) - 1, seq)]


def collate(rows, pad):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width))
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
        labels[i, :len(r)] = torch.tensor(r)
    return ids, mask, labels


def loss_of(model, batch, reduction="mean"):
    ids, mask, labels = batch
    logits = model(ids, mask)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100, reduction=reduction)


def add_ia3(model, targets, feedforward):
    """PEFT's IA3 on Conv1D: a vector of ones scaling a target's output, or a feed-forward target's input."""
    matches = lambda path, names: any(path == n or path.endswith("." + n) for n in names)
    vectors = []
    for path, module in model.named_modules():
        if not isinstance(module, fixture.Conv1D) or not matches(path, targets):
            continue
        if matches(path, feedforward):
            v = torch.ones(module.nx, requires_grad=True)
            module.register_forward_pre_hook(lambda m, inp, v=v: (inp[0] * v,) + tuple(inp[1:]))
        else:
            v = torch.ones(module.nf, requires_grad=True)
            module.register_forward_hook(lambda m, inp, out, v=v: out * v)
        vectors.append(v)
    return vectors


@torch.no_grad()
def perplexity(model, held_out, pad, batch=8):
    total, count = 0.0, 0
    for i in range(0, len(held_out), batch):
        b = collate(held_out[i:i + batch], pad)
        total += loss_of(model, b, "sum").item()
        count += int((b[2][:, 1:] != -100).sum())
    return math.exp(total / count)


def warmup_steps_for(steps):  # warmupStepsFor in demo/src/settings.ts
    return min(max(4, round(steps / 10)), 20, steps // 2)


def main():
    ap = argparse.ArgumentParser(description="Replay the demo's style run in PyTorch.")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=32)
    ap.add_argument("--eval", type=int, default=64, help="most held-out windows")
    ap.add_argument("--targets", default="c_attn,mlp.c_proj", help="comma-separated, or all-linear")
    ap.add_argument("--feedforward", default="mlp.c_proj")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--every", type=int, default=0, help="also measure every N steps")
    ap.add_argument("--text", default=str(TEXT), help="the style text (default: the page's preset)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    model, pad = load_model()
    ids = tokenize(a.text)
    cut = int(len(ids) * TRAIN_FRACTION)
    train, held_out = windows(ids[:cut], a.seqlen), windows(ids[cut:], a.seqlen)[:a.eval]
    targets = ALL_LINEAR if a.targets == "all-linear" else a.targets.split(",")
    vectors = add_ia3(model, targets, a.feedforward.split(",") if a.feedforward else [])
    report = lambda **kw: print(json.dumps(kw), flush=True)
    before = perplexity(model, held_out, pad)
    report(step=0, perplexity=round(before, 2), train_windows=len(train), held_out_windows=len(held_out), vectors=sum(v.numel() for v in vectors))
    optimizer = torch.optim.AdamW(vectors, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    warmup = warmup_steps_for(a.steps)
    rng, order, t0 = random.Random(a.seed), [], time.time()
    for step in range(1, a.steps + 1):
        if not order:  # a new epoch, shuffled; its last batch may be short, as the page's
            order = list(range(len(train)))
            rng.shuffle(order)
        rows, order = [train[i] for i in order[:a.batch]], order[a.batch:]
        # transformers' linear schedule of the 0-based step (the first step's rate is 0), as the page's.
        s = step - 1
        lr = a.lr * (s / warmup if s < warmup else max(0.0, (a.steps - s) / max(1, a.steps - warmup)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_of(model, collate(rows, pad))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vectors, 1.0)
        optimizer.step()
        if a.every and step % a.every == 0 and step < a.steps:
            report(step=step, perplexity=round(perplexity(model, held_out, pad), 2))
    after = perplexity(model, held_out, pad)
    report(step=a.steps, perplexity=round(after, 2), change=round(after / before - 1, 4), train_seconds=round(time.time() - t0, 1))


if __name__ == "__main__":
    sys.exit(main())
