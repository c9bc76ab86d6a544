// Several adapters and merged exports without a GPU: addWeightedAdapter against a CPU computation
// (negative weight, a layer only one adapter has) and PEFT's checks; the merge safety checks (tied
// weights); exportMergedOnnx writing raw_data, float_data and external data in place. float16 merges
// against PyTorch (tests/fixtures/merge_fp16.py, generated): the rounding of single products and
// quotients bit for bit (ties to even, subnormals, overflow to ∞, float32 rounding deciding the
// half), safe merging's overflow check, and the fp16 GPT-2 variants' merged export (raw_data,
// external data; int32_data for a typed float16 tensor) holding PyTorch's halves, still float16.
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { FormatError, InputError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/device.js';
import type { Graph, Initializer } from '../../src/ir/graph.js';
import { Model, type OnnxFile } from '../../src/model.js';
import { decodeOnnx } from '../../src/onnx/decode.js';
import { loadOnnx } from '../../src/onnx/load.js';
import { findModules, detectModelType } from '../../src/onnx/modules.js';
import { IA3Config } from '../../src/peft/config.js';
import { floatToHalf, halfToFloat } from '../../src/ir/dtype.js';
import { castBack, checkFinite, checkMergeable, MergeError, mergeSteps, scaleAs, scaleCpu, unmergeDivisor } from '../../src/peft/merge.js';
import { getPeftModel } from '../../src/peft/model.js';
import { vectorName } from '../../src/peft/adapter.js';
import { halvesOf, type MergeReference } from '../util/merge-reference.js';
import { singleOpModel, withExternalData } from '../util/onnx-build.js';

// Nothing here touches the GPU: adding adapters and exporting run on the CPU copies.
const noGpu = {} as GpuContext;

async function cpuModel(bytes: Uint8Array, externalData: Record<string, Uint8Array> = {}, moduleMap?: Record<string, string>): Promise<Model> {
  const { graph, config, reread } = await loadOnnx(bytes, { externalData });
  const modules = findModules(graph, moduleMap ? { moduleMap } : {});
  const file: OnnxFile = { fileName: 'model.onnx', read: reread };
  return new Model(noGpu, graph, config as Record<string, unknown> | undefined, modules, detectModelType(modules, config) ?? 'gpt2', new Map(), file);
}

const gpt2Bytes = () => new Uint8Array(readFileSync('tests/fixtures/gpt2/onnx/model_opset17.onnx'));

/** Deterministic vectors in [-1.5, 1.5] for every target of an adapter. */
function fill(peft: ReturnType<typeof getPeftModel>, adapter: string, seed: number): void {
  let s = seed;
  for (const t of peft.targets(adapter)) {
    const name = vectorName(adapter, t.module.path);
    const v = new Float32Array(peft.paramValues(name).length).map(() => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return (s / 2 ** 32) * 3 - 1.5;
    });
    peft.setParamValues(name, v);
  }
}

