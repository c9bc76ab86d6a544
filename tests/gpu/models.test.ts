// Whole models on WebGPU: every fixture (BERT, GPT-2, Llama, DistilBERT; opsets 14 and 17),
// loaded from its Hugging Face folder URL, run forward on the GPU and compared with
//   1. PyTorch's float64 outputs committed by tests/fixtures/generate.py,
//   2. the float64 CPU executor on the same specialised IR,
//   3. onnxruntime-web (WASM provider) on the same file and inputs,
// for several batch sizes and sequence lengths, with and without padding in attention_mask.
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-web';
import { loadModel, type Model, type TensorData } from '../../src/index.js';
import { getGpu } from '../util/gpu.js';
import { closeness } from '../util/tensors.js';

interface RefCase {
  name: string;
  inputs: Record<string, { dtype: string; dims: number[]; data: number[] }>;
  outputs: Record<string, { dims: number[]; data: number[] }>;
}

const FIXTURES = ['bert', 'gpt2', 'llama', 'distilbert'] as const;
const FILES = { 14: 'model.onnx', 17: 'model_opset17.onnx' } as const;

async function fetchJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return (await r.json()) as T;
}

function feedsOf(c: RefCase): Record<string, TensorData> {
  const feeds: Record<string, TensorData> = {};
  for (const [k, v] of Object.entries(c.inputs)) feeds[k] = { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims };
  return feeds;
}

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol = 2e-3, atol = 2e-4): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { worst, at, maxAbs } = closeness(actual, expected, { rtol, atol });
  expect(worst, `${what}: element ${at} is ${actual[at]} vs ${expected[at]} (max abs err ${maxAbs.toExponential(2)})`).toBeLessThanOrEqual(1);
}

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

describe.each(FIXTURES)('%s fixture', (name) => {
  for (const opset of [14, 17] as const) {
    it(`opset ${opset}: GPU forward equals PyTorch, the CPU executor and onnxruntime-web`, async () => {
      const gpu = await getGpu();
      const base = `/tests/fixtures/${name}/`;
      const ref = await fetchJson<{ cases: RefCase[]; modules: { path: string }[] }>(`${base}reference.json`);
      const model: Model = await loadModel(`${base}onnx/${FILES[opset]}`, { device: gpu });
      // Module paths recovered from the graph are exactly the PyTorch module names.
      expect(model.moduleNames().sort()).toEqual(ref.modules.map((m) => m.path).sort());
      const bytes = new Uint8Array(await (await fetch(`${base}onnx/${FILES[opset]}`)).arrayBuffer());
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
      try {
        for (const c of ref.cases) {
          const feeds = feedsOf(c);
          const out = await model.run(feeds);
          const logits = out.logits!;
          expect(logits.dims, `${c.name}: dims`).toEqual(c.outputs.logits!.dims);
          const got = logits.data as Float32Array;
          expectNear(got, c.outputs.logits!.data, `${name}/${opset}/${c.name} vs PyTorch float64`);
          const cpu = model.runReference(feeds).logits!;
          expectNear(got, cpu.data, `${name}/${opset}/${c.name} vs CPU executor`);
          const ortFeeds: Record<string, ort.Tensor> = {};
          for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = new ort.Tensor('int64', v.data as BigInt64Array, v.dims);
          const ortOut = (await session.run(ortFeeds)).logits!;
          expectNear(got, ortOut.data as Float32Array, `${name}/${opset}/${c.name} vs onnxruntime-web`);
        }
      } finally {
        await session.release();
        await model.dispose();
      }
    });
  }
});

describe('loading', () => {
  it('loads a Hugging Face model folder by URL (config.json + onnx/model.onnx)', async () => {
    const model = await loadModel('/tests/fixtures/gpt2/', { device: await getGpu() });
    expect(model.modelType).toBe('gpt2');
    expect(model.config?.n_layer).toBe(2);
    expect(model.moduleNames()).toContain('transformer.h.1.mlp.c_proj');
    const { logits } = await model.run({ input_ids: [[46, 32, 18]], attention_mask: [[1, 1, 1]] });
    expect(logits!.dims).toEqual([1, 3, 120]);
    await model.dispose();
  });
});
