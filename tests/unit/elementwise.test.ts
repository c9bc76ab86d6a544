// Element-wise ops on the CPU: reference gradients of the backward helpers against finite
// differences of the reference forward, ONNX semantics (Cast rounding, integer Div, Pow, Clip by
// opset), shape and dtype errors, broadcast planning, and the opcode table of the WGSL kernel.
import { describe, expect, it } from 'vitest';
import wgsl from '../../shaders/elementwise.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { EW_OP, castValue, elementwiseOps, elementwiseProgram, erf, erfc, f16round, planBroadcast } from '../../src/ops/elementwise.js';
import { context, runReference } from '../../src/ops/execute.js';
import { dot, expectClose, numericGradient, randomTensor } from '../util/tensors.js';

type Op = keyof typeof elementwiseOps;

function ref(op: Op, inputs: (RefTensor | undefined)[], attrs: Attrs = {}, opset = 17): RefTensor {
  return runReference(elementwiseOps[op], inputs, attrs, context(op, `${op}_node`, opset))[0]!;
}

const t = (dtype: DataType, dims: number[], data: number[]): RefTensor => tensor(dtype, dims, data);

describe('opcode table', () => {
  it('matches the const table of shaders/elementwise.wgsl', () => {
    const consts = new Map<string, number>();
    for (const m of wgsl.matchAll(/^const ([A-Z0-9_]+) = (\d+)u;$/gm)) consts.set(m[1]!, Number(m[2]));
    for (const [name, code] of Object.entries(EW_OP)) expect(consts.get(name), name).toBe(code);
    expect(new Set(Object.values(EW_OP)).size).toBe(Object.keys(EW_OP).length);
  });
});

describe('backward helpers against finite differences of the forward', () => {
  const dims = [3, 7];
  const w = randomTensor(dims, 2, -1, 1);

  /** d/dx Σ w·f(x) by central differences, and by the helper from (w, saved). */
  function compare(forward: (x: RefTensor) => RefTensor, x: RefTensor, helper: Op, saved: RefTensor, attrs: Attrs = {}): void {
    const numeric = numericGradient((v) => dot(forward(v), w), x);
    const analytic = ref(helper, [w, saved], attrs);
    expectClose(analytic, numeric, { rtol: 1e-6, atol: 1e-8 }, helper);
  }

  it('GeluGrad (erf and tanh forms)', () => {
    const x = randomTensor(dims, 3, -6, 6);
    for (const approximate of ['none', 'tanh']) {
      compare((v) => ref('Gelu', [v], { approximate }, 20), x, 'GeluGrad', x, { approximate });
    }
  });

  it('SigmoidGrad and TanhGrad take the forward output', () => {
    const x = randomTensor(dims, 4, -4, 4);
    compare((v) => ref('Sigmoid', [v]), x, 'SigmoidGrad', ref('Sigmoid', [x]));
    compare((v) => ref('Tanh', [v]), x, 'TanhGrad', ref('Tanh', [x]));
  });

  it('ReluGrad and ErfGrad take the forward input', () => {
    const x = randomTensor(dims, 5, -3, 3);
    for (let i = 0; i < x.data.length; i++) if (Math.abs(x.data[i]!) < 1e-3) x.data[i] = 0.5; // away from the kink
    compare((v) => ref('Relu', [v]), x, 'ReluGrad', x);
    compare((v) => ref('Erf', [v]), x, 'ErfGrad', x);
  });

  it('rejects dy and saved values of different shapes', () => {
    expect(() => ref('TanhGrad', [randomTensor([2, 3], 1), randomTensor([3], 2)])).toThrow(ShapeError);
  });
});

describe('reference special functions', () => {
  it('erf and erfc agree with tabulated values', () => {
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 15);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 15);
    expect(erf(-2.5)).toBeCloseTo(-0.9995930479825550, 15);
    expect(erfc(3) / 2.209049699858544e-5).toBeCloseTo(1, 12);
    expect(erfc(5) / 1.5374597944280349e-12).toBeCloseTo(1, 12);
    expect(erf(1e-8) / 1.1283791670955126e-8).toBeCloseTo(1, 14);
  });

  it('f16round rounds to nearest, ties to even, with subnormals and overflow', () => {
    expect(f16round(1 + 2 ** -11)).toBe(1); // tie → even mantissa
    expect(f16round(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9);
    expect(f16round(65504)).toBe(65504);
    expect(f16round(65519)).toBe(65504);
    expect(f16round(65520)).toBe(Infinity);
    expect(f16round(-1e6)).toBe(-Infinity);
    expect(f16round(2 ** -25)).toBe(0); // half the smallest subnormal, tie → 0
    expect(f16round(3 * 2 ** -26)).toBe(2 ** -24);
    expect(f16round(0.1)).toBe(0.0999755859375);
  });
});

