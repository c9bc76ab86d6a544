// ONNX decoding: the fixtures at both opsets, zero-copy weights, tensor encodings, topological
// order, and a typed error for every kind of malformed input.
import { readFileSync } from 'node:fs';
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { FormatError, InputError, UnsupportedOpError } from '../../src/errors.js';
import { initializerToRef, topoSort, type Graph, type Node } from '../../src/ir/graph.js';
import type { RefTensor } from '../../src/ir/tensor.js';
import { decodeOnnx, externalDataRefs, parseModel, UnsupportedOpsError } from '../../src/onnx/decode.js';
import { runReferenceModel } from '../../src/onnx/executor.js';
import { singleOpModel } from '../util/onnx-build.js';
import { closeness, rng } from '../util/tensors.js';
import { withExternalData, type PModel } from '../util/onnx-build.js';

const MODELS = ['bert', 'gpt2', 'llama', 'distilbert'] as const;
const FILES = ['model.onnx', 'model_opset17.onnx'] as const;
const read = (m: string, f: string): Uint8Array => new Uint8Array(readFileSync(`tests/fixtures/${m}/onnx/${f}`));

interface Case {
  name: string;
  inputs: Record<string, { dtype: 'int64'; dims: number[]; data: number[] }>;
  outputs: { logits: { dims: number[]; data: number[] } };
}
const cases = (m: string): Case[] => JSON.parse(readFileSync(`tests/fixtures/${m}/reference.json`, 'utf8')).cases;
const feedsOf = (c: Case): Record<string, RefTensor> =>
  Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, { dtype: v.dtype, dims: v.dims, data: Float64Array.from(v.data) }]));

const proto = (bytes: Uint8Array): PModel => onnx.ModelProto.decode(bytes) as PModel;
const encode = (m: onnx.IModelProto): Uint8Array => onnx.ModelProto.encode(m).finish();

/** Catches the error `fn` throws (failing the test when it does not throw). */
function caught(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  expect.fail('expected an error');
}

describe('fixtures', () => {
  for (const m of MODELS) {
    for (const f of FILES) {
      it(`${m}/${f} decodes to a sorted graph with declared inputs and outputs`, () => {
        const bytes = read(m, f);
        const g = decodeOnnx(bytes);
        const raw = proto(bytes);
        expect(g.opsets.get('')).toBe(f === 'model.onnx' ? 14 : 17);
        expect(g.inputs.map((i) => i.name)).toEqual(raw.graph!.input.map((i) => i.name));
        for (const i of g.inputs) {
          expect(i.dtype).toBe('int64');
          expect(i.dims).toEqual(['batch', 'sequence']);
        }
        expect(g.outputs.map((o) => o.name)).toEqual(['logits']);
        // Constant nodes are folded into initializers; every other node is kept, in file order.
        const nonConstant = raw.graph!.node.filter((n) => n.opType !== 'Constant');
        expect(g.nodes.map((n) => n.name)).toEqual(nonConstant.map((n) => n.name));
        const constants = [...g.initializers.values()].filter((i) => i.constant);
        expect(constants.length).toBe(raw.graph!.node.length - nonConstant.length);
        expect(g.initializers.size).toBe(raw.graph!.initializer.length + constants.length);
        // Every initializer holds exactly its elements, float32 weights as views of the file where aligned.
        for (const t of raw.graph!.initializer) {
          const init = g.initializers.get(t.name)!;
          expect(init.data!.length).toBe(init.dims.reduce((a, b) => a * b, 1));
          if (init.dtype === 'float32' && t.rawData.byteOffset % 4 === 0) expect(init.data!.buffer).toBe(bytes.buffer);
          const expected = new Float32Array(t.rawData.slice().buffer);
          expect(Array.from(init.data as Float32Array)).toEqual(Array.from(expected));
        }
      });
    }
  }

  it('decodes attributes to the Attrs types (ints, floats, tensors)', () => {
    const g = decodeOnnx(read('gpt2', 'model.onnx'));
    const gemm = g.nodes.find((n) => n.opType === 'Gemm')!;
    expect(gemm.attrs).toEqual({ alpha: 1, beta: 1 });
    const transpose = g.nodes.find((n) => n.opType === 'Transpose')!;
    expect(transpose.attrs.perm).toEqual([0, 2, 1, 3]);
    const softmax = g.nodes.find((n) => n.opType === 'Softmax')!;
    expect(softmax.attrs.axis).toBe(-1);
    const bert = decodeOnnx(read('bert', 'model_opset17.onnx'));
    const ln = bert.nodes.find((n) => n.opType === 'LayerNormalization')!;
    expect(ln.attrs.epsilon).toBeCloseTo(1e-12, 20);
  });
});

