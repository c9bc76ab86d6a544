// Unit tests of the layout ops (Node, no GPU): shape rules, float64 references and their opset
// variants, typed errors, the choice of GPU lowering, and SliceGrad against finite differences.
// Two oracles besides hand-computed values: ONNX Runtime (onnxruntime-web's wasm CPU kernels) runs
// the same single-op models, and the Slice corners follow the ONNX spec's clamping text.
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { IndexOutOfRangeError, ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor, type ValueInfo } from '../../src/ir/tensor.js';
import { runReference } from '../../src/ops/execute.js';
import { reducePermutation, simplifyMap, stridedProgram, transposeProgram } from '../../src/ops/layout-kernels.js';
import { layoutOps, normalizeSlice, reshapeDims, sliceGradAttrs } from '../../src/ops/layout.js';
import type { Inputs, OpDef, LoweringContext } from '../../src/ops/types.js';
import { dot, expectClose, numericGradient, randomInts, randomTensor } from '../util/tensors.js';
import { DEFAULT_TRAITS } from '../../src/gpu/traits.js';

type Op = keyof typeof layoutOps;
const INT64_MAX = 9223372036854775807;
const INT64_MIN = -9223372036854775808;

function ctxOf(opType: string, opset = 17, numOutputs?: number): LoweringContext {
  const ctx: LoweringContext & { numOutputs?: number } = { opType, nodeName: `${opType}_node`, opset, device: DEFAULT_TRAITS };
  if (numOutputs !== undefined) ctx.numOutputs = numOutputs;
  return ctx;
}

const f32 = (values: readonly number[], dims: readonly number[] = [values.length]): RefTensor => tensor('float32', dims, values);
const i64 = (values: readonly number[], dims: readonly number[] = [values.length]): RefTensor => tensor('int64', dims, values);
const iota = (dims: readonly number[], dtype: DataType = 'float32'): RefTensor => {
  const t = tensor(dtype, dims);
  t.data.forEach((_, i) => (t.data[i] = i));
  return t;
};

function ref(op: Op, inputs: Inputs<RefTensor>, attrs: Attrs = {}, opset = 17, numOutputs?: number): RefTensor[] {
  return runReference(layoutOps[op], inputs, attrs, ctxOf(op, opset, numOutputs));
}

/** The op's shape rule with inputs after the first given as constants (unless `dynamic`). */
function shape(op: Op, inputs: Inputs<RefTensor>, attrs: Attrs = {}, opset = 17, dynamic: number[] = []): { dtype: DataType; dims: readonly number[] }[] {
  const infos: Inputs<ValueInfo> = inputs.map((t, i) =>
    t === undefined ? undefined : i === 0 || dynamic.includes(i) ? { dtype: t.dtype, dims: t.dims } : { dtype: t.dtype, dims: t.dims, value: t },
  );
  return layoutOps[op].shape(infos, attrs, ctxOf(op, opset));
}

const values = (t: RefTensor | undefined): number[] => Array.from(t!.data);

// ---------------------------------------------------------------------------------------------
// ONNX Runtime as an oracle: one node, constant inputs as initializers, outputs compared exactly.

const ELEM: Record<string, number> = { float32: 1, int32: 6, int64: 7, bool: 9 };
const FROM_ELEM: Record<number, DataType> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool' };
type OrtAttr = onnx.IAttributeProto;
const A = onnx.AttributeProto.AttributeType;
const ai = (name: string, i: number): OrtAttr => ({ name, type: A.INT, i });
const af = (name: string, f: number): OrtAttr => ({ name, type: A.FLOAT, f });
const ais = (name: string, ints: number[]): OrtAttr => ({ name, type: A.INTS, ints });
const as = (name: string, s: string): OrtAttr => ({ name, type: A.STRING, s: new TextEncoder().encode(s) });

function rawBytes(t: RefTensor): Uint8Array {
  if (t.dtype === 'float32') return new Uint8Array(Float32Array.from(t.data).buffer);
  if (t.dtype === 'int32') return new Uint8Array(Int32Array.from(t.data).buffer);
  if (t.dtype === 'bool') return Uint8Array.from(t.data);
  // int64: ±2^63 in float64 stands for INT64_MAX / INT64_MIN.
  const big = BigInt64Array.from(t.data, (v) => (v >= 2 ** 63 ? 2n ** 63n - 1n : v <= -(2 ** 63) ? -(2n ** 63n) : BigInt(v)));
  return new Uint8Array(big.buffer);
}

function ortTensor(t: RefTensor): ort.Tensor {
  if (t.dtype === 'float32') return new ort.Tensor('float32', Float32Array.from(t.data), t.dims);
  if (t.dtype === 'int32') return new ort.Tensor('int32', Int32Array.from(t.data), t.dims);
  if (t.dtype === 'bool') return new ort.Tensor('bool', Uint8Array.from(t.data), t.dims);
  return new ort.Tensor('int64', BigInt64Array.from(t.data, (v) => BigInt(v)), t.dims);
}