describe('ONNX semantics', () => {
  it('Cast: float→int truncates toward zero, ints wrap, bool is x != 0, float32 rounds', () => {
    const x = t('float32', [8], [-2.7, 2.7, -0.5, 300.7, -129.2, 200, 0, 1e10]);
    expect(Array.from(ref('Cast', [x], { to: 7 }).data)).toEqual([-2, 2, 0, 300, -129, 200, 0, 1e10]);
    expect(Array.from(ref('Cast', [x], { to: 6 }).data)).toEqual([-2, 2, 0, 300, -129, 200, 0, 2147483647]);
    expect(Array.from(ref('Cast', [x], { to: 2 }).data)).toEqual([254, 2, 0, 44, 127, 200, 0, 255]);
    expect(Array.from(ref('Cast', [x], { to: 3 }).data)).toEqual([-2, 2, 0, 44, 127, -56, 0, -1]);
    expect(Array.from(ref('Cast', [x], { to: 9 }).data)).toEqual([1, 1, 1, 1, 1, 1, 0, 1]);
    expect(ref('Cast', [t('float64', [1], [0.1])], { to: 1 }).data[0]).toBe(Math.fround(0.1));
    expect(Array.from(ref('Cast', [t('int64', [3], [2 ** 31, -(2 ** 31) - 1, 5])], { to: 6 }).data)).toEqual([-(2 ** 31), 2 ** 31 - 1, 5]);
    expect(castValue(Number.NaN, 'float32', 'bool')).toBe(1);
    expect(ref('Cast', [x], { to: 6 }).dtype).toBe('int32');
  });

  it('Cast rejects unsupported target types', () => {
    expect(() => ref('Cast', [t('float32', [1], [1])], { to: 8 })).toThrow(UnsupportedOpError);
    expect(() => ref('Cast', [t('float32', [1], [1])], {})).toThrow(ShapeError);
  });

  it('integer Div truncates toward zero as C does, and refuses division by zero', () => {
    const a = t('int64', [4], [-7, 7, -7, 7]);
    const b = t('int64', [4], [2, 2, -2, -2]);
    expect(Array.from(ref('Div', [a, b]).data)).toEqual([-3, 3, 3, -3]);
    expect(() => ref('Div', [a, t('int64', [1], [0])])).toThrow(/division by zero/);
    expect(Array.from(ref('Div', [t('float32', [1], [-7]), t('float32', [1], [2])]).data)).toEqual([-3.5]);
  });

  it('int32 arithmetic wraps like C; int64 stays exact', () => {
    expect(ref('Add', [t('int32', [1], [2 ** 31 - 1]), t('int32', [1], [1])]).data[0]).toBe(-(2 ** 31));
    expect(ref('Mul', [t('int32', [1], [65536]), t('int32', [1], [65536])]).data[0]).toBe(0);
    expect(ref('Add', [t('int64', [1], [2 ** 31 - 1]), t('int64', [1], [1])]).data[0]).toBe(2 ** 31);
  });

  it('Pow: negative bases, integer powers, mixed dtypes', () => {
    const base = t('float32', [4], [-2, -2, 4, 0]);
    const exps = t('float32', [4], [3, 0.5, -0.5, 0]);
    const r = ref('Pow', [base, exps]).data;
    expect(r[0]).toBe(-8);
    expect(r[1]).toBeNaN();
    expect(r[2]).toBe(0.5);
    expect(r[3]).toBe(1);
    expect(Array.from(ref('Pow', [t('int64', [4], [2, -3, 2, -1]), t('int64', [4], [10, 3, -1, -3])]).data)).toEqual([1024, -27, 0, -1]);
    const mixed = ref('Pow', [t('int64', [2], [2, 3]), t('float32', [1], [1.5])]);
    expect(mixed.dtype).toBe('int64');
    expect(Array.from(mixed.data)).toEqual([2, 5]); // 2.83 and 5.20 truncated
    expect(ref('Pow', [t('float32', [1], [3]), t('int64', [1], [2])]).dtype).toBe('float32');
  });

  it('Clip: attributes before opset 11, optional inputs from 11, hi wins over lo', () => {
    const x = t('float32', [4], [-3, -0.5, 0.5, 3]);
    const s = (v: number): RefTensor => t('float32', [], [v]);
    expect(Array.from(ref('Clip', [x], { min: -1, max: 1 }, 6).data)).toEqual([-1, -0.5, 0.5, 1]);
    expect(Array.from(ref('Clip', [x], {}, 6).data)).toEqual([-3, -0.5, 0.5, 3]);
    expect(Array.from(ref('Clip', [x, s(-1), s(1)], {}, 13).data)).toEqual([-1, -0.5, 0.5, 1]);
    expect(Array.from(ref('Clip', [x, undefined, s(0)], {}, 13).data)).toEqual([-3, -0.5, 0, 0]);
    expect(Array.from(ref('Clip', [x, s(1), s(-1)], {}, 13).data)).toEqual([-1, -1, -1, -1]);
    expect(() => ref('Clip', [x], { min: -1 }, 13)).toThrow(ShapeError);
    expect(() => ref('Clip', [x, s(0)], {}, 6)).toThrow(ShapeError);
    expect(() => ref('Clip', [x, t('float32', [2], [0, 1])], {}, 13)).toThrow(/single value/);
  });

  it('Where, Mean and comparisons', () => {
    const c = t('bool', [2, 1], [1, 0]);
    const w = ref('Where', [c, t('float32', [3], [1, 2, 3]), t('float32', [], [-1])]);
    expect(w.dims).toEqual([2, 3]);
    expect(Array.from(w.data)).toEqual([1, 2, 3, -1, -1, -1]);
    const m = ref('Mean', [t('float32', [2], [1, 2]), t('float32', [1], [4]), t('float32', [2], [1, 0])]);
    expect(Array.from(m.data)).toEqual([2, 2]);
    const lt = ref('Less', [t('int64', [3], [1, 2, 3]), t('int64', [1], [2])]);
    expect(lt.dtype).toBe('bool');
    expect(Array.from(lt.data)).toEqual([1, 0, 0]);
  });
});

