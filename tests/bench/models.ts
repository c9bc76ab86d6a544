// Model forward benchmarks: latency of our compiled plan vs onnxruntime-web (WebGPU provider, and
// WASM provider) on the same ONNX file, the same input, in the same page; outputs read back to the
// CPU on both sides, as a caller of `run` gets them. Ours and each baseline are warmed up and then
// timed in turn, trial by trial (timeAsyncInterleaved), so the ratios compare between runtimes.
//
// `gpt2-bench` (6 layers × 384 hidden) keeps its weights in external data that the repository does
// not ship (44 MB): this page refills `model.onnx_data` with seeded random weights (LayerNorm gains
// near 1, biases near 0, matrices N(0, 0.02)), which is all a latency benchmark needs.
import * as ort from 'onnxruntime-web';
import { onnx } from 'onnx-proto';
import { loadModel, type TensorData } from '../../src/index.js';
import { type BenchContext, median, round, timeAsyncInterleaved } from './harness.js';

function rngNormal(seed: number): () => number {
  let s = seed >>> 0;
  const u = (): number => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Builds the external data file an ONNX model points at, with seeded random float32 weights. */
export function syntheticExternalData(modelBytes: Uint8Array): { location: string; bytes: Uint8Array } {
  const model = onnx.ModelProto.decode(modelBytes);
  let location = '';
  let total = 0;
  const tensors: { name: string; offset: number; length: number }[] = [];
  for (const t of model.graph?.initializer ?? []) {
    const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
    if (!kv.location) continue;
    location = kv.location;
    const offset = Number(kv.offset ?? 0);
    const length = Number(kv.length);
    tensors.push({ name: t.name ?? '', offset, length });
    total = Math.max(total, offset + length);
  }
  const bytes = new Uint8Array(total);
  const randn = rngNormal(1234);
  for (const t of tensors) {
    const f = new Float32Array(bytes.buffer, t.offset, t.length / 4);
    const isNorm = /ln_|layernorm|norm/i.test(t.name);
    for (let i = 0; i < f.length; i++) {
      if (isNorm && t.name.endsWith('weight')) f[i] = 1 + 0.02 * randn();
      else if (t.name.endsWith('bias')) f[i] = 0.01 * randn();
      else f[i] = 0.02 * randn();
    }
  }
  return { location, bytes };
}

interface Case {
  fixture: string;
  batch: number;
  seq: number;
}

export async function modelSuite({ gpu, quick, rows, log, readFile }: BenchContext): Promise<void> {
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const cases: Case[] = quick
    ? [{ fixture: 'gpt2', batch: 1, seq: 16 }]
    : [
        { fixture: 'bert', batch: 4, seq: 16 },
        { fixture: 'gpt2', batch: 4, seq: 16 },
        { fixture: 'llama', batch: 4, seq: 16 },
        { fixture: 'distilbert', batch: 4, seq: 16 },
        { fixture: 'gpt2-bench', batch: 1, seq: 128 },
      ];
  for (const c of cases) {
    const bytes = await readFile(`tests/fixtures/${c.fixture}/onnx/model.onnx`);
    const external = c.fixture === 'gpt2-bench' ? syntheticExternalData(bytes) : undefined;
    const model = await loadModel(bytes, { device: gpu, ...(external ? { externalData: { [external.location]: external.bytes } } : {}) });
    const n = c.batch * c.seq;
    const feeds: Record<string, TensorData> = {};
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const name of model.inputNames) {
      const data = new BigInt64Array(n);
      for (let i = 0; i < n; i++) {
        data[i] = name === 'input_ids' ? BigInt((i * 7919) % 97) : name === 'position_ids' ? BigInt(i % c.seq) : name === 'token_type_ids' ? 0n : 1n;
      }
      feeds[name] = { data, dims: [c.batch, c.seq] };
      ortFeeds[name] = new ort.Tensor('int64', data, [c.batch, c.seq]);
    }
    // The realistic-width model is slow on a software adapter: fewer repetitions, still a median.
    const big = c.fixture === 'gpt2-bench';
    const reps = quick || big ? 1 : 5;
    const trials = big ? 3 : 5;
    const { plan } = await model.planFor(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.dims])));
    // Ours and each provider of onnxruntime-web in its own session are warmed up, then timed in
    // turn, trial by trial; each ratio is the median of the per-trial ratios (as the kernel suite
    // does), so neither side gets the quieter moments.
    const versus = async (ep: 'webgpu' | 'wasm'): Promise<{ ours: number[]; ort: number[]; ratio: number }> => {
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: [ep],
        ...(external ? { externalData: [{ path: external.location, data: external.bytes }] } : {}),
      });
      try {
        const [ours, theirs] = await timeAsyncInterleaved([() => model.run(feeds), () => session.run(ortFeeds)], { reps, trials, warmupMs: big ? 0 : 5000 });
        return { ours: ours!, ort: theirs!, ratio: median(theirs!.map((t, i) => t / ours![i]!)) };
      } finally {
        await session.release();
      }
    };
    const webgpu = await versus('webgpu');
    const wasm = await versus('wasm');
    const ours = median(webgpu.ours);
    const tWebgpu = median(webgpu.ort);
    const tWasm = median(wasm.ort);
    const ms = (ts: number[]): number[] => ts.map((t) => round(t * 1000));
    const label = `${c.fixture} forward b${c.batch}×s${c.seq}`;
    rows.push({
      suite: 'models',
      name: `${label} vs ORT webgpu`,
      value: round(ours * 1000),
      unit: 'ms',
      ratio: round(webgpu.ratio),
      baseline: `onnxruntime-web webgpu (${round(tWebgpu * 1000)} ms)`,
      goal: '> 1× (faster)',
      extra: {
        trialsMs: { ours: ms(webgpu.ours), ortWebgpu: ms(webgpu.ort), oursVsWasm: ms(wasm.ours), ortWasm: ms(wasm.ort) },
        dispatches: plan.dispatchCount,
        weightsMiB: round(model.weightBytes / 2 ** 20),
        activationMiB: round(plan.memory.activationBytes / 2 ** 20),
      },
    });
    rows.push({ suite: 'models', name: `${label} vs ORT wasm`, value: round(ours * 1000), unit: 'ms', ratio: round(wasm.ratio), baseline: `onnxruntime-web wasm (${round(tWasm * 1000)} ms)` });
    log(`${label}: ours ${(ours * 1000).toFixed(1)} ms (${plan.dispatchCount} dispatches), ort webgpu ${(tWebgpu * 1000).toFixed(1)} ms, ort wasm ${(tWasm * 1000).toFixed(1)} ms`);
    await model.dispose();
  }
}
