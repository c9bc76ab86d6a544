// Merging IA3 adapters into the frozen weights on WebGPU, and the merged ONNX export.
//
// On the BERT, GPT-2 and Llama fixtures with two active adapters (random, non-one vectors;
// feed-forward modules; biases; BERT also Gemm [out, in] weights and a modules_to_save copy):
// merged outputs equal the unmerged IA3 forward; the GPU and CPU copies of the merged weights hold
// the same bits and equal an independent float32 computation; merging twice changes nothing;
// unmerge restores the weights; exportMergedOnnx() run in onnxruntime-web equals the IA3 forward
// with the original graph's nodes and IO names. Plus: safe merge of a NaN vector, disabling while
// merged, weighted adapters and adapter names, switching without recompiling, mergeAndUnload, and
// the adapter download helper.
//
// float16 (tests/fixtures/real/gpt2-variants: whole-graph fp16, and fp16 weights read through
// Casts): the same two adapters merged on the GPU give PyTorch's halves bit for bit
// (tests/fixtures/merge_fp16.py) in the GPU copies (still packed halves, same buffers) and the CPU
// copies; merged outputs equal the IA3 forward within the halves' rounding, and the base model's
// plan compiled before merging sees the merged weights; the export keeps every tensor's dtype and
// holds PyTorch's halves, and onnxruntime-web runs it like the IA3 forward; unmerge gives PyTorch's
// (lossy) halves; safe merging refuses a float16 overflow and changes nothing. Weights streamed to
// the GPU at load (no CPU copy) are read back as packed halves and merge as an in-memory load's.
import * as ort from 'onnxruntime-web';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { downloadAdapter, loadModel, MergeError, type Model, type TensorData } from '../../src/index.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { IA3Config } from '../../src/peft/config.js';
import { mergeSteps, scaleCpu } from '../../src/peft/merge.js';
import { getPeftModel, type PeftModel } from '../../src/peft/model.js';
import { vectorName } from '../../src/peft/adapter.js';
import { floatToHalf } from '../../src/ir/dtype.js';
import type { Graph } from '../../src/ir/graph.js';
import { sizeOf } from '../../src/ir/tensor.js';
import { fetchJson, tensorData, type Reference } from '../util/fixture-compare.js';
import { getGpu } from '../util/gpu.js';
import { halvesOf, type MergeReference } from '../util/merge-reference.js';
import { closeness } from '../util/tensors.js';

ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

interface Json {
  dims: number[];
  data: number[];
}
interface IA3Reference {
  adapters: Record<string, Record<string, Json>>;
  cases: { inputs: Record<string, Json> }[];
}

const toTensors = (t: Record<string, Json>): Record<string, TensorData> =>
  Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { data: Float32Array.from(v.data), dims: v.dims }]));

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rtol: number, atol: number): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const { worst, at } = closeness(actual, expected, { rtol, atol });
  expect(worst, `${what}: element ${at} is ${actual[at]} vs ${expected[at]}`).toBeLessThanOrEqual(1);
}

function rand(seed: number, n: number, lo = -1.5, hi = 1.5): Float32Array {
  let s = seed >>> 0;
  return new Float32Array(n).map(() => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + (s / 2 ** 32) * (hi - lo);
  });
}

const bits = (a: Float32Array | ArrayBuffer): number[] => Array.from(new Uint32Array(a instanceof Float32Array ? a.slice().buffer : a));

interface Setup {
  model: Model;
  peft: PeftModel;
  feeds: Record<string, TensorData>;
  url: string;
}