describe('tensor encodings', () => {
  /** A model computing y = Add(x, c) where c is built by `make`. */
  function addModel(c: onnx.ITensorProto, extraNodes: onnx.INodeProto[] = [], dtype = 1): PModel {
    const n = (c.dims ?? []).reduce<number>((a, b) => a * Number(b), 1);
    return onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [...extraNodes, { opType: 'Add', name: 'add', input: ['x', c.name!], output: ['y'] }],
        input: [{ name: 'x', type: { tensorType: { elemType: dtype, shape: { dim: [{ dimValue: n }] } } } }],
        output: [{ name: 'y', type: { tensorType: { elemType: dtype, shape: { dim: [{ dimValue: n }] } } } }],
        initializer: c.dataType ? [c] : [],
      },
    }) as PModel;
  }

  it('widens float16 raw_data to float32 (normals, subnormals, infinities)', () => {
    const bits = Uint16Array.of(0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0xfbff);
    const raw = new Uint8Array(bits.buffer);
    const g = decodeOnnx(encode(addModel({ name: 'c', dims: [6], dataType: 10, rawData: raw }, [], 10)));
    const c = g.initializers.get('c')!;
    expect(c.dtype).toBe('float16');
    expect(c.data).toBeInstanceOf(Float32Array);
    expect(Array.from(c.data as Float32Array)).toEqual([1, -2, Math.fround(0.333251953125), 2 ** -24, Infinity, -65504]);
  });

  it('reads float_data, int32_data (float16 bits, bool), int64_data and double_data', () => {
    const f = decodeOnnx(encode(addModel({ name: 'c', dims: [3], dataType: 1, floatData: [1.5, -2, 3] })));
    expect(Array.from(f.initializers.get('c')!.data as Float32Array)).toEqual([1.5, -2, 3]);
    const h = decodeOnnx(encode(addModel({ name: 'c', dims: [2], dataType: 10, int32Data: [0x3c00, 0xbc00] }, [], 10)));
    expect(Array.from(h.initializers.get('c')!.data as Float32Array)).toEqual([1, -1]);
    const i = decodeOnnx(encode(addModel({ name: 'c', dims: [2], dataType: 7, int64Data: [5, -7] }, [], 7)));
    expect(initializerToRef(i.initializers.get('c')!).data).toEqual(Float64Array.of(5, -7));
    const d = decodeOnnx(encode(addModel({ name: 'c', dims: [2], dataType: 11, doubleData: [0.1, 1e300] }, [], 11)));
    expect(Array.from(d.initializers.get('c')!.data as Float64Array)).toEqual([0.1, 1e300]);
    const b = decodeOnnx(encode(addModel({ name: 'c', dims: [3], dataType: 9, int32Data: [1, 0, 1] }, [], 9)));
    expect(Array.from(b.initializers.get('c')!.data as Uint8Array)).toEqual([1, 0, 1]);
  });

  it('copies unaligned raw_data and views aligned raw_data', () => {
    const views = new Set<boolean>();
    for (const pad of [0, 1, 2, 3]) {
      const m = addModel({ name: 'c', dims: [2], dataType: 1, rawData: new Uint8Array(Float32Array.of(7, 8).buffer) });
      m.producerName = 'p'.repeat(pad); // shifts every later byte
      const bytes = new Uint8Array(encode(m)); // its own ArrayBuffer, offset 0
      const aligned = proto(bytes).graph!.initializer[0]!.rawData.byteOffset % 4 === 0;
      const c = decodeOnnx(bytes).initializers.get('c')!;
      expect(Array.from(c.data as Float32Array)).toEqual([7, 8]);
      expect(c.data!.buffer === bytes.buffer, `pad ${pad}`).toBe(aligned);
      views.add(aligned);
    }
    expect(views).toEqual(new Set([true, false]));
  });

  it('folds Constant nodes of every numeric value attribute', () => {
    const model = (attr: onnx.IAttributeProto, dtype: number, dims: number[]) => {
      const m = addModel({ name: 'k' }, [{ opType: 'Constant', name: 'k_node', output: ['k'], attribute: [attr] }], dtype);
      m.graph!.input[0]!.type!.tensorType!.shape!.dim = dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimValue: d }));
      m.graph!.output[0]!.type!.tensorType!.shape!.dim = dims.map((d) => onnx.TensorShapeProto.Dimension.create({ dimValue: d }));
      return decodeOnnx(encode(m)).initializers.get('k')!;
    };
    const AT = onnx.AttributeProto.AttributeType;
    const vf = model({ name: 'value_float', type: AT.FLOAT, f: 2.5 }, 1, []);
    expect([vf.dtype, vf.dims, Array.from(vf.data as Float32Array), vf.constant]).toEqual(['float32', [], [2.5], true]);
    const vfs = model({ name: 'value_floats', type: AT.FLOATS, floats: [1, 2] }, 1, [2]);
    expect([vfs.dims, Array.from(vfs.data as Float32Array)]).toEqual([[2], [1, 2]]);
    const vi = model({ name: 'value_int', type: AT.INT, i: 9 }, 7, []);
    expect([vi.dtype, initializerToRef(vi).data]).toEqual(['int64', Float64Array.of(9)]);
    const vis = model({ name: 'value_ints', type: AT.INTS, ints: [1, -2, 3] }, 7, [3]);
    expect(initializerToRef(vis).data).toEqual(Float64Array.of(1, -2, 3));
    const vt = model({ name: 'value', type: AT.TENSOR, t: { dims: [2], dataType: 1, floatData: [4, 5] } }, 1, [2]);
    expect(Array.from(vt.data as Float32Array)).toEqual([4, 5]);
    // A folded Constant feeds the reference executor like any initializer.
    const m = addModel({ name: 'k' }, [
      { opType: 'Constant', name: 'k_node', output: ['k'], attribute: [{ name: 'value_floats', type: AT.FLOATS, floats: [10, 20, 30] }] },
    ]);
    m.graph!.input[0]!.type!.tensorType!.shape!.dim = [onnx.TensorShapeProto.Dimension.create({ dimValue: 3 })];
    m.graph!.output[0]!.type!.tensorType!.shape!.dim = [onnx.TensorShapeProto.Dimension.create({ dimValue: 3 })];
    const y = runReferenceModel(decodeOnnx(encode(m)), { x: { dtype: 'float32', dims: [3], data: Float64Array.of(1, 2, 3) } }).y!;
    expect(Array.from(y.data)).toEqual([11, 22, 33]);
  });
});