/** Runs one node in ONNX Runtime. Inputs at `runtime` positions are fed, the rest are initializers. */
async function ortRun(
  opType: string,
  inputs: (RefTensor | undefined)[],
  attrs: OrtAttr[],
  opset: number,
  opts: { outputs?: number; runtime?: number[] } = {},
): Promise<RefTensor[]> {
  const runtime = new Set(opts.runtime ?? [0]);
  const names = inputs.map((t, i) => (t === undefined ? '' : `in${i}`));
  const outNames = Array.from({ length: opts.outputs ?? 1 }, (_, i) => `out${i}`);
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: opType,
      node: [{ opType, name: `${opType}_0`, input: names, output: outNames, attribute: attrs }],
      input: inputs.flatMap((t, i) =>
        t && runtime.has(i)
          ? [{ name: names[i], type: { tensorType: { elemType: ELEM[t.dtype], shape: { dim: t.dims.map((d) => ({ dimValue: d })) } } } }]
          : [],
      ),
      initializer: inputs.flatMap((t, i) =>
        t && !runtime.has(i) ? [{ name: names[i], dims: [...t.dims], dataType: ELEM[t.dtype], rawData: rawBytes(t) }] : [],
      ),
      output: outNames.map((name) => ({ name })),
    },
  };
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  const session = await ort.InferenceSession.create(bytes);
  const feeds: Record<string, ort.Tensor> = {};
  inputs.forEach((t, i) => {
    if (t && runtime.has(i)) feeds[names[i]!] = ortTensor(t);
  });
  const result = await session.run(feeds);
  await session.release();
  return outNames.map((n) => {
    const r = result[n]!;
    const dtype = FROM_ELEM[ELEM[r.type === 'float32' ? 'float32' : r.type] ?? 1] ?? 'float32';
    const data = Array.from(r.data as ArrayLike<number | bigint>, (v) => Number(v));
    return tensor(dtype, r.dims, data);
  });
}

/** Attributes of our op from ORT attribute protos (ints, floats, strings). */
function attrsOf(list: OrtAttr[]): Attrs {
  const out: Record<string, Attrs[string]> = {};
  for (const a of list) {
    if (a.type === A.INT) out[a.name!] = Number(a.i);
    else if (a.type === A.FLOAT) out[a.name!] = a.f!;
    else if (a.type === A.INTS) out[a.name!] = (a.ints ?? []).map(Number);
    else if (a.type === A.STRING) out[a.name!] = new TextDecoder().decode(a.s!);
    else if (a.type === A.TENSOR) {
      const t = a.t!;
      const dtype = FROM_ELEM[t.dataType!]!;
      const raw = t.rawData!;
      const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
      const data =
        dtype === 'int64'
          ? Array.from(new BigInt64Array(buf), Number)
          : dtype === 'int32'
            ? Array.from(new Int32Array(buf))
            : Array.from(new Float32Array(buf));
      out[a.name!] = tensor(dtype, (t.dims ?? []).map(Number), data);
    }
  }
  return out;
}

async function agreesWithOrt(
  op: Op,
  inputs: (RefTensor | undefined)[],
  attrs: OrtAttr[] = [],
  opset = 17,
  opts: { outputs?: number; runtime?: number[] } = {},
): Promise<void> {
  const ours = ref(op, inputs, attrsOf(attrs), opset, opts.outputs);
  const theirs = await ortRun(op, inputs, attrs, opset, opts);
  const what = `${op}@${opset} ${inputs.map((t) => (t ? `[${t.dims.join(',')}]` : '-')).join(' ')} ${JSON.stringify(attrsOf(attrs))}`;
  expect(ours.length, what).toBeGreaterThanOrEqual(theirs.length);
  theirs.forEach((t, k) => {
    expect(ours[k]!.dims, `${what} output ${k} dims`).toEqual(t.dims);
    expect(values(ours[k]), `${what} output ${k}`).toEqual(values(t));
  });
}

ort.env.wasm.numThreads = 1;

// ---------------------------------------------------------------------------------------------

describe('Transpose', () => {
  it('permutes axes (default: reversed) and agrees with ONNX Runtime', async () => {
    expect(values(ref('Transpose', [iota([2, 3])])[0])).toEqual([0, 3, 1, 4, 2, 5]);
    const x = randomTensor([2, 3, 4, 5], 1);
    for (const perm of [[0, 2, 1, 3], [3, 1, 0, 2], [1, 2, 3, 0]]) await agreesWithOrt('Transpose', [x], [ais('perm', perm)]);
    await agreesWithOrt('Transpose', [x]);
  });

  it('rejects a perm that is not a permutation', () => {
    expect(() => shape('Transpose', [iota([2, 3])], { perm: [0, 0] })).toThrow(ShapeError);
    expect(() => shape('Transpose', [iota([2, 3])], { perm: [0, 1, 2] })).toThrow(/perm \[0,1,2\] is not a permutation/);
  });

  it('lowers a batched last-two swap to the tiled kernel and the rest to the strided kernel', () => {
    const ctx = ctxOf('Transpose');
    expect(reducePermutation([2, 5, 9, 7], [0, 2, 3, 1])).toEqual({ dims: [2, 5, 63], perm: [0, 2, 1] });
    expect(reducePermutation([1, 4, 1, 6], [3, 2, 1, 0])).toEqual({ dims: [4, 6], perm: [1, 0] });
    expect(transposeProgram([513, 769], [1, 0], ctx)!.kernel.name).toBe('layout-transpose');
    const nhwc = transposeProgram([2, 9, 9, 7], [0, 2, 3, 1], ctx)!;
    expect([nhwc.kernel.name, nhwc.workgroups, nhwc.uniforms]).toEqual(['layout-transpose', [2, 1, 2], { rows: 9, cols: 63 }]);
    expect(transposeProgram([2, 3, 5], [0, 2, 1], ctx)!.kernel.name).toBe('layout-strided'); // too narrow to tile
    expect(transposeProgram([2, 5, 3, 8], [0, 2, 1, 3], ctx)!.kernel.name).toBe('layout-strided-vec4');
    expect(transposeProgram([4, 1], [1, 0], ctx)!.uniforms['rank']).toBe(1); // a copy
  });
});

