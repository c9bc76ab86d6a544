// The profile suite (opt-in: `npm run bench -- --suite profile [--quick]`): where the time of an
// IA3 training step goes, against the forward, on the scale suite's 4×256 model at 4×64 tokens and
// on gpt2-bench (6 layers × 384) at 8×128 tokens (2×128 with --quick: the same shapes per token, a
// quarter of the rows). Both plans run one
// dispatch per awaited submission (`Plan.profile`: SwiftShader has no timestamp queries); the
// milliseconds are summed per (op type, transposed operands, kernel) — op types of the step's plan
// include the backward's own (…Grad, the fused loss) — and reported with their share of the step
// and the forward. Rows: the families above 1% of the step, and the step's and forward's totals.
import { getPeftModel, IA3Config, loadModel, type Model } from '../../src/index.js';
import type { Plan } from '../../src/compile/plan.js';
import type { BenchContext } from './harness.js';
import { round } from './harness.js';
import { loadGpt2Bench } from './train.js';

type Sample = { label: string; kernel: string; ms: number };

/**
 * Milliseconds per family, summed over dispatches (and the dispatch count): `op type / kernel`,
 * with a product's transposed operands marked (`FusedMatMul·tB`: B read transposed).
 */
function byFamily(samples: readonly Sample[], plan: Plan): Map<string, { ms: number; n: number }> {
  const nodes = new Map(plan.graph.nodes.map((n) => [n.name, n]));
  const out = new Map<string, { ms: number; n: number }>();
  for (const s of samples) {
    const node = nodes.get(s.label);
    const trans = `${node?.attrs.transA ? '·tA' : ''}${node?.attrs.transB ? '·tB' : ''}`;
    const key = `${node?.opType ?? s.label}${trans} / ${s.kernel}`;
    const f = out.get(key) ?? { ms: 0, n: 0 };
    f.ms += s.ms;
    f.n++;
    out.set(key, f);
  }
  return out;
}

export async function profileSuite(ctx: BenchContext): Promise<void> {
  const { gpu, quick, readFile } = ctx;
  // The 4×256 model (vocabulary 512) at 4×64, when run.mjs generated it (scale suites, profile).
  const small = await fetch('/tests/fixtures/scale/gpt2-4x256/onnx/model.onnx', { method: 'HEAD' }).then((r) => r.ok, () => false);
  if (small) await profileModel(ctx, 'gpt2-4x256', await loadModel('/tests/fixtures/scale/gpt2-4x256/', { device: gpu }), 4, 64);
  const [batch, seq] = quick ? [2, 128] : [8, 128];
  await profileModel(ctx, 'gpt2-bench', await loadGpt2Bench(gpu, readFile), batch, seq);
}

/** Profiles the IA3 training step and the forward of `model` on batch × seq tokens, then disposes it. */
async function profileModel({ rows, log }: BenchContext, name: string, model: Model, batch: number, seq: number): Promise<void> {
  const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
  const n = batch * seq;
  const ids = new BigInt64Array(n).map((_, i) => BigInt(1 + ((i * 7919) % 500)));
  const feeds = { input_ids: { data: ids, dims: [batch, seq] }, attention_mask: { data: new BigInt64Array(n).fill(1n), dims: [batch, seq] } };
  const shapes = { input_ids: [batch, seq], attention_mask: [batch, seq] };
  const { plan: forward } = await peft.current().planFor(shapes);
  forward.writeInputs(new Map(Object.entries(feeds).map(([k, v]) => [k, Int32Array.from(v.data, Number)])));
  const { model: lossModel, trainables } = peft.trainingModel();
  const step = await lossModel.gradientPlan({ ...shapes, labels: [batch, seq] }, 'loss', trainables.map((t) => t.name));
  const trainFeeds = lossModel.gpuFeeds({ ...feeds, labels: feeds.input_ids });
  step.plan.writeInputs(new Map([...trainFeeds].filter(([k]) => step.inputs.includes(k)).map(([k, v]) => [k, v.data])));

  // Warm-up: first touch of every buffer.
  await forward.profile();
  await step.plan.profile();
  // Interleaved, so a change of the machine's load falls on both alike.
  const fwd = await forward.profile();
  const stp = await step.plan.profile();
  const total = (xs: readonly Sample[]): number => xs.reduce((a, s) => a + s.ms, 0);
  const tf = total(fwd);
  const ts = total(stp);
  const f = byFamily(fwd, forward);
  const s = byFamily(stp, step.plan);
  const label = `${name} ${batch}×${seq}`;
  log(`profile: ${label} step ${ts.toFixed(0)} ms in ${stp.length} dispatches, forward ${tf.toFixed(0)} ms in ${fwd.length} (${(ts / tf).toFixed(2)}×)`);
  rows.push({ suite: 'profile', name: `${label} step / forward (one dispatch per submission)`, value: round(ts), unit: 'ms', ratio: round(ts / tf), baseline: `forward (${round(tf)} ms)`, extra: { stepDispatches: stp.length, forwardDispatches: fwd.length } });
  for (const [key, v] of [...s].sort((a, b) => b[1].ms - a[1].ms)) {
    const inForward = f.get(key);
    log(`profile:   ${key.padEnd(48)} ${v.ms.toFixed(0).padStart(7)} ms ${((100 * v.ms) / ts).toFixed(1).padStart(5)}% of step (${v.n}×); forward ${inForward ? `${inForward.ms.toFixed(0)} ms (${inForward.n}×)` : '-'}`);
    if (v.ms < ts / 100) continue;
    rows.push({ suite: 'profile', name: `${label} step: ${key}`, value: round(v.ms), unit: 'ms', ratio: round(v.ms / ts), baseline: 'share of the step', extra: { dispatches: v.n, forwardMs: inForward ? round(inForward.ms) : 0, forwardDispatches: inForward?.n ?? 0 } });
  }
  await peft.dispose();
  await model.dispose();
}
