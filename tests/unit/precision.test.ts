// Loading fp16, 4-bit and 8-bit files on the CPU: which float16 weights stay packed halves
// (src/onnx/precision.ts), that the Casts in front of them are gone, that MatMulNBits becomes a
// MatMul on one repacked 4-bit weight (ops/contrib-quant.ts), that q8 chains become the dynamic
// quantiser and a MatMul on the 8-bit weight, GatherBlockQuantized a Gather on a 4-bit weight (the
// LM head's own when tied) — and nothing else changed: the CPU
// executor still reproduces onnxruntime-web —, that module discovery finds the fp32 export's modules
// with their biases, that describe() says which weights are half on the GPU, and that merging is
// refused with the reason and the way out.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { legalize } from '../../src/compile/legalize.js';
import { layoutPlan } from '../../src/compile/plan.js';
import { SizeLimitError } from '../../src/errors.js';
import { deviceTraits } from '../../src/gpu/traits.js';
import type { GpuContext } from '../../src/gpu/device.js';
import type { Graph, Initializer } from '../../src/ir/graph.js';
import { sizeOf, type RefTensor } from '../../src/ir/tensor.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { describeGraph } from '../../src/onnx/describe.js';
import { specialize } from '../../src/onnx/specialize.js';
import { runReferenceModel } from '../../src/onnx/executor.js';
import { Model, onnxFileOf } from '../../src/model.js';
import { detectModelType, findModules, type ModuleInfo } from '../../src/onnx/modules.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { checkMergeable } from '../../src/peft/merge.js';
import { insertIA3 } from '../../src/peft/inject.js';
import { dynamicQuantParams, roundHalfEven } from '../../src/ops/quantize.js';
import { OPS } from '../../src/ops/registry.js';
import { ortDiffs, readJson, type JsonTensor, type OrtReference, type Reference } from '../util/real-fixtures.js';
import { closeness } from '../util/tensors.js';

const refTensor = (t: JsonTensor): RefTensor => ({ dtype: t.dtype, dims: t.dims, data: Float64Array.from(t.data as number[], Number) });

const FILES: [model: string, file: string, kind: 'fp16' | 'q4' | 'int8' | 'q8' | 'gbq'][] = [
  ['gpt2', 'onnx/model_fp16.onnx', 'fp16'],
  ['gpt2', 'onnx/model_fp16_weights.onnx', 'fp16'],
  ['llama', 'onnx/model_fp16.onnx', 'fp16'],
  ['llama', 'onnx/model_fp16_weights.onnx', 'fp16'],
  ['bert', 'onnx/model_fp16.onnx', 'fp16'],
  ['llama', 'onnx/model_q4.onnx', 'q4'],
  ['llama', 'onnx/model_q4_b128_zp.onnx', 'q4'],
  ['llama', 'onnx/model_q4f16.onnx', 'q4'],
  ['bert', 'onnx/model_q4.onnx', 'q4'],
  ['bert', 'onnx/model_q4_b128_zp.onnx', 'q4'],
  ['gpt2', 'onnx/model_int8_qdq.onnx', 'int8'],
  ['llama', 'onnx/model_int8_qdq.onnx', 'int8'],
  ['bert', 'onnx/model_int8_qdq.onnx', 'int8'],
  ['gpt2', 'onnx/model_quantized.onnx', 'q8'],
  ['gpt2', 'onnx/model_quantized_per_channel.onnx', 'q8'],
  ['llama', 'onnx/model_quantized.onnx', 'q8'],
  ['llama', 'onnx/model_quantized_per_channel.onnx', 'q8'],
  ['bert', 'onnx/model_quantized.onnx', 'q8'],
  ['llama', 'onnx/model_q4_gather.onnx', 'gbq'],
];

/** Half weights: every module's weight is packed and read by its matmul directly. */
function checkHalf(graph: Graph, modules: readonly ModuleInfo[]): void {
  for (const m of modules) expect(graph.initializers.get(m.weight)?.storage, m.path).toBe('f16x2');
  const packed = new Set([...graph.initializers.values()].filter((i) => i.storage === 'f16x2').map((i) => i.name));
  for (const n of graph.nodes) {
    if (n.inputs.some((v) => packed.has(v))) expect(['MatMul', 'Gemm'], n.name).toContain(n.opType);
  }
  expect(describeGraph(graph, modules)).toContain(`Precision on the GPU: ${packed.size} float16 weights kept half`);
  // Half weights merge in half (tests/unit/peft-merge.test.ts, tests/gpu/merge.test.ts).
  expect(() => checkMergeable(graph, modules, { gpu: true })).not.toThrow();
}

