// The profile suite (opt-in: `npm run bench -- --suite profile [--quick]`): where the time of an
// IA3 training step goes, against the forward, on gpt2-bench (6 layers × 384) at 8×128 tokens
// (2×128 with --quick: the same shapes per token, a quarter of the rows). Both plans run one
// dispatch per awaited submission (`Plan.profile`: SwiftShader has no timestamp queries); the
// milliseconds are summed per (op type, kernel) — op types of the step's plan include the
// backward's own (…Grad, the fused loss) — and reported with their share of the step and the
// forward. Rows: the families above 1% of the step, and the step's and forward's totals.
import { getPeftModel, IA3Config } from '../../src/index.js';
import type { BenchContext } from './harness.js';
import { round } from './harness.js';
import { loadGpt2Bench } from './train.js';

type Sample = { label: string; kernel: string; ms: number };

/** Milliseconds per `op type / kernel` family, summed over dispatches (and the dispatch count). */
function byFamily(samples: readonly Sample[]): Map<string, { ms: number; n: number }> {
  const out = new Map<string, { ms: number; n: number }>();
  for (const s of samples) {
    const key = `${s.label} / ${s.kernel}`;
    const f = out.get(key) ?? { ms: 0, n: 0 };
    f.ms += s.ms;
    f.n++;
    out.set(key, f);
  }
  return out;
}

export async function profileSuite({ gpu, quick, rows, log, readFile }: BenchContext): Promise<void> {
  const [batch, seq] = quick ? [2, 128] : [8, 128];
  const model = await loadGpt2Bench(gpu, readFile);
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

  await forward.profile(); // warm-up: first touch of every buffer
  // Interleaved, so a change of the machine's load falls on both alike.
  const fwd = await forward.profile();
  const stp = await step.plan.profile();
  const total = (xs: readonly Sample[]): number => xs.reduce((a, s) => a + s.ms, 0);
  const tf = total(fwd);
  const ts = total(stp);
  const f = byFamily(fwd);
  const s = byFamily(stp);
  const label = `gpt2-bench ${batch}×${seq}`;
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
