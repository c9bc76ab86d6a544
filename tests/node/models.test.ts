// Whole models in Node on Dawn, loaded from file paths: every fixture's forward pass equals
// PyTorch's float64 outputs (tests/fixtures/generate.py) and the float64 CPU executor, from a
// Hugging Face folder path, an .onnx path, and a folder on disk whose weights are in an external
// data file beside the .onnx; the files stream in chunks through a file handle, never read whole.
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadModel, type Model, type TensorData } from '../../src/index.js';
import { getGpu } from '../util/node-gpu.js';
import { withExternalData } from '../util/onnx-build.js';
import { closeness } from '../util/tensors.js';

interface RefCase {
  name: string;
  inputs: Record<string, { dims: number[]; data: number[] }>;
  outputs: { logits: { dims: number[]; data: number[] } };
}
interface Reference {
  cases: RefCase[];
  modules: { path: string }[];
}

const reference = (name: string): Reference => JSON.parse(readFileSync(`tests/fixtures/${name}/reference.json`, 'utf8')) as Reference;
const feedsOf = (c: RefCase): Record<string, TensorData> =>
  Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims }]));

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { worst, at, maxAbs } = closeness(actual, expected, { rtol: 2e-3, atol: 2e-4 });
  expect(worst, `${what}: element ${at} is ${actual[at]} vs ${expected[at]} (max abs err ${maxAbs.toExponential(2)})`).toBeLessThanOrEqual(1);
}

async function expectMatchesReference(model: Model, ref: Reference, label: string): Promise<void> {
  expect(model.moduleNames().sort()).toEqual(ref.modules.map((m) => m.path).sort());
  for (const c of ref.cases) {
    const feeds = feedsOf(c);
    const logits = (await model.run(feeds)).logits!;
    expect(logits.dims, `${label}/${c.name}: dims`).toEqual(c.outputs.logits.dims);
    expectNear(logits.data as Float32Array, c.outputs.logits.data, `${label}/${c.name} vs PyTorch float64`);
    expectNear(logits.data as Float32Array, model.runReference(feeds).logits!.data, `${label}/${c.name} vs CPU executor`);
  }
}

describe('fixtures from file paths', () => {
  it('GPT-2 from its Hugging Face folder path equals PyTorch', async () => {
    const model = await loadModel('tests/fixtures/gpt2', { device: await getGpu() });
    expect(model.modelType).toBe('gpt2');
    await expectMatchesReference(model, reference('gpt2'), 'gpt2');
    await model.dispose();
  });

  it.each(['bert', 'llama', 'distilbert'])('%s from its .onnx path (opset 17) equals PyTorch', async (name) => {
    const model = await loadModel(join(process.cwd(), `tests/fixtures/${name}/onnx/model_opset17.onnx`), { device: await getGpu() });
    expect(model.config?.model_type).toBe(name); // config.json found one level above onnx/
    await expectMatchesReference(model, reference(name), name);
    await model.dispose();
  });

  it('reads weights from an external data file beside the .onnx', async () => {
    const ext = withExternalData(readFileSync('tests/fixtures/gpt2/onnx/model.onnx'), 'model.onnx_data');
    const dir = mkdtempSync(join(tmpdir(), 'ia3-node-'));
    mkdirSync(join(dir, 'onnx'));
    writeFileSync(join(dir, 'config.json'), readFileSync('tests/fixtures/gpt2/config.json'));
    writeFileSync(join(dir, 'onnx', 'model.onnx'), ext.model);
    writeFileSync(join(dir, 'onnx', 'model.onnx_data'), ext.data);
    const model = await loadModel(dir, { device: await getGpu() });
    expect(model.graph.initializers.get(ext.first)!.external?.location).toBe('model.onnx_data');
    await expectMatchesReference(model, reference('gpt2'), 'gpt2 (external data)');
    await model.dispose();
  });

  it('streams the .onnx and its external data in chunks, never a whole file at once', async () => {
    const ext = withExternalData(readFileSync('tests/fixtures/gpt2/onnx/model.onnx'), 'model.onnx_data');
    const dir = mkdtempSync(join(tmpdir(), 'ia3-node-'));
    writeFileSync(join(dir, 'model.onnx'), ext.model);
    writeFileSync(join(dir, 'model.onnx_data'), ext.data);
    // Every read of a FileHandle goes through its prototype's read: count them and their sizes.
    const probe = await open(join(dir, 'model.onnx'), 'r');
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<{ bytesRead: number }> };
    await probe.close();
    const reads = vi.spyOn(proto, 'read');
    const chunk = 4096;
    try {
      const model = await loadModel(join(dir, 'model.onnx'), { device: await getGpu(), fileChunkBytes: chunk });
      const lengths = reads.mock.calls.map((c) => c[2] as number);
      const sizes = ['model.onnx', 'model.onnx_data'].map((f) => statSync(join(dir, f)).size);
      expect(Math.max(...sizes), 'the fixture spans many chunks').toBeGreaterThan(20 * chunk);
      expect(Math.max(...lengths)).toBeLessThanOrEqual(chunk);
      expect(lengths.reduce((a, b) => a + b, 0)).toBe(sizes[0]! + sizes[1]!);
      expect(reads.mock.calls.length).toBe(sizes.reduce((n, s) => n + Math.ceil(s / chunk), 0));
      await expectMatchesReference(model, reference('gpt2'), 'gpt2 (streamed in 4 KiB chunks)');
      await model.dispose();
    } finally {
      reads.mockRestore();
    }
  });
});