describe('shape and dtype errors', () => {
  it('names the op and node for shapes that do not broadcast', () => {
    expect(() => ref('Add', [randomTensor([2, 3], 1), randomTensor([4], 2)])).toThrow(ShapeError);
    expect(() => ref('Add', [randomTensor([2, 3], 1), randomTensor([4], 2)])).toThrow(/Add node 'Add_node'.*\[2,3\] and \[4\]/);
    const bad = [t('bool', [2], [1, 0]), randomTensor([3], 1), randomTensor([2], 2)];
    expect(() => ref('Where', bad)).toThrow(ShapeError);
    expect(() => ref('Sum', [randomTensor([2], 1), randomTensor([3], 1), randomTensor([2], 1)])).toThrow(ShapeError);
  });

  it('rejects mismatched and unsuitable dtypes', () => {
    expect(() => ref('Add', [randomTensor([2], 1), t('int64', [2], [1, 2])])).toThrow(/different dtypes/);
    expect(() => ref('Exp', [t('int64', [1], [1])])).toThrow(ShapeError);
    expect(() => ref('And', [randomTensor([1], 1), randomTensor([1], 2)])).toThrow(ShapeError);
    expect(() => ref('Where', [randomTensor([1], 1), randomTensor([1], 2), randomTensor([1], 3)])).toThrow(/bool/);
    expect(() => ref('Add', [t('uint8', [1], [1]), t('uint8', [1], [1])])).toThrow(UnsupportedOpError);
    expect(() => ref('Sum', [t('int64', [1], [1])])).toThrow(ShapeError);
    expect(() => ref('Gelu', [randomTensor([1], 1)], { approximate: 'fast' }, 20)).toThrow(UnsupportedOpError);
    expect(() => ref('Sum', [])).toThrow(ShapeError);
  });
});

describe('broadcast planning', () => {
  it('merges dims that every input walks contiguously or broadcasts along', () => {
    const p = planBroadcast([[2, 3, 4], [4]], [2, 3, 4]);
    expect(p.fast).toBe(false);
    expect(p.shape).toEqual([4, 6]); // innermost first
    expect(p.strides).toEqual([
      [1, 4],
      [1, 0],
    ]);
    const q = planBroadcast([[3, 1], [1, 4]], [3, 4]);
    expect(q.shape).toEqual([4, 3]);
    expect(q.strides).toEqual([
      [0, 1],
      [1, 0],
    ]);
    expect(planBroadcast([[5, 1, 1, 7], [5, 1, 1, 7]], [5, 1, 1, 7]).shape).toEqual([35]);
  });

  it('refuses broadcasts that keep more than 8 dims', () => {
    const a = [2, 1, 2, 1, 2, 1, 2, 1, 2];
    const b = [1, 2, 1, 2, 1, 2, 1, 2, 1];
    const out = a.map(() => 2);
    expect(() => elementwiseProgram('ADD_F', [a, b], out, {}, {}, context('Add'))).toThrow(UnsupportedOpError);
    expect(elementwiseProgram('ADD_F', [a.slice(1), b.slice(1)], out.slice(1)).uniforms.rank).toBe(8);
  });
});