async function setup(name: string): Promise<Setup> {
  const gpu = await getGpu();
  const url = `/tests/fixtures/${name}/onnx/model_opset17.onnx`;
  const ref = (await (await fetch(`/tests/fixtures/${name}/ia3_reference.json`)).json()) as IA3Reference;
  const model = await loadModel(url, { device: gpu });
  const peft = getPeftModel(model, new IA3Config());
  peft.loadStateDict(toTensors(ref.adapters.default!));
  peft.addAdapter('second', new IA3Config());
  peft.loadStateDict(toTensors(ref.adapters.second!), 'second');
  peft.setAdapter(['default', 'second']);
  if (name === 'bert') {
    // Every dense layer (the pooler is a Gemm with an [out, in] weight) and the classifier as a
    // modules_to_save copy with new values.
    peft.addAdapter('third', new IA3Config({ targetModules: ['key', 'value', 'dense', 'output.dense'], feedforwardModules: ['output.dense'], taskType: 'SEQ_CLS', initIa3Weights: false }));
    const w = peft.paramValues('mts::third::classifier.weight');
    peft.setParamValues('mts::third::classifier.weight', rand(5, w.length, -0.5, 0.5));
    peft.setAdapter(['default', 'third']);
  }
  const c = ref.cases[0]!;
  const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims }]));
  return { model, peft, feeds, url };
}

/** The frozen initializers the active adapters scale, with the steps for each. */
function scaledInitializers(peft: PeftModel, model: Model): Map<string, { dims: readonly number[]; axis: number; vector: Float32Array }[]> {
  const out = new Map<string, { dims: readonly number[]; axis: number; vector: Float32Array }[]>();
  for (const a of peft.activeAdapters) {
    for (const t of peft.targets(a)) {
      for (const s of mergeSteps(model.graph, t.module, t.feedforward, peft.paramValues(vectorName(a, t.module.path)))) {
        out.set(s.initializer, [...(out.get(s.initializer) ?? []), s]);
      }
    }
  }
  return out;
}

async function expectGpuEqualsCpu(model: Model, names: Iterable<string>): Promise<void> {
  for (const name of names) {
    const cpu = model.graph.initializers.get(name)!.data as Float32Array;
    const gpu = await model.gpu.read(model.weightBuffers.get(name)!, cpu.byteLength);
    expect(bits(gpu), `GPU copy of '${name}'`).toEqual(bits(cpu));
  }
}

