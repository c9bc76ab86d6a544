// Benchmark harness helpers: GPU timing by wall clock around whole submissions (median of
// trials, each trial many repetitions in one command buffer), the result rows, and the context
// every suite gets, the same in the browser page and in Node. Every timed wait goes through
// awaitGpu (src/runtime.ts), as the library's own waits do, so that in Node Dawn's polling loop
// does not take the CPU from a software adapter's work (ours and onnxruntime-web's alike).
import type { GpuContext } from '../../src/gpu/device.js';
import type { PeftModel, TensorData } from '../../src/index.js';
import { awaitGpu } from '../../src/runtime.js';

export interface BenchRow {
  suite: string;
  name: string;
  value: number;
  unit: string;
  /** value(this) / value(baseline) oriented so that > 1 means better than the baseline. */
  ratio?: number;
  baseline?: string;
  goal?: string;
  extra?: Record<string, unknown>;
}

export interface BenchContext {
  gpu: GpuContext;
  quick: boolean;
  rows: BenchRow[];
  log: (msg: string) => void;
  /** A file of the repository by its path from the root (the page fetches it, Node reads it). */
  readFile: (path: string) => Promise<Uint8Array>;
  /** A model file of the repository as loadModel takes it to stream it: a URL in the page, a path in Node. */
  modelSource: (path: string) => string;
  /** Bytes of the JS heap, ArrayBuffers included, after full collections (heapAfterGc). */
  heapBytes: () => Promise<number>;
}

/**
 * `read()` after full collections (run.mjs exposes gc in both runtimes): two, a task apart, so that
 * what finalizers and WeakRefs released after the first is collected by the second.
 */
export async function heapAfterGc(read: () => number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return NaN;
  gc();
  await new Promise((r) => setTimeout(r, 0));
  gc();
  return read();
}

/**
 * Seconds per repetition of each encoder, per trial: after one warm-up each, every trial runs each
 * encoder `reps` times in one submission, in turn, so all of them see the same machine load.
 */
export async function timeInterleaved(gpu: GpuContext, encoders: ((enc: GPUCommandEncoder) => void)[], reps: number, trials = 5): Promise<number[][]> {
  const run = async (encode: (enc: GPUCommandEncoder) => void, n: number): Promise<number> => {
    const enc = gpu.device.createCommandEncoder();
    for (let i = 0; i < n; i++) encode(enc);
    const t0 = performance.now();
    gpu.device.queue.submit([enc.finish()]);
    await awaitGpu(gpu.device.queue.onSubmittedWorkDone());
    return (performance.now() - t0) / 1000 / n;
  };
  for (const e of encoders) await run(e, 1);
  const times = encoders.map((): number[] => []);
  for (let t = 0; t < trials; t++) {
    for (const [k, e] of encoders.entries()) times[k]!.push(await run(e, reps));
  }
  return times;
}

/**
 * Seconds per call of each async function, per trial: each is first warmed up, called for at least
 * `warmupMs` (and at least once), then every trial calls each `reps` times, in turn, so a change of
 * load falls on all of them alike. The long warm-up is for onnxruntime-web, the baseline: its WASM
 * tiers up while it runs, and in Node 20 (V8 11.3) the optimising compiler spends seconds to tens of
 * seconds of a background thread on its hot functions — a few calls would time it half-compiled,
 * and with that thread taking a core from the work timed (README, "Benchmark › In Node").
 */
export async function timeAsyncInterleaved(fns: (() => Promise<unknown>)[], { reps = 1, trials = 3, warmupMs = 0 } = {}): Promise<number[][]> {
  for (const fn of fns) {
    const t0 = performance.now();
    do await awaitGpu(fn());
    while (performance.now() - t0 < warmupMs);
  }
  const times = fns.map((): number[] => []);
  for (let t = 0; t < trials; t++) {
    for (const [k, fn] of fns.entries()) {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) await awaitGpu(fn());
      times[k]!.push((performance.now() - t0) / 1000 / reps);
    }
  }
  return times;
}

/** Median seconds per call of an async function. */
export async function timeAsync(fn: () => Promise<unknown>, { reps = 10, trials = 3 } = {}): Promise<number> {
  await awaitGpu(fn());
  const times: number[] = [];
  for (let t = 0; t < trials; t++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await awaitGpu(fn());
    times.push((performance.now() - t0) / 1000 / reps);
  }
  return median(times);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const round = (x: number, digits = 3): number => Number(x.toPrecision(digits));

/**
 * The adapted model's forward pass (IA3 scales fused into the matmuls) and one IA3 training step
 * (forward, causal-LM loss on labels = input_ids, backward to every IA3 vector), each planned for
 * `feeds`, given its inputs, and timed without readback, interleaved (`timeInterleaved`: 3 trials
 * of `reps` each, one command buffer a trial, forward and step alternating), as medians.
 */
export async function timeForwardAndStep(gpu: GpuContext, peft: PeftModel, feeds: Record<string, TensorData>, reps: number) {
  const shapes = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims]));
  const { plan: forward } = await peft.current().planFor(shapes);
  forward.writeInputs(new Map(Object.entries(feeds).map(([k, v]) => [k, Int32Array.from(v.data as BigInt64Array, Number)])));
  const { model: lossModel, trainables } = peft.trainingModel();
  const labels = feeds.input_ids!;
  const step = await lossModel.gradientPlan({ ...shapes, labels: labels.dims }, 'loss', trainables.map((t) => t.name));
  const trainFeeds = lossModel.gpuFeeds({ ...feeds, labels });
  step.plan.writeInputs(new Map([...trainFeeds].filter(([k]) => step.inputs.includes(k)).map(([k, v]) => [k, v.data])));
  const [f, s] = await timeInterleaved(gpu, [(enc) => forward.encode(enc), (enc) => step.plan.encode(enc)], reps, 3);
  return { forward, step, tForward: median(f!), tStep: median(s!), trials: { forward: f!, step: s! } };
}