describe('node order and names', () => {
  it('sorts a file whose nodes are out of order, and the result still runs', () => {
    const m = proto(read('llama', 'model.onnx'));
    const original = m.graph!.node.filter((n) => n.opType !== 'Constant').map((n) => n.name);
    const r = rng(7);
    const shuffled = [...m.graph!.node].map((n) => [r(), n] as const).sort((a, b) => a[0] - b[0]).map((x) => x[1]);
    m.graph!.node = shuffled;
    const g = decodeOnnx(encode(m));
    // Every node follows the producers of its inputs.
    const seen = new Set<string>([...g.inputs.map((i) => i.name), ...g.initializers.keys(), '']);
    for (const n of g.nodes) {
      for (const v of n.inputs) expect(seen.has(v), `${n.name} reads ${v} before it exists`).toBe(true);
      for (const o of n.outputs) seen.add(o);
    }
    expect(new Set(g.nodes.map((n) => n.name))).toEqual(new Set(original));
    const c = cases('llama')[2]!;
    const out = runReferenceModel(g, feedsOf(c)).logits!;
    expect(closeness(out.data, c.outputs.logits.data, { rtol: 1e-4 }).worst).toBeLessThanOrEqual(1);
  });

  it('keeps a sorted order as is and names unnamed nodes uniquely', () => {
    const n = (name: string, inputs: string[], outputs: string[]): Node => ({ name, opType: 'Relu', domain: '', inputs, outputs, attrs: {} });
    const nodes = [n('a', ['x'], ['a1']), n('b', ['a1'], ['b1']), n('c', ['x'], ['c1']), n('d', ['b1', 'c1'], ['d1'])];
    expect(topoSort(nodes, new Set(['x']), 'f').map((x) => x.name)).toEqual(['a', 'b', 'c', 'd']);
    expect(topoSort([nodes[3]!, nodes[1]!, nodes[2]!, nodes[0]!], new Set(['x']), 'f').map((x) => x.name)).toEqual(['a', 'b', 'c', 'd']);

    const m = proto(read('gpt2', 'model.onnx'));
    const idx = m.graph!.node.map((n, i) => (n.opType === 'Constant' ? -1 : i)).filter((i) => i >= 0);
    const [i0, i1, i2] = idx as [number, number, number];
    m.graph!.node[i0]!.name = '';
    m.graph!.node[i2]!.name = m.graph!.node[i1]!.name; // a duplicate
    const g = decodeOnnx(encode(m));
    const names = g.nodes.map((x) => x.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain(`${m.graph!.node[i0]!.opType}_${i0}`);
    expect(names).toContain(m.graph!.node[i1]!.name);
    expect(names).toContain(`${m.graph!.node[i2]!.opType}_${i2}`);
  });

  it('rejects a cycle, a value produced twice, and an input nothing produces', () => {
    const m = proto(read('distilbert', 'model.onnx'));
    const nodes = m.graph!.node.filter((n) => n.opType !== 'Constant');
    // Make an early node read the output of a later node that depends on it.
    const first = nodes.find((n) => n.opType === 'MatMul')!;
    const later = nodes.find((n) => n.opType === 'Softmax')!;
    first.input[0] = later.output[0]!;
    const e = caught(() => decodeOnnx(encode(m)));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/cycle/);

    const m2 = proto(read('distilbert', 'model.onnx'));
    const relu = m2.graph!.node.find((n) => n.opType === 'Relu')!;
    relu.output[0] = m2.graph!.node.find((n) => n.opType === 'Softmax')!.output[0]!;
    expect(caught(() => decodeOnnx(encode(m2))).message).toMatch(/produced twice/);

    const m3 = proto(read('distilbert', 'model.onnx'));
    m3.graph!.node.find((n) => n.opType === 'Relu')!.input[0] = 'nowhere';
    const e3 = caught(() => decodeOnnx(encode(m3)));
    expect(e3).toBeInstanceOf(FormatError);
    expect(e3.message).toMatch(/'\/Relu'.*'nowhere'/);
  });
});