async function runOrt(bytes: Uint8Array, feeds: Record<string, TensorData>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = new ort.Tensor('int64', v.data as BigInt64Array, v.dims);
  const out = await session.run(ortFeeds);
  await session.release();
  return out.logits!.data as Float32Array;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe.each(['bert', 'gpt2', 'llama'])('merge on %s', (name) => {
  it('merged = unmerged outputs, GPU = CPU copies, idempotent, export runs in onnxruntime-web, unmerge restores', async () => {
    const { model, peft, feeds, url } = await setup(name);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const unmerged = (await peft.run(feeds)).logits!.data as Float32Array;
    const scaled = scaledInitializers(peft, model);
    expect([...scaled.keys()].some((k) => k.endsWith('bias') || model.graph.initializers.get(k)!.dims.length === 1)).toBe(name !== 'llama');
    const original = new Map([...scaled.keys()].map((k) => [k, Float32Array.from(model.graph.initializers.get(k)!.data as Float32Array)]));

    await peft.merge();
    expect(peft.merged).toBe(true);
    expect(peft.mergedAdapters).toEqual(peft.activeAdapters);
    expect(peft.current().graph.nodes.some((n) => n.opType === 'IA3Scale')).toBe(false);
    expect(peft.current().graph.nodes.map((n) => n.opType)).toEqual(model.graph.nodes.map((n) => n.opType));
    const merged = (await peft.run(feeds)).logits!.data as Float32Array;
    expectNear(merged, unmerged, `${name} merged vs IA3`, 1e-4, 1e-5);
    // Each merged weight is the float32 product with each adapter's vector in turn, on both copies.
    for (const [init, steps] of scaled) {
      let want = original.get(init)!;
      for (const s of steps) {
        const inner = s.axis === 0 && s.dims.length === 2 ? s.dims[1]! : 1;
        want = want.map((w, i) => w * s.vector[inner === 1 ? i % s.vector.length : Math.floor(i / inner)]!);
      }
      expect(bits(model.graph.initializers.get(init)!.data as Float32Array), init).toEqual(bits(want));
    }
    await expectGpuEqualsCpu(model, scaled.keys());

    // Merging again is a no-op with PEFT's warning.
    const before = [...scaled.keys()].map((k) => model.graph.initializers.get(k)!.data);
    await peft.merge();
    expect(warn).toHaveBeenLastCalledWith('All adapters are already merged, nothing to do.');
    expect([...scaled.keys()].map((k) => model.graph.initializers.get(k)!.data)).toEqual(before);
    expect(bits((await peft.run(feeds)).logits!.data as Float32Array)).toEqual(bits(merged));

    if (name !== 'llama') {
      // The export, from the merged state: the original graph with merged weights, run by onnxruntime-web.
      const { onnx: bytes, externalData } = await peft.exportMergedOnnx();
      expect(externalData).toBeUndefined();
      const src = decodeOnnx(new Uint8Array(await (await fetch(url)).arrayBuffer()));
      const out = decodeOnnx(bytes);
      expect(out.nodes).toEqual(src.nodes);
      expect(out.inputs).toEqual(src.inputs);
      expect(out.outputs).toEqual(src.outputs);
      expectNear(await runOrt(bytes, feeds), unmerged, `${name} exported (merged) in onnxruntime-web vs IA3`, 2e-3, 2e-4);
    }

    peft.unmerge();
    expect(warn).toHaveBeenLastCalledWith('Unmerge result can be inaccurate for (IA)^3.');
    expect(peft.merged).toBe(false);
    await expectGpuEqualsCpu(model, scaled.keys());
    for (const [init, steps] of scaled) {
      // Exact to 1e-6 relative where every vector element is away from 0; elsewhere PEFT's 1e-8
      // tolerance in the divisor costs about 1e-8 / |l| relative (the inaccuracy PEFT warns of).
      const n = original.get(init)!.length;
      const factor = steps.reduce((f, s) => scaleCpu(new Float32Array(n).fill(1), s.dims, s.axis, s.vector.map(Math.abs)).map((v, i) => Math.min(v, f[i]!)), new Float32Array(n).fill(Infinity));
      const got = model.graph.initializers.get(init)!.data as Float32Array;
      const orig = original.get(init)!;
      for (let i = 0; i < got.length; i++) {
        const tol = factor[i]! >= 0.1 ? 1e-6 * Math.abs(orig[i]!) : Math.max(1e-6, 4e-8 / factor[i]!) * Math.abs(orig[i]!);
        if (Math.abs(got[i]! - orig[i]!) > tol) expect.fail(`${init}[${i}] unmerged to ${got[i]}, was ${orig[i]} (|l| ≥ ${factor[i]})`);
      }
    }
    expectNear((await peft.run(feeds)).logits!.data as Float32Array, unmerged, `${name} unmerged vs IA3`, 1e-4, 1e-5);

    if (name === 'gpt2') {
      // The export without merge() writes the same merged weights.
      const { onnx: bytes } = await peft.exportMergedOnnx();
      expectNear(await runOrt(bytes, feeds), unmerged, 'gpt2 exported (not merged) in onnxruntime-web vs IA3', 2e-3, 2e-4);
      // Disabling while merged unmerges first (PEFT), then runs the base model.
      await peft.merge();
      peft.disableAdapter();
      expect(peft.merged).toBe(false);
      peft.enableAdapter();
      peft.disableAdapter();
      const base = (await model.run(feeds)).logits!.data as Float32Array;
      expect(bits((await peft.run(feeds)).logits!.data as Float32Array)).toEqual(bits(base));
    }
    await model.dispose();
  });
});

describe('merge on gpt2', () => {
  it('safe merge refuses a NaN vector with PEFT message and changes nothing', async () => {
    const { model, peft, feeds } = await setup('gpt2');
    await peft.run(feeds); // uploads the weights
    const t = peft.targets('second')[1]!;
    const v = Float32Array.from(peft.paramValues(vectorName('second', t.module.path)));
    v[3] = NaN;
    peft.setParamValues(vectorName('second', t.module.path), v);
    const names = [...scaledInitializers(peft, model).keys()];
    const data = names.map((n) => model.graph.initializers.get(n)!.data);
    const gpuBefore = await Promise.all(names.map((n) => model.gpu.read(model.weightBuffers.get(n)!, 4 * model.graph.initializers.get(n)!.data!.length)));
    const err = await peft.merge({ safe: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MergeError);
    expect((err as Error).message).toMatch(/^NaNs detected in the merged weights\. The adapter second seems to be broken/);
    expect(peft.merged).toBe(false);
    expect(names.map((n) => model.graph.initializers.get(n)!.data)).toEqual(data);
    const gpuAfter = await Promise.all(names.map((n) => model.gpu.read(model.weightBuffers.get(n)!, 4 * model.graph.initializers.get(n)!.data!.length)));
    expect(gpuAfter.map((b) => bits(b))).toEqual(gpuBefore.map((b) => bits(b)));
    // Without the NaN vector the first adapter merges, and the weights can no longer be trained.
    peft.setAdapter('default');
    await peft.merge({ safe: true });
    expect(peft.mergedAdapters).toEqual(['default']);
    expect(() => peft.trainingModel()).toThrow(/cannot train while adapters are merged/);
    expect(() => peft.setParamValues(vectorName('default', t.module.path), v)).toThrow(/unmerge\(\) before changing its vector/);
    await expect(peft.deleteAdapter('default')).rejects.toThrow("Cannot delete adapter(s) ['default'] while they are merged. Please unmerge them first.");
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    peft.setAdapter('second');
    expect(warn).toHaveBeenCalledWith('Adapter cannot be set when the model is merged. Unmerging the model first.');
    expect(peft.merged).toBe(false);
    await model.dispose();
  });

  it('switching adapters compiles no pipeline and uploads no frozen weight; names change no output; weighted = CPU sum', async () => {
    const { model, peft, feeds } = await setup('gpt2');
    const gpu = model.gpu;
    peft.setAdapter('default');
    const outDefault = (await peft.run(feeds)).logits!.data as Float32Array;
    peft.setAdapter('second');
    await peft.run(feeds);
    const pipelines = gpu.pipelines.compiled;
    const live = gpu.buffers.liveBytes;
    const frozen = new Map([...model.weightBuffers].filter(([k]) => !k.startsWith('ia3::')));
    for (const a of ['default', 'second', 'default', 'second']) {
      peft.setAdapter(a);
      const out = (await peft.run(feeds)).logits!.data as Float32Array;
      if (a === 'default') expect(bits(out)).toEqual(bits(outDefault));
    }
    expect(gpu.pipelines.compiled).toBe(pipelines);
    expect(gpu.buffers.liveBytes).toBe(live);
    for (const [k, b] of frozen) expect(model.weightBuffers.get(k), k).toBe(b);

    // A weighted combination with a negative weight equals the same vectors summed on the CPU and
    // loaded under another name: identical outputs.
    peft.addWeightedAdapter(['default', 'second'], [0.6, -0.3], 'weighted');
    expect(peft.activeAdapters).toEqual(['second']);
    peft.addAdapter('by_hand', new IA3Config());
    for (const t of peft.targets('by_hand')) {
      const a = peft.paramValues(vectorName('default', t.module.path));
      const b = peft.paramValues(vectorName('second', t.module.path));
      peft.setParamValues(vectorName('by_hand', t.module.path), a.map((x, i) => Math.fround(x * Math.fround(0.6)) + Math.fround(b[i]! * Math.fround(-0.3))));
    }
    peft.setAdapter('weighted');
    const w = (await peft.run(feeds)).logits!.data as Float32Array;
    peft.setAdapter('by_hand');
    expect(bits((await peft.run(feeds)).logits!.data as Float32Array)).toEqual(bits(w));
    expect(closeness(w, outDefault, { rtol: 1e-3, atol: 1e-4 }).worst).toBeGreaterThan(1);
    await model.dispose();
  });

  it('mergeAndUnload returns the base model with the merged weights', async () => {
    const { model, peft, feeds } = await setup('gpt2');
    const ia3 = (await peft.run(feeds)).logits!.data as Float32Array;
    const base = await peft.mergeAndUnload();
    expect(base).toBe(model);
    expectNear((await base.run(feeds)).logits!.data as Float32Array, ia3, 'merged and unloaded vs IA3', 1e-4, 1e-5);
    expect([...model.weightBuffers.keys()].some((k) => k.startsWith('ia3::'))).toBe(false);
    await expect(peft.run(feeds)).rejects.toThrow(/unloaded by mergeAndUnload/);
    await model.dispose();
  });
});

/** The halves a float16 weight holds on the GPU (packed `f16x2` words, or widened f32) as bit patterns. */
async function gpuHalves(model: Model, name: string): Promise<number[]> {
  const init = model.graph.initializers.get(name)!;
  const n = sizeOf(init.dims);
  const buffer = model.weightBuffers.get(name)!;
  if (init.storage === 'f16x2') return Array.from(new Uint16Array(await model.gpu.read(buffer, 2 * n + (n % 2) * 2), 0, n));
  return Array.from(new Float32Array(await model.gpu.read(buffer, 4 * n)), floatToHalf);
}
const cpuHalves = (graph: Graph, name: string): number[] => Array.from(graph.initializers.get(name)!.data as Float32Array, floatToHalf);

describe.each(['model_fp16.onnx', 'model_fp16_weights.onnx'])('merge on gpt2-variants/%s (float16)', (file) => {
  it("merges and unmerges in float16 as PyTorch does, keeps the halves packed, exports float16 that onnxruntime-web runs like the IA3 forward", async () => {
    const gpu = await getGpu();
    const ref = await fetchJson<MergeReference>('/tests/fixtures/merge-fp16/merge_reference.json');
    const adapters = (await fetchJson<IA3Reference>('/tests/fixtures/gpt2/ia3_reference.json')).adapters;
    const fixture = (await fetchJson<Reference>('/tests/fixtures/real/gpt2-variants/reference.json')).files[`onnx/${file}`]!;
    const url = `/tests/fixtures/real/gpt2-variants/onnx/${file}`;
    const model = await loadModel(url, { device: gpu });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const peft = getPeftModel(model, new IA3Config());
      for (const a of ref.gpt2.adapters) {
        if (a !== 'default') peft.addAdapter(a, new IA3Config());
        peft.loadStateDict(toTensors(adapters[a]!), a);
      }
      peft.setAdapter(ref.gpt2.adapters);
      const feeds = Object.fromEntries(Object.entries(fixture.cases[1]!.inputs).map(([k, t]) => [k, tensorData(t)]));
      const names = Object.keys(ref.gpt2.tensors);
      expect(names.filter((n) => model.graph.initializers.get(n)!.storage === 'f16x2')).toEqual(names.filter((n) => n.endsWith('.weight')));
      const ia3 = (await peft.run(feeds)).logits!.data as Float32Array;
      await model.run(feeds); // the base model's plan, compiled before merging
      const original = names.map((n) => cpuHalves(model.graph, n));
      const buffers = names.map((n) => model.weightBuffers.get(n));

      if (file === 'model_fp16.onnx') {
        // Safe merging refuses a product past the largest half (finite in float32) and changes nothing.
        const t = peft.targets('second')[0]!;
        const v = Float32Array.from(peft.paramValues(vectorName('second', t.module.path)));
        const keep = v[5]!;
        v[5] = 1e7;
        peft.setParamValues(vectorName('second', t.module.path), v);
        const err = await peft.merge({ safe: true }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MergeError);
        expect((err as Error).message).toMatch(/^NaNs detected in the merged weights\. The adapter second seems to be broken \('transformer\.h\.0\.attn\.c_attn\.weight' element \d+ would be -?Infinity \(the float32 product -?[\d.e+]+ overflows float16/);
        expect(peft.merged).toBe(false);
        expect(await Promise.all(names.map((n) => gpuHalves(model, n)))).toEqual(original);
        v[5] = keep;
        peft.setParamValues(vectorName('second', t.module.path), v);
      }

      await peft.merge({ safe: true });
      // PyTorch's halves, in both copies; the GPU keeps the same buffers, packed.
      for (const [i, n] of names.entries()) {
        const want = halvesOf(ref.gpt2.tensors[n]!.merged);
        expect(cpuHalves(model.graph, n), `CPU copy of ${n}`).toEqual(want);
        expect(await gpuHalves(model, n), `GPU copy of ${n}`).toEqual(want);
        expect(model.weightBuffers.get(n), n).toBe(buffers[i]);
      }
      // Merged weights are W·l rounded to halves (≤ 2⁻¹¹ relative each), which the IA3 forward never rounds.
      const merged = (await peft.run(feeds)).logits!.data as Float32Array;
      const diff = closeness(merged, ia3, { rtol: 0, atol: 1 }).maxAbs;
      console.log(`[merge fp16] ${file}: max |merged − IA3| ${diff.toExponential(2)} (logits up to ${Math.max(...Array.from(ia3, Math.abs)).toFixed(2)})`);
      expectNear(merged, ia3, `${file} merged vs IA3`, 2e-3, 2e-3);
      expect(bits((await model.run(feeds)).logits!.data as Float32Array), 'the base model on the merged weights').toEqual(bits(merged));

      // The export: the source's graph and dtypes, PyTorch's halves, run by onnxruntime-web.
      const { onnx: bytes } = await peft.exportMergedOnnx();
      const src = decodeOnnx(new Uint8Array(await (await fetch(url)).arrayBuffer()));
      const out = decodeOnnx(bytes);
      expect(out.nodes).toEqual(src.nodes);
      expect([...out.initializers.values()].map((t) => [t.name, t.dtype, t.storage])).toEqual([...src.initializers.values()].map((t) => [t.name, t.dtype, t.storage]));
      for (const n of names) expect(cpuHalves(out, n), `exported ${n}`).toEqual(halvesOf(ref.gpt2.tensors[n]!.merged));
      const exported = await runOrt(bytes, feeds);
      console.log(`[merge fp16] ${file}: max |onnxruntime-web(export) − IA3| ${closeness(exported, ia3, { rtol: 0, atol: 1 }).maxAbs.toExponential(2)}`);
      // The file's own onnxruntime-web tolerance (fp16 compute: 5e-2; fp16 weights, f32 compute: 1e-4) plus the halves' rounding.
      const tol = fixture.torch_tolerance!.atol + 2e-3;
      expectNear(exported, ia3, `${file} exported (merged) in onnxruntime-web vs IA3`, tol, tol);

      peft.unmerge();
      expect(warn).toHaveBeenLastCalledWith('Unmerge result can be inaccurate for (IA)^3.');
      let lost = 0;
      for (const [i, n] of names.entries()) {
        const t = ref.gpt2.tensors[n]!;
        expect(cpuHalves(model.graph, n), `CPU copy of ${n} unmerged`).toEqual(halvesOf(t.unmerged));
        expect(await gpuHalves(model, n), `GPU copy of ${n} unmerged`).toEqual(halvesOf(t.unmerged));
        const notRestored = cpuHalves(model.graph, n).filter((b, k) => b !== original[i]![k]).length;
        expect(notRestored, n).toBe(t.not_restored);
        lost += notRestored;
      }
      expect(lost, 'unmerge is lossy in float16').toBeGreaterThan(0);
    } finally {
      await model.dispose();
    }
  });
});

describe('merge of float16 weights streamed to the GPU at load', () => {
  it('reads the packed halves back and merges and unmerges them as the in-memory load does', async () => {
    const gpu = await getGpu();
    const url = '/tests/fixtures/real/llama-variants/onnx/model_fp16_weights.onnx';
    const adapters = (await fetchJson<IA3Reference>('/tests/fixtures/llama/ia3_reference.json')).adapters;
    const fixture = (await fetchJson<Reference>('/tests/fixtures/real/llama-variants/reference.json')).files['onnx/model_fp16_weights.onnx']!;
    const feeds = Object.fromEntries(Object.entries(fixture.cases[0]!.inputs).map(([k, t]) => [k, tensorData(t)]));
    const streamed = await loadModel(url, { device: gpu, keepBytes: 4096 });
    const whole = await loadModel(url, { device: gpu, keepWeightsOnCpu: true });
    vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const pefts = [streamed, whole].map((m) => {
        const p = getPeftModel(m, new IA3Config());
        p.loadStateDict(toTensors(adapters.default!));
        p.addAdapter('second', new IA3Config());
        p.loadStateDict(toTensors(adapters.second!), 'second');
        p.setAdapter(['default', 'second']);
        return p;
      });
      const names = [...scaledInitializers(pefts[1]!, whole).keys()];
      // Every scaled weight is packed; those over keepBytes (down_proj) streamed, with no CPU copy.
      for (const n of names) expect(streamed.graph.initializers.get(n)!.storage, n).toBe('f16x2');
      const onGpuOnly = names.filter((n) => !streamed.graph.initializers.get(n)!.data);
      expect(onGpuOnly.length, 'weights with no CPU copy').toBeGreaterThan(0);
      const halves = async (m: Model): Promise<number[][]> => Promise.all(names.map((n) => gpuHalves(m, n)));
      const ia3 = (await pefts[0]!.run(feeds)).logits!.data as Float32Array; // makes every weight resident
      expect(bits(ia3)).toEqual(bits((await pefts[1]!.run(feeds)).logits!.data as Float32Array));
      for (const p of pefts) await p.merge();
      expect(await halves(streamed)).toEqual(await halves(whole));
      expect(names.map((n) => cpuHalves(streamed.graph, n))).toEqual(names.map((n) => cpuHalves(whole.graph, n)));
      const merged = (await pefts[0]!.run(feeds)).logits!.data as Float32Array;
      expect(bits(merged)).toEqual(bits((await pefts[1]!.run(feeds)).logits!.data as Float32Array));
      expectNear(merged, ia3, 'streamed merged vs IA3', 2e-3, 2e-3);
      for (const p of pefts) p.unmerge();
      expect(await halves(streamed)).toEqual(await halves(whole));
    } finally {
      await streamed.dispose();
      await whole.dispose();
    }
  });
});

describe('downloadAdapter', () => {
  it('offers both files as downloads with their bytes', async () => {
    const clicked: { name: string; href: string }[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(function (this: HTMLAnchorElement) {
      clicked.push({ name: this.download, href: this.href });
    });
    const names = downloadAdapter({ 'adapter_model.safetensors': Uint8Array.of(1, 2, 3), 'adapter_config.json': '{"peft_type": "IA3"}' }, { prefix: 'run1-' });
    expect(names).toEqual(['run1-adapter_model.safetensors', 'run1-adapter_config.json']);
    expect(clicked.map((c) => c.name)).toEqual(names);
    expect(Array.from(new Uint8Array(await (await fetch(clicked[0]!.href)).arrayBuffer()))).toEqual([1, 2, 3]);
    expect(await (await fetch(clicked[1]!.href)).text()).toBe('{"peft_type": "IA3"}');
    expect(document.querySelectorAll('a[download]').length).toBe(0);
    expect(() => downloadAdapter({ 'adapter_model.safetensors': Uint8Array.of(1), 'adapter_config.json': '{}' }, { prefix: 'a/b' })).toThrow(/path separator/);
  });
});