/** 4-bit weights: modules on repacked weights; the file's codes, scales and zero points are gone. */
function checkQ4(graph: Graph, modules: readonly ModuleInfo[]): void {
  expect(modules.filter((m) => graph.initializers.get(m.weight)?.storage?.startsWith('q4b')).length, 'modules on 4-bit weights').toBeGreaterThan(0);
  expect(() => checkMergeable(graph, modules, { gpu: false })).toThrow(/is a 4-bit weight \(MatMulNBits\); merging would requantise it/);
  expect([...graph.initializers.values()].filter((i) => i.dtype === 'uint8')).toEqual([]);
  const count = [...graph.initializers.values()].filter((i) => i.storage?.startsWith('q4b')).length;
  expect(describeGraph(graph, modules)).toContain(`Precision on the GPU: ${count} weights in 4-bit blocks (MatMulNBits)`);
}

/** QDQ 8-bit weights: every module's weight folded into one packed weight; no DequantizeLinear left. */
function checkInt8(graph: Graph, modules: readonly ModuleInfo[]): void {
  for (const m of modules) expect(graph.initializers.get(m.weight)?.storage, m.path).toMatch(/^[iu]8[rc]$/);
  expect(graph.nodes.filter((n) => n.opType === 'DequantizeLinear')).toEqual([]);
  expect([...graph.initializers.values()].filter((i) => i.dtype === 'int8' || i.dtype === 'uint8')).toEqual([]);
  expect(() => checkMergeable(graph, modules, { gpu: false })).toThrow(/is an 8-bit weight/);
}

/**
 * q8 dynamic int8: every module's weight packed per column under the fp32 export's name, every
 * DynamicQuantizeLinear chain lowered to the fake quantiser and a MatMul, the embedding tables
 * packed per row and read by Gather; no file op of the chains left.
 */
function checkQ8(graph: Graph, modules: readonly ModuleInfo[], plain: Graph): void {
  for (const m of modules) expect(graph.initializers.get(m.weight)?.storage, m.path).toMatch(/^[iu]8c$/);
  for (const op of ['DynamicQuantizeLinear', 'MatMulInteger', 'DequantizeLinear', 'Cast']) {
    expect(graph.nodes.filter((n) => n.opType === op && n.inputs.some((v) => /_quantized|_scale/.test(v))), op).toEqual([]);
  }
  expect(graph.nodes.filter((n) => n.opType === 'DynamicQuantizeDequantize').length).toBeGreaterThan(0);
  const tables = graph.nodes.filter((n) => n.opType === 'Gather' && graph.initializers.get(n.inputs[0]!)?.storage?.match(/^[iu]8r$/));
  expect(tables.length, 'embedding tables read packed').toBeGreaterThan(0);
  for (const t of tables) expect(plain.initializers.has(t.inputs[0]!.replace(/_quantized$/, '')), t.inputs[0]).toBe(true);
  expect([...graph.initializers.values()].filter((i) => i.dtype === 'int8' || i.dtype === 'uint8')).toEqual([]);
  expect(() => checkMergeable(graph, modules, { gpu: false })).toThrow(/is an 8-bit weight \(DequantizeLinear or MatMulInteger\)/);
  expect(describeGraph(graph, modules)).toMatch(/Precision on the GPU: \d+ weights in 8 bits dequantised inside the matmul kernels, \d+ embedding tables in 8 bits dequantised by Gather; \d+ dynamic uint8 activation quantisers/);
}

/**
 * GatherBlockQuantized: the 4-bit table read by a Gather along axis 1 of one q4b weight (no f32
 * table, no 4-bit tensor of the file left), the matmuls on 4-bit weights as for q4 files.
 */
function checkGatherQ4(graph: Graph, modules: readonly ModuleInfo[]): void {
  checkQ4(graph, modules);
  expect(graph.nodes.filter((n) => n.opType === 'GatherBlockQuantized')).toEqual([]);
  const gathers = graph.nodes.filter((n) => n.opType === 'Gather' && graph.initializers.get(n.inputs[0]!)?.storage?.startsWith('q4b'));
  expect(gathers.map((n) => n.attrs.axis)).toEqual([1]);
  expect([...graph.initializers.values()].filter((i) => i.int4)).toEqual([]);
}