describe('malformed files', () => {
  const bytes = read('gpt2', 'model.onnx');

  it('gives a FormatError with the byte offset for a file truncated anywhere', () => {
    for (const cut of [0, 1, 10, 100, 1000, 10_000, 76_100, bytes.length >> 1, bytes.length - 100, bytes.length - 1]) {
      const e = caught(() => decodeOnnx(bytes.slice(0, cut)));
      expect(e, `cut at ${cut}`).toBeInstanceOf(FormatError);
      const f = e as FormatError;
      expect(f.file).toBe('model.onnx');
      if (cut > 10) {
        expect(f.byteOffset, `cut at ${cut}: ${f.message}`).toBeGreaterThanOrEqual(0);
        expect(f.byteOffset!).toBeLessThanOrEqual(cut);
        expect(f.message).toContain(`at byte ${f.byteOffset}`);
      }
    }
  });

  it('gives a FormatError for random bytes', () => {
    for (let seed = 0; seed < 200; seed++) {
      const r = rng(seed);
      const junk = Uint8Array.from({ length: 1 + Math.floor(r() * 4000) }, () => Math.floor(r() * 256));
      expect(caught(() => decodeOnnx(junk)), `seed ${seed}`).toBeInstanceOf(FormatError);
    }
    // A valid protobuf that is not a model.
    expect(caught(() => decodeOnnx(new Uint8Array(0))).message).toMatch(/not an ONNX model: ir_version is missing/);
    const noGraph = onnx.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 17 }] }).finish();
    expect(caught(() => decodeOnnx(noGraph)).message).toMatch(/not an ONNX model: it has no graph/);
  });

  it('checks raw_data length against dtype size × element count, naming the tensor', () => {
    const m = proto(bytes);
    const t = m.graph!.initializer.find((x) => x.name === 'transformer.h.0.attn.c_attn.bias')!;
    t.rawData = t.rawData.slice(0, t.rawData.length - 4);
    const bad = encode(m);
    const e = caught(() => decodeOnnx(bad)) as FormatError;
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toContain("tensor 'transformer.h.0.attn.c_attn.bias' has 380 bytes of raw_data, but float32 [96] needs 384");
    // The offset points at the raw bytes: they start right there in the file.
    const at = e.byteOffset!;
    const want = new Uint8Array(t.rawData.buffer, t.rawData.byteOffset, 8);
    expect(Array.from(bad.subarray(at, at + 8))).toEqual(Array.from(want));
  });

  it('names the tensor whose dtype is unknown', () => {
    const m = proto(bytes);
    m.graph!.initializer.find((x) => x.name === 'transformer.wpe.weight')!.dataType = 16;
    const e = caught(() => decodeOnnx(encode(m)));
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toContain("tensor 'transformer.wpe.weight' has data type 16 (BFLOAT16)");
  });

  it('lists every unsupported op with a node name and the opset in one UnsupportedOpError', () => {
    const m = proto(bytes);
    const nodes = m.graph!.node;
    const tanh = nodes.filter((n) => n.opType === 'Tanh');
    for (const n of tanh) n.opType = 'FancyTanh';
    const split = nodes.find((n) => n.opType === 'Split')!;
    split.opType = 'Attention';
    split.domain = 'com.microsoft';
    const where = nodes.find((n) => n.opType === 'Where')!;
    where.domain = 'ai.onnx.ml';
    const e = caught(() => decodeOnnx(encode(m)));
    expect(e).toBeInstanceOf(UnsupportedOpError);
    expect(e).toBeInstanceOf(UnsupportedOpsError);
    const u = e as UnsupportedOpsError;
    expect(u.opset).toBe(14);
    expect(u.ops.map((o) => `${o.domain}:${o.opType}`).sort()).toEqual(['ai.onnx.ml:Where', 'com.microsoft:Attention', ':FancyTanh'].sort());
    expect(u.ops.find((o) => o.opType === 'FancyTanh')!.nodes).toEqual(tanh.map((n) => n.name));
    expect(u.message).toContain(`FancyTanh (2 nodes, e.g. '${tanh[0]!.name}')`);
    expect(u.message).toContain(`com.microsoft.Attention (node '${split.name}'`);
    expect(u.message).toContain('opset 14');
    // allowUnsupported builds the graph anyway, for inspection.
    expect(decodeOnnx(encode(m), { allowUnsupported: true }).nodes.some((n) => n.opType === 'FancyTanh')).toBe(true);
  });

  it('rejects an op used below the opset its definition implements', () => {
    // Gelu is an ONNX op from opset 20; the same node in an opset-17 model is not.
    const e = caught(() => decodeOnnx(singleOpModel('Gelu', [{ name: 'x', dims: [2, 3] }], { name: 'y', dims: [2, 3] }))) as UnsupportedOpsError;
    expect(e).toBeInstanceOf(UnsupportedOpError);
    expect(e.ops.map((o) => o.opType)).toEqual(['Gelu']);
    expect(e.message).toMatch(/implemented from opset 20; the model uses opset 17/);
  });

  it('accepts LayerNormalization below opset 17, as onnxruntime does (its contrib schema)', () => {
    const m = proto(read('bert', 'model_opset17.onnx'));
    m.opsetImport[0]!.version = 14;
    const g = decodeOnnx(encode(m));
    expect(g.nodes.some((n) => n.opType === 'LayerNormalization')).toBe(true);
  });

  it('rejects ai.onnx opsets outside 7..21, naming the opset', () => {
    for (const v of [6, 22]) {
      const m = proto(bytes);
      m.opsetImport[0]!.version = v;
      const e = caught(() => decodeOnnx(encode(m))) as UnsupportedOpError;
      expect(e).toBeInstanceOf(UnsupportedOpError);
      expect(e.opset).toBe(v);
      expect(e.message).toContain(`opset ${v}`);
    }
    const m = proto(bytes);
    m.opsetImport = [];
    expect(caught(() => decodeOnnx(encode(m)))).toBeInstanceOf(FormatError);
  });
});

