#!/usr/bin/python3
# An offline replica of the demo page's spam-filter run, in PyTorch on one CPU thread, to try a
# recipe in minutes rather than in SwiftShader: the weights of a shipped model_seqcls.onnx, IA3 on
# c_attn (output scale) + mlp.c_proj (feed-forward: input scale) at their identity init, the
# `score` head trained (modules_to_save), the page's tokens (demo/tools/spam-replica-ids.mjs),
# AdamW (weight decay 0, eps 1e-8), gradient clipping 1.0, the page's warm-up (settings.ts
# warmupStepsFor) then linear decay, and the pooling of the per-position scores over the real
# tokens (--pool: the last one, their mean, their sum, their class-wise max, or their class-wise
# τ·logsumexp(s/τ), --tau). Prints one JSON line: first/last mean losses, validation (first 200
# mails) and test accuracy with spam precision and recall (--probe: those of the best linear head
# on the frozen model's features so pooled instead, fitted to convergence on the whole training
# split: the ceiling of training the head alone; --bow presence|count|meanfreq: those of the same
# logistic regression on the bag of the page's BPE tokens instead of the model, presence (0/1 per
# vocabulary entry), count (what a per-token score pooled by its sum can express) or mean
# frequency (by its mean): whether the tokenizer and the context or the model's 192-d features
# limit the filter). It drew the same test figures as the browser for the quick preset on
# mail-gpt2 (README, "Demo"); the order of the training mails is its own.
#
#   node demo/tools/spam-replica-ids.mjs demo/public/models/mail-gpt2 /tmp/ids.json
#   /usr/bin/python3 demo/tools/spam-replica.py --ids /tmp/ids.json --steps 200 --L 64 --pool mean
#   /usr/bin/python3 demo/tools/spam-replica.py --ids /tmp/ids.json --L 64 --bow presence --probe-l2 0.01
import json, math, sys, time, argparse, random
import numpy as np, onnx, torch, torch.nn.functional as F
from onnx import numpy_helper
torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument('--model', default='demo/public/models/mail-gpt2/onnx/model_seqcls.onnx')
ap.add_argument('--ids', required=True, help='tokens from demo/tools/spam-replica-ids.mjs')
ap.add_argument('--L', type=int, default=32)
ap.add_argument('--steps', type=int, default=40)
ap.add_argument('--batch', type=int, default=8)
ap.add_argument('--lr', type=float, default=0.02)
ap.add_argument('--warmup', type=int, default=-1)
ap.add_argument('--pool', default='last', choices=['last', 'mean', 'sum', 'max', 'lse'])
ap.add_argument('--tau', type=float, default=1.0, help="--pool lse's temperature")
ap.add_argument('--seed', type=int, default=42)
ap.add_argument('--targets', default='c_attn,mlp.c_proj')
ap.add_argument('--probe', action='store_true', help='fit a linear head alone on the frozen model (the ceiling of head-only training)')
ap.add_argument('--probe-l2', type=float, default=1e-3)
ap.add_argument('--bow', choices=['presence', 'meanfreq', 'count'], help='fit that logistic regression on the bag of BPE tokens instead (no model)')
a = ap.parse_args()
W = {i.name: torch.tensor(numpy_helper.to_array(i).copy()) for i in onnx.load(a.model).graph.initializer}
score0 = [v for k, v in W.items() if not k.startswith('transformer.')][0]  # [192, 2]
NL, H, D = 4, 4, 192
data = json.load(open(a.ids))[str(a.L)]
split = {s: [r for r in data if r['s'] == s] for s in ('train', 'validation', 'test')}
def batchify(rows):
    T = a.L
    ids = torch.full((len(rows), T), 4095, dtype=torch.long); m = torch.zeros(len(rows), T)
    for i, r in enumerate(rows):
        ids[i, :len(r['ids'])] = torch.tensor(r['ids']); m[i, :len(r['ids'])] = 1
    return ids, m, torch.tensor([r['y'] for r in rows])
tg = a.targets.split(',')
P = {}
for l in range(NL):
    if 'c_attn' in tg: P[f'{l}.c_attn'] = torch.ones(576, requires_grad=True)
    if 'mlp.c_proj' in tg: P[f'{l}.mlp.c_proj'] = torch.ones(768, requires_grad=True)
    if 'mlp.c_fc' in tg: P[f'{l}.mlp.c_fc'] = torch.ones(768, requires_grad=True)
    if 'attn.c_proj' in tg: P[f'{l}.attn.c_proj'] = torch.ones(192, requires_grad=True)