describe('Gather and GatherElements', () => {
  it('gathers along any axis with negative indices, like ONNX Runtime', async () => {
    const data = iota([3, 4]);
    expect(values(ref('Gather', [data, i64([2, -3])])[0])).toEqual([8, 9, 10, 11, 0, 1, 2, 3]);
    expect(shape('Gather', [iota([3, 4, 5]), i64([0, 1, 2, 3], [2, 2])], { axis: 1 }, 17, [1])[0]!.dims).toEqual([3, 2, 2, 5]);
    expect(shape('Gather', [iota([3, 4]), i64([1], [])], { axis: -1 }, 17, [1])[0]!.dims).toEqual([3]);
    const x = randomTensor([3, 5, 4], 2);
    await agreesWithOrt('Gather', [x, i64([-1, 0, 4, -5], [2, 2])], [ai('axis', 1)], 13, { runtime: [0, 1] });
    await agreesWithOrt('Gather', [x, i64([2], [])], [ai('axis', -1)], 13, { runtime: [0, 1] });
  });

  it('throws naming the index when it is out of range, and rejects float indices', () => {
    expect(() => ref('Gather', [iota([3, 4]), i64([0, 3])])).toThrow(/index 3 at position 1 of indices is out of range \[-3, 2\]/);
    expect(() => ref('Gather', [iota([3, 4]), i64([-4])])).toThrow(IndexOutOfRangeError);
    expect(() => ref('Gather', [iota([3, 4]), i64([-4])])).toThrow('indices element out of data bounds, idx=-4 must be within the inclusive range [-3,2]');
    expect(() => shape('Gather', [iota([3]), f32([0])], {}, 17, [1])).toThrow(/must be an integer tensor/);
    expect(() => shape('Gather', [iota([3]), i64([0])], { axis: 1 }, 17, [1])).toThrow(/axis 1 is out of range for rank 1/);
  });

  it('GatherElements follows the ONNX examples and ONNX Runtime', async () => {
    const a = ref('GatherElements', [f32([1, 2, 3, 4], [2, 2]), i64([0, 0, 1, 0], [2, 2])], { axis: 1 })[0];
    expect(values(a)).toEqual([1, 1, 4, 3]);
    const b = ref('GatherElements', [iota([3, 3]), i64([1, 2, 0, 2, 0, 0], [2, 3])], { axis: 0 })[0];
    expect(values(b)).toEqual([3, 7, 2, 6, 1, 2]);
    const x = randomTensor([2, 5, 3], 3);
    await agreesWithOrt('GatherElements', [x, randomInts([2, 3, 3], 4, -5, 5)], [ai('axis', -2)], 13, { runtime: [0, 1] });
    expect(() => ref('GatherElements', [iota([2, 2]), i64([0, 2, 0, 0], [2, 2])], { axis: 1 })).toThrow(/index 2 at position 1/);
    expect(() => shape('GatherElements', [iota([2, 2]), i64([0, 0, 0], [3, 1])], { axis: 1 }, 17, [1])).toThrow(/exceed data/);
  });
});

