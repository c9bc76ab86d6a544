// The scale suite (opt-in: `npm run bench -- --suite scale`; run.mjs generates its models on first
// use with tests/fixtures/generate_scale.py into the git-ignored tests/fixtures/scale/).
//
// On a GPT-2-small-shaped model (124M parameters, random weights, external data and single file):
// load time, JS heap after load / file bytes (goal ≤ 0.25: the weights stream to the GPU), GPU
// weight bytes / file bytes (goal ≈ 1.0), planned (memoryPlan) and measured (the buffer pool's peak)
// GPU bytes of an IA3 step at 8×128 / weight bytes (goal ≤ 1.6), forward and step on 1×8 as ratios
// to onnxruntime-web WASM's forward and to our own forward. Then the step/forward ratio at 4×64 and
// 8×128 on the 4×256 model and on gpt2-bench (6×384). `--quick` runs the 124M step at 1×32 (its
// 8×128 memory is then planned only) and times with fewer repetitions. Last, 20 cycles of load
// (streamed) → one training step → dispose of the 4×256 model: the buffer pool's live bytes after
// each cycle against those before the first (goal: equal; dispose() frees everything).
import * as ort from 'onnxruntime-web';
import { getPeftModel, IA3Config, loadModel, Trainer, type Example, type Model, type TensorData } from '../../src/index.js';
import type { LoadProgress } from '../../src/onnx/stream.js';
import type { BackwardOptions } from '../../src/autograd/grad.js';
import { type BenchContext, median, round, timeAsync, timeInterleaved } from './harness.js';
import { loadGpt2Bench, stepAndForward } from './train.js';

const SCALE = '/tests/fixtures/scale';
const MiB = 2 ** 20;

async function fileBytes(url: string): Promise<number> {
  return Number((await fetch(url, { method: 'HEAD' })).headers.get('content-length'));
}

function tokens(batch: number, seq: number): Record<string, TensorData> {
  const n = batch * seq;
  return {
    input_ids: { data: new BigInt64Array(n).map((_, i) => BigInt(1 + ((i * 7919) % 50000))), dims: [batch, seq] },
    attention_mask: { data: new BigInt64Array(n).fill(1n), dims: [batch, seq] },
  };
}

/** Loads `url` streaming, and reports time, heap and GPU weight bytes against the file's bytes. */
async function measureLoad(ctx: BenchContext, label: string, url: string, files: string[]): Promise<Model> {
  const { gpu, rows, log } = ctx;
  const size = (await Promise.all(files.map(fileBytes))).reduce((a, b) => a + b, 0);
  const heap0 = await ctx.heapBytes();
  let last: LoadProgress | undefined;
  const t0 = performance.now();
  const model = await loadModel(url, { device: gpu, onProgress: (p) => (last = p) });
  const tLoad = (performance.now() - t0) / 1000;
  const heap = (await ctx.heapBytes()) - heap0;
  rows.push({ suite: 'scale', name: `${label} load`, value: round(tLoad), unit: 's', extra: { fileBytes: size, progressBytes: last?.loadedBytes, tensors: last?.tensors } });
  rows.push({ suite: 'scale', name: `${label} JS heap after load / file bytes`, value: round(heap / MiB), unit: 'MiB', ratio: round(heap / size), baseline: `file bytes (${round(size / MiB)} MiB); lower is better`, goal: '≤ 0.25' });
  log(`scale: ${label} loaded in ${tLoad.toFixed(1)} s, heap +${(heap / MiB).toFixed(1)} MiB for ${(size / MiB).toFixed(1)} MiB of files`);
  return model;
}