describe('external data', () => {
  /** The bert fixture with every initializer over 256 bytes moved to `location`, 4-aligned or not. */
  const externalize = (location: string, misalign = 0) =>
    withExternalData(read('bert', 'model.onnx'), location, (t) => t.rawData.length > 256, misalign);

  it('resolves location/offset/length against the provided file, as views when aligned', () => {
    const { model, data, moved } = externalize('model.onnx_data');
    expect(externalDataRefs(parseModel(model))).toEqual([{ tensor: moved[0], location: 'model.onnx_data' }]);
    const g: Graph = decodeOnnx(model, { externalData: { './model.onnx_data': data } });
    for (const name of moved) {
      const init = g.initializers.get(name)!;
      expect(init.external?.location).toBe('model.onnx_data');
      expect(init.data!.buffer).toBe(data.buffer);
    }
    const c = cases('bert')[3]!;
    const out = runReferenceModel(g, feedsOf(c)).logits!;
    expect(closeness(out.data, c.outputs.logits.data, { rtol: 1e-4 }).worst).toBeLessThanOrEqual(1);
    // Misaligned offsets are copied, with the same values.
    const odd = externalize('w.bin', 1);
    const g2 = decodeOnnx(odd.model, { externalData: { 'w.bin': odd.data } });
    for (const name of moved) {
      expect(Array.from(g2.initializers.get(name)!.data as Float32Array)).toEqual(Array.from(g.initializers.get(name)!.data as Float32Array));
    }
  });

  it('names the location and the tensor when the file is missing', () => {
    const { model, moved } = externalize('model.onnx_data');
    const e = caught(() => decodeOnnx(model));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toContain(`tensor '${moved[0]}'`);
    expect(e.message).toContain("external file 'model.onnx_data'");
  });

  it('bounds offsets and lengths by the file size', () => {
    const { model, data, moved } = externalize('model.onnx_data');
    const e = caught(() => decodeOnnx(model, { externalData: { 'model.onnx_data': data.subarray(0, data.length - 1) } })) as FormatError;
    expect(e).toBeInstanceOf(FormatError);
    expect(e.file).toBe('model.onnx_data');
    expect(e.message).toContain(`tensor '${moved.at(-1)}' needs bytes`);
    expect(e.byteOffset).toBeGreaterThan(0);
    // A length that disagrees with the tensor's size.
    const m = proto(model);
    const t = m.graph!.initializer.find((x) => x.name === moved[0])!;
    t.externalData!.find((kv) => kv.key === 'length')!.value = '12';
    const e2 = caught(() => decodeOnnx(encode(m), { externalData: { 'model.onnx_data': data } }));
    expect(e2).toBeInstanceOf(FormatError);
    expect(e2.message).toContain('has 12 bytes of external data');
  });
});