describe('fp16, 4-bit and 8-bit files at load', () => {
  for (const [model, file, kind] of FILES) {
    it(`${model}-variants/${file}`, () => {
      const root = `tests/fixtures/real/${model}-variants`;
      const graph = decodeOnnx(new Uint8Array(readFileSync(`${root}/${file}`)));
      const modelType = (JSON.parse(readFileSync(`${root}/config.json`, 'utf8')) as { model_type: string }).model_type;
      const plain = decodeOnnx(new Uint8Array(readFileSync(`tests/fixtures/${model}/onnx/model.onnx`)));
      const modules = findModules(graph, { modelType });
      const summary = (ms: readonly ModuleInfo[]) => ms.map((m) => `${m.path} ${m.inFeatures}→${m.outFeatures} bias ${m.bias !== undefined}`);
      expect(summary(modules)).toEqual(summary(findModules(plain, { modelType })));
      if (kind === 'fp16') checkHalf(graph, modules);
      else if (kind === 'q4') checkQ4(graph, modules);
      else if (kind === 'q8') checkQ8(graph, modules, plain);
      else if (kind === 'gbq') checkGatherQ4(graph, modules);
      else checkInt8(graph, modules);

      // The same function: the CPU executor against onnxruntime-web.
      const ref = readJson<Reference>(`${root}/reference.json`).files[file]!;
      const ort = readJson<OrtReference>(`${root}/ort_reference.json`).files[file]!;
      for (const c of ref.cases) {
        const out = runReferenceModel(graph, Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, refTensor(t)])));
        for (const d of ortDiffs(c, ort.cases.find((o) => o.name === c.name)!, out, ref.torch_tolerance!)) {
          expect(d.worst, `${c.name} ${d.name}: max |Δ| ${d.maxAbs}`).toBeLessThanOrEqual(1);
        }
      }
    });
  }
});

describe('modules_to_save on a 4-bit weight', () => {
  it('trains an f32 copy of the dequantised weight (llama q4 lm_head)', () => {
    const load = (path: string): Model => {
      const bytes = new Uint8Array(readFileSync(path));
      const config = JSON.parse(readFileSync('tests/fixtures/real/llama-variants/config.json', 'utf8')) as { model_type: string };
      const graph = decodeOnnx(bytes);
      const modules = findModules(graph, { modelType: config.model_type });
      return new Model({} as GpuContext, graph, config, modules, detectModelType(modules, config), new Map(), onnxFileOf({ bytes, fileName: 'model.onnx', externalData: {} }));
    };
    const config = () => new IA3Config({ taskType: 'CAUSAL_LM', modulesToSave: ['lm_head'] });
    const q4 = getPeftModel(load('tests/fixtures/real/llama-variants/onnx/model_q4.onnx'), config());
    const fp32 = getPeftModel(load('tests/fixtures/llama/onnx/model.onnx'), config());
    const key = 'base_model.model.lm_head.weight';
    const got = q4.stateDict()[key]!;
    const want = fp32.stateDict()[key]!;
    expect(got.dims).toEqual(want.dims);
    // The copy is the dequantised weight: within 4-bit rounding of the fp32 weight, never raw words.
    const w = want.data as Float32Array;
    const scale = Math.max(...Array.from(w, Math.abs));
    const { worst, maxAbs } = closeness(got.data as Float32Array, w, { rtol: 0, atol: 0.15 * scale });
    expect(worst, `max |Δ| ${maxAbs} vs max |w| ${scale}`).toBeLessThanOrEqual(1);
  });
});

describe('packed weights under a binding limit', () => {
  const graph = decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/real/llama-variants/onnx/model_q4.onnx')));
  const shapes = { input_ids: [1, 1], attention_mask: [1, 1], position_ids: [1, 1] };
  const limited = (bytes: number) => deviceTraits({ limits: { maxStorageBufferBindingSize: bytes } });
  const packed = [...graph.initializers.values()].filter((i) => i.storage === 'q4b32');
  const q = packed.reduce((a, b) => ((b.data as Uint32Array).byteLength > (a.data as Uint32Array).byteLength ? b : a));

  it('count their words, not 4 bytes per element: 4-bit weights whose f32 form would not fit stay whole', () => {
    const words = (q.data as Uint32Array).byteLength;
    const limit = 2 * words;
    expect(4 * sizeOf(q.dims)).toBeGreaterThan(limit);
    const legal = legalize(specialize(graph, shapes), limited(limit));
    for (const w of packed) expect(legal.resident.get(w.name)?.storage, w.name).toBe('q4b32');
    expect(() => layoutPlan(legal, limited(limit))).not.toThrow();
  });

  it('are not cut into blocks: one over the limit is a SizeLimitError naming it and its storage', () => {
    const limit = Math.floor((q.data as Uint32Array).byteLength / 2);
    const spec = specialize(graph, shapes);
    expect(() => legalize(spec, limited(limit))).toThrow(SizeLimitError);
    expect(() => legalize(spec, limited(limit))).toThrow(/stored packed \(q4b32\), and packed weights are not split into blocks/);
  });
});