export async function scaleSuite(ctx: BenchContext): Promise<void> {
  const { gpu, quick, rows, log } = ctx;
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const base = `${SCALE}/gpt2-small/`;
  const files = [`${base}onnx/model.onnx`, `${base}onnx/model.onnx_data`];
  const fileSize = (await Promise.all(files.map(fileBytes))).reduce((a, b) => a + b, 0);

  // The single-file model must stream too: load it, then free it.
  const single = await measureLoad(ctx, 'gpt2-small (single file)', `${base}onnx/model_single.onnx`, [`${base}onnx/model_single.onnx`]);
  await single.dispose();
  const model = await measureLoad(ctx, 'gpt2-small (external data)', base, files);

  // Forward on 1×8 (every small weight uploaded by its first plan), against ORT WASM.
  const feeds = tokens(1, 8);
  const tForward = await timeAsync(() => model.run(feeds), { reps: 1, trials: 3 });
  const weights = model.weightBytes;
  rows.push({ suite: 'scale', name: 'gpt2-small GPU weight bytes / file bytes', value: round(weights / MiB), unit: 'MiB', ratio: round(weights / fileSize), baseline: `file bytes (${round(fileSize / MiB)} MiB)`, goal: '≈ 1.0' });

  // Planned GPU bytes of one IA3 step at 8×128 (pure: nothing runs), and planned vs measured
  // (the buffer pool's peak over one step) at 8×128 — at 1×32 with --quick (minutes on SwiftShader).
  const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
  const memoryRow = (what: string, bytes: number, extra: Record<string, unknown>): void => {
    rows.push({ suite: 'scale', name: `gpt2-small IA3 step ${what} GPU bytes / weights`, value: round(bytes / MiB), unit: 'MiB', ratio: round(bytes / weights), baseline: `weights (${round(weights / MiB)} MiB); lower is better`, goal: '≤ 1.6', extra });
  };
  const [b, s] = quick ? [1, 32] : [8, 128];
  if (quick) memoryRow('8×128 planned', peft.memoryPlan({ batch: 8, sequence: 128 }).total, {});
  // The other recompute choices (TrainingArguments.recompute; 'cheap' is the default), and keeping
  // every activation in half precision (TrainingArguments.activationPrecision).
  for (const recompute of ['none', 'layers'] as const) memoryRow(`8×128 planned, recompute '${recompute}'`, peft.memoryPlan({ batch: 8, sequence: 128, recompute }).total, {});
  memoryRow(`8×128 planned, recompute 'none', activations f16`, peft.memoryPlan({ batch: 8, sequence: 128, recompute: 'none', activationPrecision: 'f16' }).total, {});
  const planned = peft.memoryPlan({ batch: b, sequence: s });
  const big = tokens(b, s);
  gpu.buffers.resetPeak();
  const t0 = performance.now();
  await peft.lossAndGradients({ inputs: big, labels: big.input_ids! });
  const tBig = (performance.now() - t0) / 1000;
  const peak = gpu.buffers.peakLiveBytes;
  memoryRow(`${b}×${s} planned`, planned.total, { ...planned });
  memoryRow(`${b}×${s} measured peak`, peak, { seconds: round(tBig) });
  log(`scale: step ${b}×${s} planned ${(planned.total / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB, weights ${(weights / MiB).toFixed(0)} MiB (${tBig.toFixed(1)} s)`);

  // Step on 1×8 (with readback of the gradients: what a training step costs) vs our forward and ORT.
  const tStep = await timeAsync(() => peft.lossAndGradients({ inputs: feeds, labels: feeds.input_ids! }), { reps: 1, trials: 3 });
  await model.dispose(); // before ORT takes its own copy of the weights
  const data = await Promise.all(files.map(async (f) => new Uint8Array(await (await fetch(f)).arrayBuffer())));
  const session = await ort.InferenceSession.create(data[0]!, { executionProviders: ['wasm'], externalData: [{ path: 'model.onnx_data', data: data[1]! }] });
  const ortFeeds = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('int64', v.data as BigInt64Array, v.dims)]));
  const tOrt = await timeAsync(() => session.run(ortFeeds), { reps: 1, trials: 3 });
  await session.release();
  rows.push({ suite: 'scale', name: 'gpt2-small forward 1×8 vs ORT wasm', value: round(tForward * 1000), unit: 'ms', ratio: round(tOrt / tForward), baseline: `onnxruntime-web wasm forward (${round(tOrt * 1000)} ms); higher is better` });
  rows.push({ suite: 'scale', name: 'gpt2-small IA3 step 1×8 vs ORT wasm forward', value: round(tStep * 1000), unit: 'ms', ratio: round(tOrt / tStep), baseline: `onnxruntime-web wasm forward (${round(tOrt * 1000)} ms); higher is better` });
  rows.push({ suite: 'scale', name: 'gpt2-small IA3 step 1×8 / forward 1×8', value: round(tStep * 1000), unit: 'ms', ratio: round(tStep / tForward), baseline: `our forward (${round(tForward * 1000)} ms); lower is better` });
  log(`scale: 1×8 forward ${(tForward * 1000).toFixed(0)} ms, step ${(tStep * 1000).toFixed(0)} ms, ORT wasm forward ${(tOrt * 1000).toFixed(0)} ms`);

  await stepForwardRatios(ctx);
  await recomputeCost(ctx);
  await disposeCycles(ctx, 20);
}