score = score0.clone().requires_grad_(True)
def ln(x, p): return F.layer_norm(x, (D,), W[p + '.weight'], W[p + '.bias'], 1e-5)
def lin(x, p): return x @ W[p + '.weight'] + W[p + '.bias']
def gelu(x): return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
def features(ids, m):
    """The pooled ln_f outputs [B, 192] that the score head reads."""
    B, T = ids.shape
    h = W['transformer.wte.weight'][ids] + W['transformer.wpe.weight'][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allow = causal[None, None] & (m[:, None, None, :] > 0)
    for l in range(NL):
        p = f'transformer.h.{l}'
        x = ln(h, p + '.ln_1')
        qkv = lin(x, p + '.attn.c_attn')
        if f'{l}.c_attn' in P: qkv = qkv * P[f'{l}.c_attn']
        q, k, v = qkv.split(D, -1)
        sh = lambda t: t.view(B, T, H, D // H).transpose(1, 2)
        q, k, v = sh(q), sh(k), sh(v)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D // H)
        att = att.masked_fill(~allow, torch.finfo(att.dtype).min).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        y = lin(y, p + '.attn.c_proj')
        if f'{l}.attn.c_proj' in P: y = y * P[f'{l}.attn.c_proj']
        h = h + y
        x = ln(h, p + '.ln_2')
        f = lin(x, p + '.mlp.c_fc')
        if f'{l}.mlp.c_fc' in P: f = f * P[f'{l}.mlp.c_fc']
        f = gelu(f)
        if f'{l}.mlp.c_proj' in P: f = f * P[f'{l}.mlp.c_proj']
        h = h + lin(f, p + '.mlp.c_proj')
    h = ln(h, 'transformer.ln_f')
    if a.pool in ('max', 'lse'): return h
    # The head is linear: pooling its inputs equals pooling its per-position scores.
    if a.pool == 'last':
        last = m.sum(1).long() - 1
        return h[torch.arange(B), last]
    s = (h * m[..., None]).sum(1)
    return s if a.pool == 'sum' else s / m.sum(1, keepdim=True)
def pool_scores(s, m):
    """The class-wise max or τ·logsumexp(s/τ) of per-position scores s [B, T, 2] over the real tokens."""
    s = s.masked_fill(m[..., None] == 0, -1e9)
    return s.max(1).values if a.pool == 'max' else a.tau * torch.logsumexp(s / a.tau, 1)
def forward(ids, m):
    f = features(ids, m) @ score
    return pool_scores(f, m) if a.pool in ('max', 'lse') else f
def scores(p, y):
    tp = ((p == 1) & (y == 1)).sum().item(); fp = ((p == 1) & (y == 0)).sum().item(); fn = ((p == 0) & (y == 1)).sum().item()
    return dict(acc=round(100 * (p == y).float().mean().item(), 1), prec=round(100 * tp / max(1, tp + fp), 1), rec=round(100 * tp / max(1, tp + fn), 1))
def evaluate(rows, head=None, feats=None):
    pred, ys = [], []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            ids, m, y = batchify(rows[i:i + 64])
            pred.append((forward(ids, m) if head is None else head(feats(ids, m), m)).argmax(-1)); ys.append(y)
    return scores(torch.cat(pred), torch.cat(ys))
def bag(ids, m):
    """Per mail, the vocabulary's presence (0/1), count, or mean frequency over the real tokens
    (the trailing <|endoftext|> left out: every mail has it)."""
    m = m.clone(); m[torch.arange(len(m)), m.sum(1).long() - 1] = 0
    x = torch.zeros(len(ids), 4096).scatter_add_(1, ids, m)
    if a.bow == 'count': return x
    return (x > 0).float() if a.bow == 'presence' else x / x.sum(1, keepdim=True).clamp(min=1)
def probe(feats):
    """The best linear head on `feats` (the frozen model's pooled features, IA3 at its identity
    init, or the bag of tokens; for --pool max|lse, its per-position scores pooled so): logistic
    regression (L-BFGS, L2 `--probe-l2`) on the standardised features of every training mail."""
    with torch.no_grad():
        XM = [(feats(ids, m), m) for ids, m, _ in (batchify(split['train'][i:i + 64]) for i in range(0, len(split['train']), 64))]
    X, M = torch.cat([x for x, _ in XM]), torch.cat([m for _, m in XM])
    y = torch.tensor([r['y'] for r in split['train']])
    per = X.dim() == 3  # per-position features, pooled after the head
    R = X[M > 0] if per else X
    mu, sd = R.mean(0), R.std(0) + 1e-6
    w = torch.zeros(X.shape[-1], 2, requires_grad=True); b = torch.zeros(2, requires_grad=True)
    head = lambda f, m: pool_scores(((f - mu) / sd) @ w + b, m) if per else ((f - mu) / sd) @ w + b
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad(); l = F.cross_entropy(head(X, M), y) + a.probe_l2 * (w ** 2).sum(); l.backward(); return l
    opt.step(closure)
    with torch.no_grad():
        return dict(args=vars(a), train=scores(head(X, M).argmax(-1), y), val=evaluate(split['validation'][:200], head, feats), test=evaluate(split['test'], head, feats))
if a.probe or a.bow:
    print(json.dumps(probe(bag if a.bow else features)))
    sys.exit()
warm = a.warmup if a.warmup >= 0 else min(max(4, round(a.steps / 10)), 20, a.steps // 2)
params = list(P.values()) + [score]
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, eps=1e-8)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / max(1, warm) if s < warm else max(0, (a.steps - s) / max(1, a.steps - warm)))
rng = random.Random(a.seed); order = []; losses = []
t0 = time.time()
for step in range(a.steps):
    if len(order) < a.batch: o = list(range(len(split['train']))); rng.shuffle(o); order += o
    b = [split['train'][order.pop(0)] for _ in range(a.batch)]
    ids, m, y = batchify(b)
    loss = F.cross_entropy(forward(ids, m), y)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
    losses.append(loss.item())
k = max(1, min(6, a.steps // 4))
res = dict(args=vars(a), warm=warm, loss_first=round(np.mean(losses[:k]), 3), loss_last=round(np.mean(losses[-k:]), 3), train_s=round(time.time() - t0, 1),
           val=evaluate(split['validation'][:200]) , test=evaluate(split['test']))
print(json.dumps(res))