describe('IA3 feed-forward scaling of a q8 layer', () => {
  it('scales the input before the layer quantises it: (x ⊙ l) goes through a quantiser of its own', () => {
    const graph = decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/real/gpt2-variants/onnx/model_quantized.onnx')));
    const m = findModules(graph, { modelType: 'gpt2' }).find((x) => x.path === 'transformer.h.0.mlp.c_proj')!;
    const before = graph.nodes.find((n) => n.name === m.node)!;
    const quant = graph.nodes.find((n) => n.outputs[0] === before.inputs[0])!;
    expect(quant.opType).toBe('DynamicQuantizeDequantize');
    const l: Initializer = { name: 'ia3::default::transformer.h.0.mlp.c_proj', dtype: 'float32', dims: [1, m.inFeatures], data: new Float32Array(m.inFeatures).fill(2) };
    const out = insertIA3(graph, [{ module: m, feedforward: true, vectors: [l] }]);
    const mm = out.nodes.find((n) => n.name === m.node)!;
    const q = out.nodes.find((n) => n.outputs[0] === mm.inputs[0])!;
    const scale = out.nodes.find((n) => n.outputs[0] === q.inputs[0])!;
    expect([q.opType, scale.opType]).toEqual(['DynamicQuantizeDequantize', 'IA3Scale']);
    expect(scale.inputs).toEqual([quant.inputs[0], l.name]);
    // The file's quantiser still serves its other readers, if any, unscaled.
    expect(out.nodes.filter((n) => n.opType === 'DynamicQuantizeDequantize').length).toBe(graph.nodes.filter((n) => n.opType === 'DynamicQuantizeDequantize').length + 1);
  });
});

describe('the dynamic quantiser reference', () => {
  it("computes onnxruntime's parameters and rounds halves to even", () => {
    expect([roundHalfEven(2.5), roundHalfEven(3.5), roundHalfEven(-2.5), roundHalfEven(-0.5), roundHalfEven(1.4999)]).toEqual([2, 4, -2, -0, 1]);
    expect(dynamicQuantParams([0, 0, 0])).toEqual({ scale: 1, zeroPoint: 0 });
    expect(dynamicQuantParams([0, 255])).toEqual({ scale: 1, zeroPoint: 0 });
    // min −1, max 2: scale 3/255 in f32, zero point round(1 / scale) = 85.
    expect(dynamicQuantParams([-1, 2, 0.5])).toEqual({ scale: Math.fround(3 / 255), zeroPoint: 85 });
    // All negative: the range is widened to include 0, so the zero point is 255.
    expect(dynamicQuantParams([-4, -1]).zeroPoint).toBe(255);
    const y = OPS.DynamicQuantizeDequantize.reference([{ dtype: 'float32', dims: [4], data: Float64Array.from([0, 255, 127.5, 128.5]) }], {}, { opType: 'DynamicQuantizeDequantize', nodeName: 'q', opset: 1 })[0]!;
    expect(Array.from(y.data)).toEqual([0, 255, 128, 128]); // scale 1: 127.5 and 128.5 both round to 128
  });
});

describe('a GatherBlockQuantized table tied to the MatMulNBits LM head', () => {
  it('is the head weight itself: one packed copy (qwen2-genai q4f16, shared_embeddings)', () => {
    const graph = decodeOnnx(new Uint8Array(readFileSync('tests/fixtures/real/qwen2-genai/onnx/model_q4f16.onnx')));
    const gather = graph.nodes.find((n) => n.opType === 'Gather' && graph.initializers.get(n.inputs[0]!)?.storage === 'q4b32')!;
    const head = findModules(graph, { modelType: 'qwen2' }).find((m) => m.path === 'lm_head')!;
    expect(gather.inputs[0]).toBe(head.weight);
    expect(gather.attrs.axis).toBe(1);
    // No copy of the file's codes or scales is left, and no Reshape of them.
    expect([...graph.initializers.values()].filter((i) => i.dtype === 'uint8' || i.int4)).toEqual([]);
    expect(graph.nodes.filter((n) => n.opType === 'Reshape' && n.name.startsWith('/model/embed_tokens'))).toEqual([]);
  });
});