/**
 * What recomputing activations costs (TrainingArguments.recompute), and keeping them in f16
 * (TrainingArguments.activationPrecision), on the 4×256 model at 4×64 (and 8×128 without --quick):
 * the step of each choice timed interleaved with the others and the forward (median of 3 trials of
 * one), as a ratio to the step keeping every activation in f32 ('none'), with its planned GPU
 * bytes / weight bytes. Also its own opt-in suite, `--suite scale-recompute`.
 */
export async function recomputeCost(ctx: BenchContext): Promise<void> {
  const { gpu, quick, rows, log } = ctx;
  const model = await loadModel(`${SCALE}/gpt2-4x256/`, { device: gpu });
  const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
  const choices: BackwardOptions[] = [{ recompute: 'none' }, { recompute: 'cheap' }, { recompute: 'layers' }, { recompute: 'none', activationPrecision: 'f16' }, { recompute: 'cheap', activationPrecision: 'f16' }];
  const label = ({ recompute, activationPrecision }: BackwardOptions): string => `recompute '${recompute}'${activationPrecision ? `, activations ${activationPrecision}` : ''}`;
  for (const [batch, seq] of quick ? [[4, 64] as const] : ([[4, 64], [8, 128]] as const)) {
    const n = batch * seq;
    const feeds: Record<string, TensorData> = {
      input_ids: { data: new BigInt64Array(n).map((_, i) => BigInt(1 + ((i * 7919) % 500))), dims: [batch, seq] },
      attention_mask: { data: new BigInt64Array(n).fill(1n), dims: [batch, seq] },
    };
    const shapes = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims]));
    const { plan: forward } = await peft.current().planFor(shapes);
    forward.writeInputs(new Map(Object.entries(feeds).map(([k, v]) => [k, Int32Array.from(v.data as BigInt64Array, Number)])));
    const { model: lossModel, trainables } = peft.trainingModel();
    const trainFeeds = lossModel.gpuFeeds({ ...feeds, labels: feeds.input_ids! });
    const steps = await Promise.all(choices.map((choice) => lossModel.gradientPlan({ ...shapes, labels: [batch, seq] }, 'loss', trainables.map((t) => t.name), undefined, choice)));
    for (const g of steps) g.plan.writeInputs(new Map([...trainFeeds].filter(([k]) => g.inputs.includes(k)).map(([k, v]) => [k, v.data])));
    const times = await timeInterleaved(gpu, [(enc) => forward.encode(enc), ...steps.map((g) => (enc: GPUCommandEncoder) => g.plan.encode(enc))], 1, 3);
    const [tForward, ...tSteps] = times.map((t) => median(t));
    const weights = model.weightBytes;
    choices.forEach((choice, k) => {
      const planned = peft.memoryPlan({ batch, sequence: seq, ...choice }).total;
      rows.push({
        suite: 'scale',
        name: `gpt2-4x256 step ${batch}×${seq}, ${label(choice)} / recompute 'none'`,
        value: round(tSteps[k]! * 1000),
        unit: 'ms',
        ratio: round(tSteps[k]! / tSteps[0]!),
        baseline: `the step keeping every activation (${round(tSteps[0]! * 1000)} ms), same run; forward ${round(tForward! * 1000)} ms`,
        extra: { plannedMiB: round(planned / MiB), plannedOverWeights: round(planned / weights), stepOverForward: round(tSteps[k]! / tForward!), dispatches: steps[k]!.plan.dispatchCount, trialSeconds: times[k + 1]!.map((t) => round(t)) },
      });
      log(`scale: 4×256 ${batch}×${seq} ${label(choice)}: step ${(tSteps[k]! * 1000).toFixed(0)} ms (${(tSteps[k]! / tSteps[0]!).toFixed(2)}× 'none', ${(tSteps[k]! / tForward!).toFixed(2)}× forward), planned ${(planned / MiB).toFixed(1)} MiB = ${(planned / weights).toFixed(2)}× weights`);
    });
  }
  await model.dispose();
}