describe('torch external data (gpt2-bench)', () => {
  const model = new Uint8Array(readFileSync('tests/fixtures/gpt2-bench/onnx/model.onnx'));

  it('lists the external file, and decodes against a file of the recorded size', () => {
    const parsed = parseModel(model);
    const refs = externalDataRefs(parsed);
    expect(refs.map((r) => r.location)).toEqual(['model.onnx_data']);
    expect(caught(() => decodeOnnx(model))).toBeInstanceOf(InputError);
    // The data file is git-ignored: any bytes of the right size stand in for the weights.
    let size = 0;
    for (const t of parsed.proto.graph!.initializer!) {
      const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, Number(e.value)]));
      size = Math.max(size, kv.offset! + kv.length!);
    }
    const data = new Uint8Array(size);
    const g = decodeOnnx(model, { externalData: { 'model.onnx_data': data } });
    expect(g.initializers.size).toBeGreaterThanOrEqual(77);
    const external = [...g.initializers.values()].filter((i) => i.external);
    expect(external.length).toBe(77);
    // torch writes float32 tensors back to back: every one is a view of the data file.
    for (const i of external) expect(i.data!.buffer).toBe(data.buffer);
    expect(caught(() => decodeOnnx(model, { externalData: { 'model.onnx_data': data.subarray(0, size - 4) } }))).toBeInstanceOf(FormatError);
  });
});