describe('addWeightedAdapter', () => {
  it('sums weighted vectors per layer (absent adapter adds 0), with unions of modules, not activated', async () => {
    const model = await cpuModel(gpt2Bytes());
    const peft = getPeftModel(model, new IA3Config(), 'a');
    // 'b' targets only c_attn: mlp.c_proj is absent from it.
    peft.addAdapter('b', new IA3Config({ targetModules: ['c_attn'], feedforwardModules: [] }));
    fill(peft, 'a', 1);
    fill(peft, 'b', 2);
    const weights = [0.75, -1.25];
    peft.addWeightedAdapter(['a', 'b'], weights, 'w');
    expect(peft.activeAdapters).toEqual(['a']);
    const cfg = peft.peftConfig.w!;
    expect([...(cfg.targetModules as Set<string>)].sort()).toEqual(['c_attn', 'mlp.c_proj']);
    expect([...(cfg.feedforwardModules as Set<string>)]).toEqual(['mlp.c_proj']);
    const paths = peft.targets('w').map((t) => t.module.path);
    expect(paths).toEqual(peft.targets('a').map((t) => t.module.path));
    for (const t of peft.targets('w')) {
      const got = peft.paramValues(vectorName('w', t.module.path));
      const a = peft.paramValues(vectorName('a', t.module.path));
      const inB = peft.targets('b').some((x) => x.module.path === t.module.path);
      const b = inB ? peft.paramValues(vectorName('b', t.module.path)) : undefined;
      for (let i = 0; i < got.length; i++) {
        const want = Math.fround(Math.fround(a[i]! * 0.75) + (b ? Math.fround(b[i]! * -1.25) : 0));
        expect(got[i], `${t.module.path}[${i}]`).toBe(want);
      }
      if (!inB) expect(Array.from(got)).toEqual(Array.from(a).map((x) => Math.fround(x * 0.75)));
    }
    // A single adapter with weight 1 reproduces it exactly.
    peft.addWeightedAdapter(['b'], [1], 'b_copy');
    for (const t of peft.targets('b')) expect(peft.paramValues(vectorName('b_copy', t.module.path))).toEqual(peft.paramValues(vectorName('b', t.module.path)));
  });

  it("applies PEFT's checks with typed errors", async () => {
    const model = await cpuModel(gpt2Bytes());
    const peft = getPeftModel(model, new IA3Config(), 'a');
    expect(() => peft.addWeightedAdapter(['a', 'nope'], [1, 1], 'x')).toThrow(/Adapter nope does not exist/);
    expect(() => peft.addWeightedAdapter(['a'], [1, 2], 'x')).toThrow(/1 adapters but 2 weights/);
    expect(() => peft.addWeightedAdapter(['a'], [NaN], 'x')).toThrow(/not a finite number/);
    expect(() => peft.addWeightedAdapter(['a'], [1], 'a')).toThrow(/already exists/);
    // mlp.c_proj on its output in 'ff' but on its input in 'a'.
    peft.addAdapter('ff', new IA3Config({ targetModules: ['c_attn', 'mlp.c_proj'], feedforwardModules: [] }));
    expect(() => peft.addWeightedAdapter(['a', 'ff'], [1, 1], 'x')).toThrow(/disagree on feed-forward modules: 'transformer\.h\.0\.mlp\.c_proj' is not feed-forward in 'ff'/);
    expect(peft.listAdapters()).not.toContain('x');
    peft.addAdapter('re', new IA3Config({ targetModules: '.*c_attn', feedforwardModules: [] }));
    expect(() => peft.addWeightedAdapter(['a', 're'], [1, 1], 'x')).toThrow('All adapter configs should have the same type for target and feedforward modules.');
    peft.addAdapter('re2', new IA3Config({ targetModules: '.*mlp\\.c_proj', feedforwardModules: [] }));
    peft.addWeightedAdapter(['re', 're2'], [1, 1], 'rx');
    expect(peft.peftConfig.rx!.targetModules).toBe('(.*c_attn)|(.*mlp\\.c_proj)');
    peft.addAdapter('s1', new IA3Config({ targetModules: ['c_attn'], feedforwardModules: [], modulesToSave: ['lm_head'] }));
    peft.addAdapter('s2', new IA3Config({ targetModules: ['c_attn'], feedforwardModules: [], modulesToSave: ['lm_head'] }));
    const err = (() => {
      try {
        peft.addWeightedAdapter(['s1', 's2'], [1, 1], 'x');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/Cannot add weighted adapters targeting the same module with modules_to_save: 'lm_head' \(s1, s2\)/);
  });
});

describe('merge checks', () => {
  it('refuses tied weights, naming the initializer and the other readers', () => {
    const w: Initializer = { name: 'W', dtype: 'float32', dims: [2, 2], data: new Float32Array(4) };
    const graph: Graph = {
      name: 'g',
      opsets: new Map([['', 17]]),
      irVersion: 8,
      producer: '',
      inputs: [{ name: 'x', dtype: 'float32', dims: [1, 2] }],
      outputs: [{ name: 'z' }],
      initializers: new Map([['W', w]]),
      nodes: [
        { name: 'proj', opType: 'MatMul', domain: '', inputs: ['x', 'W'], outputs: ['y'], attrs: {} },
        { name: 'head', opType: 'MatMul', domain: '', inputs: ['y', 'W'], outputs: ['z'], attrs: {} },
      ],
    };
    const m = { path: 'proj', kind: 'MatMul', node: 'proj', weight: 'W', weightLayout: 'in_out', inFeatures: 2, outFeatures: 2, pathSource: 'moduleMap' } as const;
    expect(() => checkMergeable(graph, [m], { gpu: false })).toThrow(/initializer 'W' of module 'proj' is also read by node 'head' \(tied weights\)/);
    expect(() => checkMergeable(graph, [{ ...m, transpose: 'T' }], { gpu: true })).toThrow(/through Transpose node 'T'/);
  });

  it('scales the output axis (and bias) or the input axis of either weight layout', () => {
    const w = Float32Array.of(1, 2, 3, 4, 5, 6); // [2, 3]
    expect(Array.from(scaleCpu(w, [2, 3], 1, Float32Array.of(1, 10, 100)))).toEqual([1, 20, 300, 4, 50, 600]);
    expect(Array.from(scaleCpu(w, [2, 3], 0, Float32Array.of(2, -1)))).toEqual([2, 4, 6, -4, -5, -6]);
    expect(Array.from(scaleCpu(Float32Array.of(3, 6), [2], 0, Float32Array.of(3, 2), 'div'))).toEqual([1, 3]);
    expect(unmergeDivisor(Float32Array.of(0))[0]).toBe(Math.fround(1e-8));
    const graph = decodeOnnx(gpt2Bytes());
    const [cAttn] = findModules(graph);
    // GPT-2's Conv1D stores [in, out]: the output axis is 1, the input axis 0; the bias only when not feed-forward.
    expect(mergeSteps(graph, cAttn!, false, new Float32Array(96)).map((s) => [s.initializer, s.axis])).toEqual([
      ['transformer.h.0.attn.c_attn.weight', 1],
      ['transformer.h.0.attn.c_attn.bias', 0],
    ]);
    expect(mergeSteps(graph, cAttn!, true, new Float32Array(32)).map((s) => [s.initializer, s.axis])).toEqual([['transformer.h.0.attn.c_attn.weight', 0]]);
    expect(() => mergeSteps(graph, cAttn!, false, new Float32Array(32))).toThrow(/cannot scale axis 1/);
  });
});

describe('exportMergedOnnx', () => {
  it('writes float_data tensors in place (Gemm transB: [out, in] weight, bias scaled)', async () => {
    const W = { name: 'W', dataType: onnx.TensorProto.DataType.FLOAT, dims: [3, 2], floatData: [1, 2, 3, 4, 5, 6] };
    const B = { name: 'B', dataType: onnx.TensorProto.DataType.FLOAT, dims: [3], floatData: [0.5, -1, 2] };
    const bytes = singleOpModel('Gemm', [{ name: 'x', dims: [1, 2] }, { name: 'W', dims: [3, 2] }, { name: 'B', dims: [3] }], { name: 'y', dims: [1, 3] }, [{ name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 }], [W, B]);
    const model = await cpuModel(bytes, {}, { Gemm_0: 'proj' });
    expect(model.modules.map((m) => [m.path, m.weightLayout])).toEqual([['proj', 'out_in']]);
    const peft = getPeftModel(model, new IA3Config({ targetModules: ['proj'], feedforwardModules: [] }));
    peft.setParamValues(vectorName('default', 'proj'), Float32Array.of(2, 0.5, -3));
    const { onnx: out, externalData } = await peft.exportMergedOnnx();
    expect(externalData).toBeUndefined();
    const p = onnx.ModelProto.decode(out);
    const byName = new Map(p.graph!.initializer!.map((t) => [t.name, t]));
    expect(byName.get('W')!.floatData).toEqual([2, 4, 1.5, 2, -15, -18]);
    expect(byName.get('B')!.floatData).toEqual([1, -0.5, -6]);
    expect(p.graph!.node!.map((n) => n.opType)).toEqual(['Gemm']);
    // The model's own copy is untouched by an export.
    expect(Array.from(model.graph.initializers.get('W')!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('writes external data at the same locations and offsets, raw_data in place, everything else identical', async () => {
    // The gpt2 fixture with its large tensors moved to an external file; mlp.c_proj stays raw_data.
    const { model: bytes, data } = withExternalData(gpt2Bytes(), 'weights.bin', (t) => t.rawData.length >= 4096 && !t.name.includes('c_proj'));
    const model = await cpuModel(bytes, { 'weights.bin': data });
    const peft = getPeftModel(model, new IA3Config());
    fill(peft, 'default', 7);
    const { onnx: out, externalData } = await peft.exportMergedOnnx();
    expect(Object.keys(externalData!)).toEqual(['weights.bin']);
    expect(externalData!['weights.bin']!.length).toBe(data.length);
    // The written file decodes to the merged weights; all other tensors and the graph are the original's.
    const original = decodeOnnx(bytes, { externalData: { 'weights.bin': data } });
    const merged = decodeOnnx(out, { externalData: externalData! });
    expect(merged.nodes).toEqual(original.nodes);
    expect(merged.inputs).toEqual(original.inputs);
    expect(merged.outputs).toEqual(original.outputs);
    const expected = new Map<string, Float32Array>();
    for (const t of peft.targets()) {
      for (const s of mergeSteps(original, t.module, t.feedforward, peft.paramValues(vectorName('default', t.module.path)))) {
        expected.set(s.initializer, scaleCpu(original.initializers.get(s.initializer)!.data as Float32Array, s.dims, s.axis, s.vector));
      }
    }
    expect([...expected.keys()].some((k) => k.includes('mlp.c_proj.weight'))).toBe(true);
    expect([...expected.keys()].some((k) => k.includes('c_attn.bias'))).toBe(true);
    for (const [name, init] of original.initializers) {
      const got = merged.initializers.get(name)!;
      expect(got.external?.offset, name).toBe(init.external?.offset);
      expect(Array.from(got.data as Float32Array), name).toEqual(Array.from(expected.get(name) ?? (init.data as Float32Array)));
    }
    // Merged values differ from the originals where a vector scaled them.
    const w = 'transformer.h.0.attn.c_attn.weight';
    expect(Array.from(merged.initializers.get(w)!.data as Float32Array)).not.toEqual(Array.from(original.initializers.get(w)!.data as Float32Array));
  });

  it('refuses a graph built in code, and a file whose fields would be lost', async () => {
    const model = await cpuModel(gpt2Bytes());
    const bare = new Model(noGpu, model.graph, undefined, model.modules, 'gpt2');
    await expect(getPeftModel(bare, new IA3Config()).exportMergedOnnx()).rejects.toThrow(/needs a model loaded from an ONNX file/);
    // IR 10 added message fields onnx-proto's schema lacks: such a file is not rewritten.
    const p = onnx.ModelProto.decode(gpt2Bytes());
    p.irVersion = 10;
    const withExtra = await cpuModel(new Uint8Array(onnx.ModelProto.encode(p).finish()));
    const err = await getPeftModel(withExtra, new IA3Config()).exportMergedOnnx().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/the model is ONNX IR version 10; re-encoding it with onnx-proto \(IR 9 and older\)/);
  });
});

const mergeRef = (): MergeReference => JSON.parse(readFileSync('tests/fixtures/merge-fp16/merge_reference.json', 'utf8')) as MergeReference;
const halfBits = (values: ArrayLike<number>): number[] => Array.from(values, floatToHalf);

describe('float16 merge (PyTorch reference, tests/fixtures/merge_fp16.py)', () => {
  it('rounds each float32 product and quotient to the nearest half as torch .to(float16) does', () => {
    const r = mergeRef().rounding;
    const n = r.weight_bits.length;
    const w = Float32Array.from(r.weight_bits, halfToFloat);
    const step = { initializer: 'w', dims: [n], axis: 0, vector: Float32Array.from(r.vector) };
    const merged = scaleAs('float16', w, step);
    const unmerged = scaleAs('float16', merged, { ...step, vector: unmergeDivisor(step.vector) }, 'div');
    const mismatches = (got: number[], want: number[]) => got.flatMap((g, i) => (g === want[i] ? [] : [`#${i}: ${r.weight_bits[i]!.toString(16)} × ${r.vector[i]} → ${g.toString(16)}, torch ${want[i]!.toString(16)}`]));
    expect(mismatches(halfBits(merged), r.merged_bits)).toEqual([]);
    expect(mismatches(halfBits(unmerged), r.unmerged_bits)).toEqual([]);
    // The reference covers what it claims: ties, subnormals, both infinities.
    expect(r.merged_bits.slice(0, 10).map((b) => b.toString(16))).toEqual(['3c00', '3c02', 'bc00', '3c00', '200', '0', '2', '2', '8002', '400']);
    expect(r.merged_bits.filter((b) => b === 0x7c00).length).toBeGreaterThan(1);
    expect(r.merged_bits).toContain(0xfc00);
    // float32 values pass through unchanged.
    expect(castBack('float32', Float32Array.of(1 + 2 ** -20))).toEqual(Float32Array.of(1 + 2 ** -20));
  });

  it('safe merging names a float16 overflow (PEFT checks only the float32 product, which is finite)', () => {
    const step = { initializer: 'W', dims: [2], axis: 0, vector: Float32Array.of(1.001, 2) };
    const before = Float32Array.of(65504, 3);
    const product = scaleCpu(before, step.dims, step.axis, step.vector);
    const stored = castBack('float16', product);
    expect(Array.from(stored)).toEqual([Infinity, 6]);
    const err = (() => {
      try {
        checkFinite('a', 'W', product, stored);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(MergeError);
    expect((err as Error).message).toBe(
      "NaNs detected in the merged weights. The adapter a seems to be broken ('W' element 0 would be Infinity (the float32 product 65569.5078125 overflows float16, whose largest finite value is 65504))",
    );
    const nan = Float32Array.of(1, NaN);
    expect(() => checkFinite('a', 'W', nan, nan)).toThrow(/\('W' element 1 would be NaN\)$/);
    expect(() => checkFinite('a', 'W', product, castBack('float32', product))).not.toThrow();
  });

  it('exports the fp16 GPT-2 variants with PyTorch\'s merged halves, float16 kept, raw_data and external data', async () => {
    const ref = mergeRef();
    const adapters = (JSON.parse(readFileSync('tests/fixtures/gpt2/ia3_reference.json', 'utf8')) as { adapters: Record<string, Record<string, { dims: number[]; data: number[] }>> }).adapters;
    for (const file of ref.gpt2.files) {
      const plain = new Uint8Array(readFileSync(file));
      // As the file is (raw_data), and with c_attn's weights moved to an external file.
      const ext = withExternalData(plain, 'weights.bin', (t) => t.name.includes('c_attn.weight'));
      for (const [bytes, data] of [[plain, undefined], [ext.model, ext.data]] as const) {
        const model = await cpuModel(bytes, data ? { 'weights.bin': data } : {});
        const peft = getPeftModel(model, new IA3Config());
        for (const a of ref.gpt2.adapters) {
          if (a !== 'default') peft.addAdapter(a, new IA3Config());
          peft.loadStateDict(Object.fromEntries(Object.entries(adapters[a]!).map(([k, v]) => [k, { data: Float32Array.from(v.data), dims: v.dims }])), a);
        }
        peft.setAdapter(ref.gpt2.adapters);
        const { onnx: out, externalData } = await peft.exportMergedOnnx();
        expect(Object.keys(externalData ?? {})).toEqual(data ? ['weights.bin'] : []);
        const source = onnx.ModelProto.decode(bytes);
        const written = onnx.ModelProto.decode(out);
        expect(written.graph!.node).toEqual(source.graph!.node);
        expect(written.graph!.initializer!.map((t) => [t.name, t.dataType, t.dims])).toEqual(source.graph!.initializer!.map((t) => [t.name, t.dataType, t.dims]));
        const merged = decodeOnnx(out, { externalData: externalData ?? {} });
        for (const [name, t] of Object.entries(ref.gpt2.tensors)) {
          const init = merged.initializers.get(name)!;
          expect(init.dtype, name).toBe('float16');
          expect(halfBits(init.data as Float32Array), `${file} ${name}`).toEqual(halvesOf(t.merged));
        }
      }
    }
  });

  it('writes a typed float16 tensor (int32_data) as half bits', async () => {
    const half = (xs: number[]) => xs.map(floatToHalf);
    const W = { name: 'W', dataType: onnx.TensorProto.DataType.FLOAT16, dims: [2, 2], int32Data: half([1, 2, 3, 65504]) };
    const bytes = singleOpModel('MatMul', [{ name: 'x', dims: [1, 2], elemType: onnx.TensorProto.DataType.FLOAT16 }, { name: 'W', dims: [2, 2] }], { name: 'y', dims: [1, 2], elemType: onnx.TensorProto.DataType.FLOAT16 }, [], [W]);
    const model = await cpuModel(bytes, {}, { MatMul_0: 'proj' });
    expect(model.graph.initializers.get('W')!.storage).toBe('f16x2');
    const peft = getPeftModel(model, new IA3Config({ targetModules: ['proj'], feedforwardModules: [] }));
    peft.setParamValues(vectorName('default', 'proj'), Float32Array.of(1 + 2 ** -11, 0.5));
    const p = onnx.ModelProto.decode((await peft.exportMergedOnnx()).onnx);
    const t = p.graph!.initializer![0]!;
    expect(t.dataType).toBe(onnx.TensorProto.DataType.FLOAT16);
    // 1·(1 + 2⁻¹¹) is a tie: to even (1); 3·(1 + 2⁻¹¹) rounds up one half-ulp of 3 (3.001953125).
    expect(t.int32Data).toEqual(half([1, 1, 3.001953125, 32752]));
  });
});