/**
 * Step / forward on the 4×256 model and gpt2-bench (6×384) at 4×64 and 8×128 tokens, timed
 * interleaved (`timeGpuPair`), the median of 3 trials of one step (three with the full suite). Also
 * its own opt-in suite, `--suite scale-ratios`, which needs only the 4×256 model.
 */
export async function stepForwardRatios(ctx: BenchContext): Promise<void> {
  const { gpu, quick, rows, log } = ctx;
  for (const [label, load] of [
    ['gpt2-4x256', () => loadModel(`${SCALE}/gpt2-4x256/`, { device: gpu })],
    ['gpt2-bench 6x384', () => loadGpt2Bench(gpu, ctx.readFile)],
  ] as const) {
    const m = await load();
    for (const [batch, seq] of [
      [4, 64],
      [8, 128],
    ] as const) {
      const r = await stepAndForward(gpu, m, batch, seq, quick ? 1 : 3);
      rows.push({ suite: 'scale', name: `${label} step / forward ${batch}×${seq}`, value: round(r.tStep * 1000), unit: 'ms', ratio: round(r.tStep / r.tForward), baseline: `forward (${round(r.tForward * 1000)} ms); lower is better`, goal: '≤ 2.2×', extra: { forwardDispatches: r.forward.dispatchCount, stepDispatches: r.step.plan.dispatchCount, trialSeconds: { forward: r.trials.forward.map((t) => round(t)), step: r.trials.step.map((t) => round(t)) } } });
      log(`scale: ${label} ${batch}×${seq} step ${(r.tStep * 1000).toFixed(0)} ms / forward ${(r.tForward * 1000).toFixed(0)} ms = ${(r.tStep / r.tForward).toFixed(2)}×`);
      await r.peft.dispose();
    }
    await m.dispose();
  }
}

/** `cycles` × (load the 4×256 model, one IA3 training step, dispose all): live bytes after each. */
async function disposeCycles({ gpu, rows, log }: BenchContext, cycles: number): Promise<void> {
  const data: Example[] = Array.from({ length: 4 }, (_, i) => ({ input_ids: Array.from({ length: 16 }, (_, t) => 1 + ((i * 131 + t * 17) % 500)) }));
  const start = gpu.buffers.liveBytes;
  const after: number[] = [];
  const t0 = performance.now();
  for (let c = 0; c < cycles; c++) {
    const model = await loadModel(`${SCALE}/gpt2-4x256/`, { device: gpu });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const trainer = new Trainer(peft, { batchSize: 2, maxSteps: 1, maxLength: 16 });
    await trainer.train(data);
    trainer.dispose();
    await peft.dispose();
    await model.dispose();
    after.push(gpu.buffers.liveBytes);
  }
  const seconds = (performance.now() - t0) / 1000;
  const worst = Math.max(...after.map((b) => b - start));
  rows.push({
    suite: 'scale',
    name: `gpt2-4x256 load → train → dispose ×${cycles}: most live bytes left`,
    value: worst,
    unit: 'B',
    baseline: `live bytes before the first cycle (${start}); 0 is no leak`,
    goal: '0',
    extra: { start, after, secondsPerCycle: round(seconds / cycles) },
  });
  log(`scale: ${cycles} load → train → dispose cycles, live bytes before ${start}, after each: ${[...new Set(after)].join(', ')} (${(seconds / cycles).toFixed(1)} s a cycle)`);
}