describe('Slice', () => {
  const x10 = iota([10]);
  const slice1 = (starts: number[], ends: number[], steps?: number[]): number[] =>
    values(ref('Slice', [x10, i64(starts), i64(ends), undefined, steps ? i64(steps) : undefined], {}, 13)[0]);

  it('clamps starts and ends per the ONNX spec, for both step signs', () => {
    expect(slice1([2], [7])).toEqual([2, 3, 4, 5, 6]);
    expect(slice1([-3], [INT64_MAX])).toEqual([7, 8, 9]);
    expect(slice1([INT64_MAX], [INT64_MIN], [-1])).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    expect(slice1([8], [1], [-3])).toEqual([8, 5, 2]);
    expect(slice1([20], [30])).toEqual([]);
    expect(slice1([-100], [100], [3])).toEqual([0, 3, 6, 9]);
    // Negative stepping clamps start into [0, dim-1]: a start far below 0 still reads element 0
    // (numpy would return nothing here; the ONNX spec and ONNX Runtime read element 0).
    expect(slice1([-100], [-200], [-1])).toEqual([0]);
    // ...and end into [-1, dim-1]: INT64_MAX as a backward end is dim-1, an empty slice from 9.
    expect(slice1([9], [INT64_MAX], [-1])).toEqual([]);
    expect(slice1([20], [0], [-1])).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
  });

  it('normalises to the form SliceGrad takes', () => {
    const ctx = ctxOf('Slice', 13);
    expect(normalizeSlice([10, 4], [INT64_MAX, -1], [INT64_MIN, 100], [0, -1], [-1, 1], ctx)).toEqual({
      starts: [9, 3],
      ends: [-1, 4],
      axes: [0, 1],
      steps: [-1, 1],
    });
    expect(() => normalizeSlice([10], [0], [1], undefined, [0], ctx)).toThrow(/step 0 is 0/);
    expect(() => normalizeSlice([10, 2], [0, 0], [1, 1], [1, -1], undefined, ctx)).toThrow(/repeat an axis/);
    expect(() => normalizeSlice([10], [0, 1], [1], undefined, undefined, ctx)).toThrow(/differ in length/);
  });

  it('agrees with ONNX Runtime on multi-axis slices with negative axes and steps', async () => {
    const x = randomTensor([3, 4, 5, 2], 5);
    const cases: [number[], number[], number[] | undefined, number[] | undefined][] = [
      [[2, 1], [-100, 3], [0, 2], [-1, 1]],
      [[1, 0, 3], [3, 5, 0], [1, -1, 2], [1, 2, -2]],
      [[-1], [INT64_MIN], [-3], [-2]],
      [[0, 0], [1, 1], [-1, 0], undefined],
      [[5, 5], [0, 100], undefined, [-2, 1]],
    ];
    for (const [s, e, a, st] of cases) {
      await agreesWithOrt('Slice', [x, i64(s), i64(e), a ? i64(a) : undefined, st ? i64(st) : undefined], [], 13);
    }
  });

  it('reads attributes before opset 10 and inputs after', async () => {
    const x = iota([5, 6]);
    const attrs = [ais('starts', [1, -2]), ais('ends', [4, 1000]), ais('axes', [0, 1])];
    await agreesWithOrt('Slice', [x], attrs, 9);
    expect(shape('Slice', [x], attrsOf(attrs), 1)[0]!.dims).toEqual([3, 2]);
    expect(() => shape('Slice', [x, i64([0]), i64([1])], attrsOf(attrs), 13)).toThrow(/became an input in opset 10/);
    expect(() => shape('Slice', [x], {}, 9)).toThrow(/required before opset 10/);
  });

  it('requires constant starts/ends, naming the op, node and input', () => {
    const err = (() => {
      try {
        shape('Slice', [iota([4]), i64([0]), i64([2])], {}, 13, [2]);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(UnsupportedOpError);
    expect((err as Error).message).toMatch(/^Slice node 'Slice_node' \(opset 13\): input 2 \(ends\) must be a constant/);
  });

  it('SliceGrad is the exact gradient of Slice (finite differences of the reference)', () => {
    const ctx = ctxOf('Slice', 13);
    const cases: [number[], number[], number[], number[] | undefined, number[] | undefined][] = [
      [[6], [1], [5], undefined, [2]],
      [[4, 5], [3, -1], [INT64_MIN, 0], [0, 1], [-2, -2]],
      [[2, 3, 4], [0, 1], [1, 100], [-1, 1], [3, 1]],
      [[3, 4], [10], [11], undefined, undefined], // empty slice: zero gradient
    ];
    cases.forEach(([dims, s, e, a, st], n) => {
      const sliceIn = (x: RefTensor): Inputs<RefTensor> => [x, i64(s), i64(e), a ? i64(a) : undefined, st ? i64(st) : undefined];
      const x = randomTensor(dims, 10 + n);
      const y = ref('Slice', sliceIn(x), {}, 13)[0]!;
      const w = randomTensor(y.dims, 20 + n);
      const infos = sliceIn(x).map((t, i) => (t === undefined ? undefined : i === 0 ? { dtype: t.dtype, dims: t.dims } : { ...t, value: t }));
      const attrs = sliceGradAttrs(infos, {}, ctx);
      const [dx] = ref('SliceGrad', [w], attrs);
      const num = numericGradient((xp) => dot(ref('Slice', sliceIn(xp), {}, 13)[0]!, w), x);
      expectClose(dx!, num, { rtol: 1e-6, atol: 1e-6 }, `SliceGrad case ${n}`);
    });
  });

  it('SliceGrad validates its attributes against dy', () => {
    const attrs = { shape: [6], starts: [1], ends: [5], axes: [0], steps: [2] };
    expect(shape('SliceGrad', [iota([2])], attrs)[0]!.dims).toEqual([6]);
    expect(() => shape('SliceGrad', [iota([3])], attrs)).toThrow(/dy \[3\] is not the shape \[2\]/);
    expect(() => shape('SliceGrad', [iota([2])], { ...attrs, steps: undefined as unknown as number[] })).toThrow(ShapeError);
    expect(() => shape('SliceGrad', [iota([2])], { ...attrs, axes: [-1] })).toThrow(/normalised/);
  });
});

describe('Concat and Split', () => {
  it('concatenates along any axis (ONNX Runtime agrees), with the opset 1 default axis', async () => {
    const a = randomTensor([2, 3, 4], 30);
    for (const axis of [0, 1, 2, -1]) {
      const dims = (n: number): number[] => a.dims.map((d, i) => (i === (axis + 3) % 3 ? n : d));
      await agreesWithOrt('Concat', [a, randomTensor(dims(1), 31), randomTensor(dims(2), 32)], [ai('axis', axis)], 13, { runtime: [0, 1, 2] });
    }
    expect(shape('Concat', [iota([2, 3]), iota([2, 4])], {}, 1, [1])[0]!.dims).toEqual([2, 7]);
    expect(() => shape('Concat', [iota([2, 3]), iota([2, 4])], {}, 13, [1])).toThrow(/'axis' is required/);
    expect(() => shape('Concat', [iota([2, 3]), iota([3, 4])], { axis: 1 }, 13, [1])).toThrow(/must share dtype, rank and every dim but axis 1/);
    expect(() => shape('Concat', [iota([2]), iota([2], 'int64')], { axis: 0 }, 13, [1])).toThrow(ShapeError);
  });

  it('splits by attribute (< 13), input (≥ 13), num_outputs (≥ 18, last chunk smaller) or equally', async () => {
    const x = randomTensor([3, 10], 40);
    await agreesWithOrt('Split', [x], [ai('axis', 1), ais('split', [2, 5, 3])], 11, { outputs: 3 });
    await agreesWithOrt('Split', [x, i64([4, 0, 6])], [ai('axis', -1)], 13, { outputs: 3 });
    await agreesWithOrt('Split', [x], [ai('axis', 1), ai('num_outputs', 4)], 18, { outputs: 4 });
    await agreesWithOrt('Split', [randomTensor([6, 2], 41)], [], 13, { outputs: 3 });
    const dims = (ts: RefTensor[]): number[][] => ts.map((t) => [...t.dims]);
    expect(dims(ref('Split', [iota([10])], { num_outputs: 4 }, 18))).toEqual([[3], [3], [3], [1]]);
    expect(dims(ref('Split', [iota([9])], { num_outputs: 4 }, 18))).toEqual([[3], [3], [3], [0]]);
    expect(dims(ref('Split', [iota([9])], {}, 13, 3))).toEqual([[3], [3], [3]]);
    expect(dims(ref('Split', [iota([4]), i64([1, 3])], {}, 1))).toEqual([[1], [3]]); // Split-1's split input
  });

  it('reports malformed splits with typed errors', () => {
    expect(() => ref('Split', [iota([9])], {}, 13)).toThrow(UnsupportedOpError);
    expect(() => ref('Split', [iota([9])], {}, 13, 2)).toThrow(/does not split into 2 equal parts/);
    expect(() => ref('Split', [iota([9])], { split: [4, 5] }, 13)).toThrow(/exists only in opsets 1 to 12/);
    expect(() => ref('Split', [iota([9]), i64([4, 4])], {}, 13)).toThrow(/does not partition axis 0/);
    expect(() => ref('Split', [iota([9]), i64([4, 5])], {}, 11)).toThrow(/input 1 \(split\) exists only in opset 1 and from opset 13/);
    expect(() => ref('Split', [iota([9])], { num_outputs: 3 }, 17)).toThrow(/opset 18 and later/);
    expect(() => ref('Split', [iota([2])], { num_outputs: 4 }, 18)).toThrow(/cannot be split into 4 chunks/);
    expect(() => ref('Split', [iota([9]), i64([4, 5])], {}, 13, 3)).toThrow(/3 outputs but the split makes 2 chunks/);
    expect(() => shape('Split', [iota([9]), i64([4, 5])], {}, 13, [1])).toThrow(/input 1 \(split\) must be a constant/);
  });
});

describe('Expand, Tile, Pad, Trilu', () => {
  it('Expand broadcasts both ways (ONNX Runtime agrees)', async () => {
    expect(values(ref('Expand', [f32([1, 2, 3], [3, 1]), i64([2, 1, 2])])[0])).toEqual([1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
    await agreesWithOrt('Expand', [randomTensor([3, 1], 50), i64([2, 1, 4])], [], 13);
    await agreesWithOrt('Expand', [randomTensor([2, 1, 4], 51), i64([3, 1])], [], 13);
    expect(() => shape('Expand', [iota([3]), i64([4])])).toThrow(/do not broadcast/);
    expect(() => shape('Expand', [iota([3]), i64([3])], {}, 17, [1])).toThrow(UnsupportedOpError);
  });

  it('Tile repeats each axis (opset 6+ repeats, Tile-1 tiles/axis)', async () => {
    expect(values(ref('Tile', [f32([1, 2]), i64([3])])[0])).toEqual([1, 2, 1, 2, 1, 2]);
    await agreesWithOrt('Tile', [randomTensor([2, 3, 1], 52), i64([2, 1, 3])], [], 13);
    expect(ref('Tile', [iota([2, 3]), i64([2], []), i64([1], [])], {}, 1)[0]!.dims).toEqual([2, 6]);
    expect(() => shape('Tile', [iota([2, 3]), i64([2])])).toThrow(/one entry per axis/);
    expect(() => shape('Tile', [iota([2]), i64([-1])])).toThrow(/non-negative/);
  });

  it('Pad matches numpy / ONNX Runtime in every mode, with negative pads and axes', async () => {
    const r = (mode: string, pads: number[], x = iota([3])): number[] => values(ref('Pad', [x, i64(pads)], { mode })[0]);
    // Reflect pads wider than dim-1 follow numpy's np.pad (the ONNX reference); ONNX Runtime rejects them.
    expect(r('reflect', [7, 8])).toEqual([1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]);
    expect(values(ref('Pad', [iota([3]), i64([7, 8])], { mode: 'wrap' }, 19)[0])).toEqual([2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]);
    expect(r('edge', [2, 1])).toEqual([0, 0, 0, 1, 2, 2]);
    expect(r('reflect', [2, 3], f32([5]))).toEqual([5, 5, 5, 5, 5, 5]);
    expect(r('constant', [-1, 2])).toEqual([1, 2, 0, 0]);
    const x = randomTensor([3, 4, 2], 53);
    await agreesWithOrt('Pad', [x, i64([1, 0, 2, 0, 3, 1]), f32([2.5], [])], [], 13);
    await agreesWithOrt('Pad', [x, i64([2, 1, 0, 1, 2, 1])], [as('mode', 'reflect')], 13);
    await agreesWithOrt('Pad', [x, i64([2, 3, 0, 1, 5, 1])], [as('mode', 'edge')], 13);
    await agreesWithOrt('Pad', [x, i64([-1, 2, 0, 0, -2, 1])], [], 13);
    await agreesWithOrt('Pad', [x, i64([2, 3, 1, 1, 5, 2])], [as('mode', 'wrap')], 19);
    await agreesWithOrt('Pad', [x, i64([-1, 1, 1, 0, -2, 1])], [as('mode', 'reflect')], 13);
    await agreesWithOrt('Pad', [x, i64([1, 2, 3, 4]), undefined, i64([-1, 0])], [], 18);
    await agreesWithOrt('Pad', [x], [ais('pads', [0, 1, 0, 1, 0, 2]), af('value', -1.5)], 2);
  });

  it('Pad reports bad pads and modes with typed errors', () => {
    expect(() => shape('Pad', [iota([3]), i64([1])])).toThrow(/must hold 2 values/);
    expect(() => shape('Pad', [iota([3]), i64([-2, -2])])).toThrow(/crop more than the 3 elements/);
    expect(() => shape('Pad', [iota([3]), i64([1, 1])], { mode: 'wrap' }, 18)).toThrow(UnsupportedOpError);
    expect(() => shape('Pad', [iota([0]), i64([1, 1])], { mode: 'edge' })).toThrow(/no elements are left/);
    expect(() => shape('Pad', [iota([3]), i64([1, 1]), undefined, i64([0])], {}, 17)).toThrow(/exists only in opset 18/);
    expect(() => shape('Pad', [iota([3])], { pads: [1, 1] }, 13)).toThrow(/became an input in opset 11/);
    expect(shape('Pad', [iota([3])], { paddings: [1, 1] }, 1)[0]!.dims).toEqual([5]);
  });

  it('Trilu keeps a triangle of the last two dims (ONNX Runtime agrees)', async () => {
    const x = iota([3, 4]);
    expect(values(ref('Trilu', [x], {}, 14)[0])).toEqual([0, 1, 2, 3, 0, 5, 6, 7, 0, 0, 10, 11]);
    expect(values(ref('Trilu', [x, i64([-1], [])], { upper: 0 }, 14)[0])).toEqual([0, 0, 0, 0, 4, 0, 0, 0, 8, 9, 0, 0]);
    for (const k of [-2, 0, 1, 5]) {
      for (const upper of [0, 1]) await agreesWithOrt('Trilu', [randomTensor([2, 4, 5], 54), i64([k], [])], [ai('upper', upper)], 14);
    }
    expect(() => shape('Trilu', [iota([4])], {}, 14)).toThrow(/rank ≥ 2/);
  });
});

describe('view ops', () => {
  const ctx = ctxOf('Reshape', 14);
  it('Reshape copies 0s, infers -1, honours allowzero, and names both shapes on failure', async () => {
    expect(reshapeDims([2, 3, 4], [0, -1], false, ctx)).toEqual([2, 12]);
    expect(reshapeDims([2, 3, 4], [4, 0, -1], false, ctx)).toEqual([4, 3, 2]);
    expect(reshapeDims([0, 3], [0, 3], true, ctx)).toEqual([0, 3]);
    expect(reshapeDims([2, 3, 4], [0, 0, -1], false, ctx)).toEqual([2, 3, 4]);
    expect(() => reshapeDims([2, 3], [3, 0], false, ctx)).toThrow(/cannot reshape \[2,3\] to \[3,0\]: 6 elements, the shape holds 9/);
    expect(() => reshapeDims([2], [1, 0], false, ctx)).toThrow(/copies a dim the input does not have/);
    expect(() => reshapeDims([2, 3, 4], [5, -1], false, ctx)).toThrow(/cannot reshape \[2,3,4\] to \[5,-1\]/);
    expect(() => reshapeDims([2, 3], [-1, -1], false, ctx)).toThrow(/more than one -1/);
    expect(() => reshapeDims([2, 3], [0, -1], true, ctx)).toThrow(/both 0 and -1/);
    expect(() => reshapeDims([2, 3], [7], false, ctx)).toThrow(/6 elements, the shape holds 7/);
    await agreesWithOrt('Reshape', [randomTensor([2, 3, 4], 60), i64([0, -1, 2])], [], 14);
    expect(shape('Reshape', [iota([2, 3])], { shape: [3, 2] }, 4)[0]!.dims).toEqual([3, 2]);
    expect(() => shape('Reshape', [iota([2, 3]), i64([6])], { allowzero: 1 }, 13)).toThrow(/opset 14 and later/);
    expect(() => shape('Reshape', [iota([2, 3]), i64([6])], {}, 14, [1])).toThrow(/input 1 \(shape\) must be a constant/);
  });

  it('Squeeze and Unsqueeze read axes from attributes before opset 13 and inputs after', async () => {
    expect(shape('Squeeze', [iota([1, 3, 1])], {}, 11)[0]!.dims).toEqual([3]);
    expect(shape('Squeeze', [iota([1, 3, 1])], { axes: [-1] }, 11)[0]!.dims).toEqual([1, 3]);
    expect(shape('Squeeze', [iota([1, 3, 1]), i64([0])], {}, 13)[0]!.dims).toEqual([3, 1]);
    expect(() => shape('Squeeze', [iota([1, 3, 1]), i64([1])], {}, 13)).toThrow(/its size is 3, not 1/);
    expect(() => shape('Squeeze', [iota([1, 3])], { axes: [0] }, 13)).toThrow(/opsets 1 to 12/);
    expect(shape('Unsqueeze', [iota([3, 4])], { axes: [0, 3] }, 11)[0]!.dims).toEqual([1, 3, 4, 1]);
    expect(shape('Unsqueeze', [iota([3, 4]), i64([-1, 1])], {}, 13)[0]!.dims).toEqual([3, 1, 4, 1]);
    expect(() => shape('Unsqueeze', [iota([3]), i64([0, 0])], {}, 13)).toThrow(/repeat an axis/);
    expect(() => shape('Unsqueeze', [iota([3]), i64([0])], {}, 13, [1])).toThrow(UnsupportedOpError);
    await agreesWithOrt('Unsqueeze', [randomTensor([3, 4], 61), i64([-1, 0])], [], 13);
    await agreesWithOrt('Squeeze', [randomTensor([1, 3, 1], 62)], [ais('axes', [2])], 11);
  });

  it('Flatten, Identity and Dropout', async () => {
    expect(shape('Flatten', [iota([2, 3, 4])])[0]!.dims).toEqual([2, 12]);
    expect(shape('Flatten', [iota([2, 3, 4])], { axis: 0 })[0]!.dims).toEqual([1, 24]);
    expect(shape('Flatten', [iota([2, 3, 4])], { axis: -1 })[0]!.dims).toEqual([6, 4]);
    expect(shape('Flatten', [iota([2, 3, 4])], { axis: 3 })[0]!.dims).toEqual([24, 1]);
    expect(() => shape('Flatten', [iota([2, 3])], { axis: 3 })).toThrow(/out of range \[-2, 2\]/);
    await agreesWithOrt('Flatten', [randomTensor([2, 3, 4], 63)], [ai('axis', -2)], 13);
    expect(values(ref('Identity', [iota([3])])[0])).toEqual([0, 1, 2]);
    const [y, mask] = ref('Dropout', [iota([2, 2]), f32([0.3], []), tensor('bool', [], [0])], {}, 13);
    expect(values(y)).toEqual([0, 1, 2, 3]);
    expect(mask!.dtype).toBe('bool');
    expect(values(mask)).toEqual([1, 1, 1, 1]);
    expect(shape('Dropout', [iota([2])], { ratio: 0.1 }, 9)[1]!.dtype).toBe('float32');
    expect(() => shape('Dropout', [iota([2]), f32([0.5], []), tensor('bool', [], [1])], {}, 13)).toThrow(UnsupportedOpError);
    expect(shape('Dropout', [iota([2]), f32([0], []), tensor('bool', [], [1])], {}, 13)[0]!.dims).toEqual([2]);
    expect(() => shape('Dropout', [iota([2])], { ratio: 0.1 }, 13)).toThrow(/opsets 1 to 11/);
  });

  it('view ops lower as aliases; Dropout needs a kernel only for its mask', () => {
    const x = { dtype: 'float32' as const, dims: [2, 3] };
    const lower = (op: Op, inputs: Inputs<ValueInfo>, attrs: Attrs, n = 1) => {
      const def: OpDef = layoutOps[op];
      const ctx = ctxOf(op, 13);
      const outs = def.shape(inputs, attrs, ctx).slice(0, n);
      if (def.gpu === 'fold') throw new Error('fold');
      return def.gpu(inputs, outs, attrs, ctx);
    };
    const c = (t: RefTensor): ValueInfo => ({ ...t, value: t });
    expect(lower('Reshape', [x, c(i64([6]))], {})).toEqual({ alias: 0 });
    expect(lower('Squeeze', [{ dtype: 'float32', dims: [1, 3] }], {})).toEqual({ alias: 0 });
    expect(lower('Unsqueeze', [x, c(i64([0]))], {})).toEqual({ alias: 0 });
    expect(lower('Flatten', [x], {})).toEqual({ alias: 0 });
    expect(lower('Identity', [x], {})).toEqual({ alias: 0 });
    expect(lower('Dropout', [x], {})).toEqual({ alias: 0 });
    const both = lower('Dropout', [x], {}, 2);
    expect('steps' in both && both.steps.map((s) => s.program.kernel.name)).toEqual(['layout-strided', 'layout-pad']); // 6 words: no vec4
  });
});

describe('fold ops', () => {
  it('are CPU-only', () => {
    for (const op of ['Shape', 'Size', 'Range', 'ConstantOfShape', 'Constant', 'NonZero'] as const) {
      expect(layoutOps[op].gpu).toBe('fold');
    }
  });

  it('Shape honours opset 15 start/end with clamping', async () => {
    const x = iota([2, 3, 4, 5]);
    expect(values(ref('Shape', [x], {}, 13)[0])).toEqual([2, 3, 4, 5]);
    expect(values(ref('Shape', [x], { start: 1, end: -1 }, 15)[0])).toEqual([3, 4]);
    expect(values(ref('Shape', [x], { start: -10, end: 100 }, 15)[0])).toEqual([2, 3, 4, 5]);
    expect(values(ref('Shape', [x], { start: 3, end: 1 }, 15)[0])).toEqual([]);
    expect(shape('Shape', [x], { start: 2 }, 15)[0]).toEqual({ dtype: 'int64', dims: [2] });
    expect(() => shape('Shape', [x], { start: 1 }, 14)).toThrow(/opset 15 and later/);
    await agreesWithOrt('Shape', [x], [ai('start', -3), ai('end', 3)], 15);
  });

  it('Size, Range, ConstantOfShape, NonZero', async () => {
    expect(ref('Size', [iota([2, 3, 4])])[0]).toEqual(tensor('int64', [], [24]));
    expect(values(ref('Range', [i64([3], []), i64([10], []), i64([3], [])])[0])).toEqual([3, 6, 9]);
    expect(values(ref('Range', [i64([10], []), i64([3], []), i64([-3], [])])[0])).toEqual([10, 7, 4]);
    expect(values(ref('Range', [i64([1], []), i64([1], []), i64([1], [])])[0])).toEqual([]);
    expect(values(ref('Range', [f32([0.5], []), f32([2], []), f32([0.4], [])])[0])).toEqual([0.5, 0.9, 1.3, 1.7].map(Math.fround));
    await agreesWithOrt('Range', [f32([1], []), f32([-2.5], []), f32([-0.75], [])], [], 13, { runtime: [] });
    await agreesWithOrt('Range', [i64([-5], []), i64([9], []), i64([4], [])], [], 13, { runtime: [] });
    expect(() => ref('Range', [i64([0], []), i64([3], []), i64([0], [])])).toThrow(/delta is 0/);
    expect(() => shape('Range', [i64([0], []), i64([3], []), f32([1], [])])).toThrow(/share a type/);

    expect(ref('ConstantOfShape', [i64([2, 3])])[0]).toEqual(tensor('float32', [2, 3]));
    expect(ref('ConstantOfShape', [i64([2]), undefined], { value: tensor('int64', [1], [7]) })[0]).toEqual(tensor('int64', [2], [7, 7]));
    expect(ref('ConstantOfShape', [i64([])], { value: f32([2]) })[0]).toEqual(tensor('float32', [], [2]));
    const cos = layoutOps.ConstantOfShape;
    expect(cos.shape([{ ...i64([2, 3]), value: i64([2, 3]) }], {}, ctxOf('ConstantOfShape'))).toEqual([{ dtype: 'float32', dims: [2, 3] }]);
    expect(() => cos.shape([{ dtype: 'int64', dims: [2] }], {}, ctxOf('ConstantOfShape'))).toThrow(UnsupportedOpError);
    expect(() => ref('ConstantOfShape', [i64([2, -1])])).toThrow(/negative dim/);
    await agreesWithOrt('ConstantOfShape', [i64([2, 3])], [{ name: 'value', type: A.TENSOR, t: { dims: [1], dataType: 7, rawData: rawBytes(i64([5])) } }], 13, { runtime: [] });

    const nz = ref('NonZero', [f32([0, 1, 0, 2, 3, 0], [2, 3])])[0]!;
    expect(nz.dims).toEqual([2, 3]);
    expect(values(nz)).toEqual([0, 1, 1, 1, 0, 1]);
    await agreesWithOrt('NonZero', [f32([0, 1, 0, 2, 3, 0, 0, 4], [2, 2, 2])], [], 13, { runtime: [] });
    expect(ref('NonZero', [f32([5], [])])[0]!.dims).toEqual([1, 1]);
  });

  it('Constant reads the attribute its opset allows', () => {
    const t = tensor('int64', [2], [4, 5]);
    expect(ref('Constant', [], { value: t }, 1)[0]).toEqual(t);
    expect(ref('Constant', [], { value_float: 0.1 }, 12)[0]).toEqual(tensor('float32', [], [Math.fround(0.1)]));
    expect(ref('Constant', [], { value_floats: [1, 2] }, 13)[0]).toEqual(tensor('float32', [2], [1, 2]));
    expect(ref('Constant', [], { value_int: -3 }, 13)[0]).toEqual(tensor('int64', [], [-3]));
    expect(ref('Constant', [], { value_ints: [1, 2, 3] }, 13)[0]).toEqual(tensor('int64', [3], [1, 2, 3]));
    expect(() => ref('Constant', [], { value_int: 1 }, 11)).toThrow(/opset 12 and later/);
    expect(() => ref('Constant', [], { sparse_value: 'x' }, 13)).toThrow(UnsupportedOpError);
    expect(() => ref('Constant', [], { value_string: 'x' }, 13)).toThrow(UnsupportedOpError);
    expect(() => ref('Constant', [], {}, 13)).toThrow(/exactly one value attribute/);
    expect(() => ref('Constant', [], { value_int: 1, value_float: 1 }, 13)).toThrow(ShapeError);
  });
});

describe('value inputs that decide shapes', () => {
  it('must be constant: UnsupportedOpError naming the op, node, opset and input', () => {
    const cases: [Op, Inputs<RefTensor>, number, number][] = [
      ['Reshape', [iota([6]), i64([2, 3])], 1, 14],
      ['Squeeze', [iota([1, 3]), i64([0])], 1, 13],
      ['Unsqueeze', [iota([3]), i64([0])], 1, 13],
      ['Slice', [iota([4]), i64([0]), i64([2]), i64([0]), i64([1])], 4, 13],
      ['Split', [iota([4]), i64([1, 3])], 1, 13],
      ['Expand', [iota([3]), i64([2, 3])], 1, 13],
      ['Tile', [iota([3]), i64([2])], 1, 13],
      ['Pad', [iota([3]), i64([1, 1])], 1, 13],
      ['Pad', [iota([3]), i64([1, 1]), f32([0], [])], 2, 13],
      ['Trilu', [iota([3, 3]), i64([1], [])], 1, 14],
      ['Range', [i64([0], []), i64([5], []), i64([1], [])], 1, 13],
      ['NonZero', [iota([3])], 0, 13],
    ];
    for (const [op, inputs, dynamic, opset] of cases) {
      const infos: Inputs<ValueInfo> = inputs.map((t, i) =>
        t === undefined ? undefined : i === dynamic || (i === 0 && op !== 'Range' && op !== 'NonZero') ? { dtype: t.dtype, dims: t.dims } : { ...t, value: t },
      );
      const def: OpDef = layoutOps[op];
      let err: unknown;
      try {
        def.shape(infos, {}, ctxOf(op, opset));
      } catch (e) {
        err = e;
      }
      expect(err, `${op} input ${dynamic}`).toBeInstanceOf(UnsupportedOpError);
      expect((err as Error).message).toMatch(new RegExp(`^${op} node '${op}_node' \\(opset ${opset}\\): input ${dynamic} \\(\\w+\\) must be a constant after shape specialisation`));
      // The same inputs as constants are accepted.
      expect(() => def.shape(inputs.map((t) => (t === undefined ? undefined : { ...t, value: t })), {}, ctxOf(op, opset))).not.toThrow();
    }
  });
});

describe('GPU lowering plans', () => {
  it('simplifies index maps and picks the vec4 copy only when aligned', () => {
    const ctx = ctxOf('Slice');
    expect(simplifyMap({ dims: [2, 1, 3, 4], srcStrides: [12, 0, 4, 1], dstStrides: [12, 12, 4, 1], srcBase: 0, dstBase: 0 }).dims).toEqual([24]);
    const rows = stridedProgram({ dims: [2, 8], srcStrides: [16, 1], dstStrides: [8, 1], srcBase: 20, dstBase: 0 }, ctx)!;
    expect(rows.kernel.name).toBe('layout-strided-vec4');
    expect(rows.uniforms).toMatchObject({ n: 4, src_base: 5, dims: [2, 2], src_strides: [4, 1], dst_strides: [2, 1] });
    expect(stridedProgram({ dims: [2, 8], srcStrides: [16, 1], dstStrides: [8, 1], srcBase: 2, dstBase: 0 }, ctx)!.kernel.name).toBe('layout-strided');
    expect(stridedProgram({ dims: [3, 0], srcStrides: [1, 1], dstStrides: [1, 1], srcBase: 0, dstBase: 0 }, ctx)).toBeUndefined();
    // A rank-7 Tile doubles to 14 iteration dims with nothing to merge: too many for the kernel.
    expect(() =>
      layoutOps.Tile.gpu === 'fold'
        ? undefined
        : layoutOps.Tile.gpu([{ dtype: 'float32', dims: [2, 3, 2, 3, 2, 3, 2] }, { ...i64([2, 2, 2, 2, 2, 2, 2]), value: i64([2, 2, 2, 2, 2, 2, 2]) }], [], {}, ctxOf('Tile')),
    ).toThrow(UnsupportedOpError);
  });

  it('folds grids beyond 65535 workgroups', () => {
    const p = stridedProgram({ dims: [5, 4_000_001], srcStrides: [0, 1], dstStrides: [4_000_001, 1], srcBase: 0, dstBase: 0 }, ctxOf('Expand'))!;
    expect(p.workgroups[1]).toBeGreaterThan(1);
    expect(p.workgroups[0]).toBeLessThanOrEqual(65535);
  });
});
