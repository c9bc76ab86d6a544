// Float64 references of the softmax and normalisation ops: ONNX semantics on hand-checked values,
// the −∞-row convention, shape errors, and every backward op against central finite differences
// of its forward reference.
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor, type TensorType } from '../../src/ir/tensor.js';
import { context, runReference } from '../../src/ops/execute.js';
import { normalizationOps as ops } from '../../src/ops/normalization.js';
import type { LoweringSteps, OpDef } from '../../src/ops/types.js';
import { dot, expectClose, numericGradient, randomTensor } from '../util/tensors.js';

const FD = { rtol: 1e-5, atol: 1e-7 };

function run(op: keyof typeof ops, inputs: (RefTensor | undefined)[], attrs: Attrs = {}, opset = 17): RefTensor[] {
  return runReference(ops[op], inputs, attrs, context(op, `test_${op}`, opset));
}

describe('Softmax / LogSoftmax reference', () => {
  it('matches hand-computed values along the last axis', () => {
    const [y] = run('Softmax', [tensor('float32', [1, 3], [1, 2, 3])]);
    expectClose(y!, tensor('float32', [1, 3], [0.09003057317038046, 0.24472847105479767, 0.6652409557748219]), { rtol: 1e-12 });
    const [l] = run('LogSoftmax', [tensor('float32', [1, 3], [1, 2, 3])]);
    expectClose(l!, tensor('float32', [1, 3], [-2.4076059644443806, -1.4076059644443806, -0.4076059644443806]), { rtol: 1e-12 });
  });

  it('reduces one axis from opset 13 and the 2-D coercion before it', () => {
    const x = randomTensor([2, 3, 4], 1, -2, 2);
    const [y13] = run('Softmax', [x], { axis: 1 }, 13);
    for (let o = 0; o < 2; o++) {
      for (let i = 0; i < 4; i++) {
        let s = 0;
        for (let k = 0; k < 3; k++) s += y13!.data[o * 12 + k * 4 + i]!;
        expect(s).toBeCloseTo(1, 12);
      }
    }
    const [y11] = run('Softmax', [x], { axis: 1 }, 11); // coerced to [2, 12]
    for (let o = 0; o < 2; o++) {
      let s = 0;
      for (let k = 0; k < 12; k++) s += y11!.data[o * 12 + k]!;
      expect(s).toBeCloseTo(1, 12);
    }
    // Default axis: -1 from opset 13, 1 before (which for rank 2 is the same row).
    const x2 = randomTensor([3, 5], 2);
    expectClose(run('Softmax', [x2], {}, 11)[0]!, run('Softmax', [x2], {}, 13)[0]!, { rtol: 1e-12 });
    const [l11] = run('LogSoftmax', [x], {}, 11);
    const logY11 = { ...y11!, data: y11!.data.map(Math.log) };
    expectClose(l11!, logY11, { rtol: 1e-12, atol: 1e-12 });
  });

  it('writes rows with no finite value as zeros (softmax) and −∞ (log-softmax), never NaN', () => {
    const x = tensor('float32', [2, 3], [-Infinity, -Infinity, -Infinity, -Infinity, 0, Math.log(3)]);
    const [y] = run('Softmax', [x]);
    expect(Array.from(y!.data.slice(0, 4))).toEqual([0, 0, 0, 0]);
    expect(y!.data[4]).toBeCloseTo(0.25, 12);
    expect(y!.data[5]).toBeCloseTo(0.75, 12);
    const [l] = run('LogSoftmax', [x]);
    expect(Array.from(l!.data.slice(0, 4))).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
    expect(l!.data[4]).toBeCloseTo(Math.log(0.25), 12);
  });

  it('rejects integer inputs and out-of-range axes', () => {
    expect(() => ops.Softmax.shape([{ dtype: 'int64', dims: [2] }], {}, context('Softmax'))).toThrow(ShapeError);
    expect(() => ops.Softmax.shape([{ dtype: 'float32', dims: [2, 3] }], { axis: 2 }, context('Softmax'))).toThrow(/axis 2/);
  });
});

describe('MaskedSoftmax reference', () => {
  it('is softmax(x·scale + broadcast mask) over the last axis', () => {
    const x = randomTensor([2, 3, 4, 5], 3, -3, 3);
    const mask = randomTensor([2, 1, 1, 5], 4, -5, 0);
    const scale = 0.37;
    const [y] = run('MaskedSoftmax', [x, mask], { scale });
    const z = tensor('float32', x.dims);
    for (let i = 0; i < z.data.length; i++) {
      const b = Math.floor(i / 60);
      z.data[i] = x.data[i]! * scale + mask.data[b * 5 + (i % 5)]!;
    }
    expectClose(y!, run('Softmax', [z])[0]!, { rtol: 1e-12, atol: 1e-15 });
  });

  it('gives zeros for fully −∞-masked rows and a uniform row for finfo.min masks', () => {
    const x = tensor('float32', [3, 4], [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
    const min = -3.4028234663852886e38;
    const mask = tensor('float32', [3, 4], [-Infinity, -Infinity, -Infinity, -Infinity, min, min, min, min, 0, 0, -Infinity, -Infinity]);
    const [y] = run('MaskedSoftmax', [x, mask]);
    expect(Array.from(y!.data.slice(0, 4))).toEqual([0, 0, 0, 0]);
    for (const v of y!.data.slice(4, 8)) expect(v).toBeCloseTo(0.25, 12);
    expect(y!.data[8]! + y!.data[9]!).toBeCloseTo(1, 12);
    expect(y!.data[10]).toBe(0);
  });

  it('with keep and divisor is Div → Where(keep, ·, fill) → Add(·, mask) → Softmax', () => {
    const x = randomTensor([2, 3, 4, 5], 5, -3, 3);
    const mask = randomTensor([2, 1, 1, 5], 6, -5, 0);
    const keep = tensor('bool', [4, 5]);
    for (let i = 0; i < 4; i++) for (let j = 0; j < 5; j++) keep.data[i * 5 + j] = j <= i + 1 ? 1 : 0;
    const [y] = run('MaskedSoftmax', [x, mask, keep], { scale: 2, divisor: 8, fill: -10000 });
    const z = tensor('float32', x.dims);
    for (let i = 0; i < z.data.length; i++) {
      const kept = keep.data[i % 20] !== 0;
      z.data[i] = (kept ? (x.data[i]! * 2) / 8 : -10000) + mask.data[Math.floor(i / 60) * 5 + (i % 5)]!;
    }
    expectClose(y!, run('Softmax', [z])[0]!, { rtol: 1e-12, atol: 1e-15 });
    // Its backward op: SoftmaxGrad with keep and divisor is where(keep, SoftmaxGrad / divisor, 0).
    const dy = randomTensor(x.dims, 7);
    const [g] = run('SoftmaxGrad', [dy, y!], { axis: -1 });
    const [gk] = run('SoftmaxGrad', [dy, y!, keep], { axis: -1, divisor: 8 });
    for (let i = 0; i < g!.data.length; i++) expect(gk!.data[i]).toBe(keep.data[i % 20] ? g!.data[i]! / 8 : 0);
    const f32 = (dims: number[]): TensorType => ({ dtype: 'float32', dims });
    const bool = (dims: number[]): TensorType => ({ dtype: 'bool', dims });
    expect(() => ops.MaskedSoftmax.shape([f32([2, 3, 4]), f32([1]), f32([3, 4])], {}, context('MaskedSoftmax'))).toThrow(ShapeError);
    expect(() => ops.MaskedSoftmax.shape([f32([2, 3, 4]), f32([1]), bool([2, 2, 3, 4])], {}, context('MaskedSoftmax'))).toThrow(ShapeError);
    expect(() => ops.SoftmaxGrad.shape([f32([2, 3, 4]), f32([2, 3, 4]), bool([3, 4])], { axis: 1 }, context('SoftmaxGrad'))).toThrow(ShapeError);
  });

  it('rejects a mask that does not broadcast to x', () => {
    const c = context('MaskedSoftmax');
    const f = (m: number[]) => ops.MaskedSoftmax.shape([{ dtype: 'float32', dims: [2, 3, 4] }, { dtype: 'float32', dims: m }], {}, c);
    expect(() => f([3, 1])).not.toThrow();
    expect(() => f([5])).toThrow(ShapeError);
    expect(() => f([2, 2, 3, 4])).toThrow(ShapeError); // would enlarge x
  });
});

describe('SoftmaxGrad reference against finite differences', () => {
  for (const [dims, axis] of [
    [[3, 7], -1],
    [[2, 5, 3], 1],
    [[4, 1], 0],
    [[1], 0],
  ] as [number[], number][]) {
    it(`dims [${dims}] axis ${axis}`, () => {
      const x = randomTensor(dims, 10, -2, 2);
      const w = randomTensor(dims, 11);
      const f = (t: RefTensor) => dot(run('Softmax', [t], { axis })[0]!, w);
      const [y] = run('Softmax', [x], { axis });
      const [dx] = run('SoftmaxGrad', [w, y!], { axis });
      expectClose(dx!, numericGradient(f, x), FD, 'dx');
    });
  }

  it('composes into the MaskedSoftmax gradient: d/dx = scale · SoftmaxGrad(dy, y)', () => {
    const x = randomTensor([2, 3, 6], 12, -2, 2);
    const mask = randomTensor([3, 6], 13, -4, 0);
    const w = randomTensor([2, 3, 6], 14);
    const scale = 0.6;
    const f = (t: RefTensor) => dot(run('MaskedSoftmax', [t, mask], { scale })[0]!, w);
    const [y] = run('MaskedSoftmax', [x, mask], { scale });
    const [g] = run('SoftmaxGrad', [w, y!]);
    expectClose({ ...g!, data: g!.data.map((v) => v * scale) }, numericGradient(f, x), FD, 'dx');
  });
});

describe('LayerNormalization reference', () => {
  it('normalises dims[axis:] and returns Mean / InvStdDev with the reduced dims kept', () => {
    const x = tensor('float32', [2, 2], [1, 3, -2, 2]);
    const [y, mean, inv] = run('LayerNormalization', [x, tensor('float32', [2], [1, 2]), tensor('float32', [2], [0, 1])], { epsilon: 0 });
    expect(Array.from(y!.data)).toEqual([-1, 3, -1, 3]);
    expect(mean!.dims).toEqual([2, 1]);
    expect(Array.from(mean!.data)).toEqual([2, 0]);
    expect(Array.from(inv!.data)).toEqual([1, 0.5]);
    const [, m2] = run('LayerNormalization', [randomTensor([2, 3, 4], 1), randomTensor([3, 4], 2)], { axis: 1 });
    expect(m2!.dims).toEqual([2, 1, 1]);
  });

  it('validates Scale, B and stash_type', () => {
    const c = context('LayerNormalization');
    const x = { dtype: 'float32' as const, dims: [2, 3, 4] };
    const s = (dims: number[]) => ({ dtype: 'float32' as const, dims });
    expect(ops.LayerNormalization.shape([x, s([1, 4])], {}, c).map((t) => t.dims)).toEqual([[2, 3, 4], [2, 3, 1], [2, 3, 1]]);
    expect(() => ops.LayerNormalization.shape([x, s([3])], {}, c)).toThrow(ShapeError);
    expect(() => ops.LayerNormalization.shape([x, s([4]), s([5])], {}, c)).toThrow(/B of shape/);
    expect(() => ops.LayerNormalization.shape([x, s([12])], { axis: 1 }, c)).toThrow(ShapeError);
    expect(() => ops.LayerNormalization.shape([x, s([4])], { stash_type: 11 }, c)).toThrow(UnsupportedOpError);
  });
});

describe('LayerNormalizationGrad reference against finite differences', () => {
  for (const [dims, axis, sdims] of [
    [[3, 6], -1, [6]],
    [[2, 3, 4], 1, [3, 4]],
    [[5, 1], -1, [1]],
  ] as [number[], number, number[]][]) {
    it(`dims [${dims}] axis ${axis}`, () => {
      const x = randomTensor(dims, 20, -2, 2);
      const scale = randomTensor(sdims, 21, 0.5, 1.5);
      const bias = randomTensor(sdims, 22);
      const w = randomTensor(dims, 23);
      const attrs = { axis, epsilon: 1e-3 };
      const fwd = (xx: RefTensor, ss: RefTensor, bb: RefTensor) => dot(run('LayerNormalization', [xx, ss, bb], attrs)[0]!, w);
      const [, mean, inv] = run('LayerNormalization', [x, scale, bias], attrs);
      const [dx, ds, db] = run('LayerNormalizationGrad', [w, x, scale, mean!, inv!], { axis, weight_grad: 1 });
      expectClose(dx!, numericGradient((t) => fwd(t, scale, bias), x), FD, 'dX');
      expectClose(ds!, numericGradient((t) => fwd(x, t, bias), scale), FD, 'dScale');
      expectClose(db!, numericGradient((t) => fwd(x, scale, t), bias), FD, 'dBias');
      // Without weight_grad only dX comes out, and it is the same.
      const only = run('LayerNormalizationGrad', [w, x, scale, mean!, inv!], { axis });
      expect(only).toHaveLength(1);
      expect(Array.from(only[0]!.data)).toEqual(Array.from(dx!.data));
    });
  }
});

describe('SimplifiedLayerNormalization (RMSNorm) reference', () => {
  it('is x / √(mean(x²) + ε) · scale', () => {
    const [y, inv] = run('SimplifiedLayerNormalization', [tensor('float32', [1, 2], [3, 4]), tensor('float32', [2], [1, 2])], { epsilon: 0 });
    const r = Math.sqrt(12.5);
    expectClose(y!, tensor('float32', [1, 2], [3 / r, 8 / r]), { rtol: 1e-12 });
    expect(inv!.dims).toEqual([1, 1]);
    expect(inv!.data[0]).toBeCloseTo(1 / r, 12);
  });

  for (const [dims, axis, sdims] of [
    [[4, 5], -1, [5]],
    [[2, 2, 3], -2, [2, 3]],
  ] as [number[], number, number[]][]) {
    it(`grad against finite differences, dims [${dims}] axis ${axis}`, () => {
      const x = randomTensor(dims, 30, -2, 2);
      const scale = randomTensor(sdims, 31, 0.5, 1.5);
      const w = randomTensor(dims, 32);
      const attrs = { axis, epsilon: 1e-3 };
      const fwd = (xx: RefTensor, ss: RefTensor) => dot(run('SimplifiedLayerNormalization', [xx, ss], attrs)[0]!, w);
      const [, inv] = run('SimplifiedLayerNormalization', [x, scale], attrs);
      const [dx, ds] = run('SimplifiedLayerNormalizationGrad', [w, x, scale, inv!], { axis, weight_grad: 1 });
      expectClose(dx!, numericGradient((t) => fwd(t, scale), x), FD, 'dX');
      expectClose(ds!, numericGradient((t) => fwd(x, t), scale), FD, 'dScale');
    });
  }

  it('rejects InvStdDev of the wrong size', () => {
    const f = (n: number) =>
      ops.SimplifiedLayerNormalizationGrad.shape(
        [
          { dtype: 'float32', dims: [3, 4] },
          { dtype: 'float32', dims: [3, 4] },
          { dtype: 'float32', dims: [4] },
          { dtype: 'float32', dims: [n, 1] },
        ],
        { weight_grad: 1 },
        context('SimplifiedLayerNormalizationGrad'),
      );
    expect(f(3).map((t) => t.dims)).toEqual([[3, 4], [4]]);
    expect(() => f(4)).toThrow(/InvStdDev has 4 values/);
  });
});

describe('lowerings of nodes that omit optional outputs', () => {
  /** Highest output index any step binds. */
  const maxOut = (l: LoweringSteps) => Math.max(-1, ...l.steps.flatMap((s) => s.bindings.map((b) => ('out' in b ? b.out : -1))));
  const t = (...dims: number[]): TensorType => ({ dtype: 'float32', dims });
  const lower = (op: keyof typeof ops, inputs: TensorType[], attrs: Attrs, numOutputs: number) => {
    const ctx = { ...context(op), numOutputs };
    const def: OpDef = ops[op];
    if (def.gpu === 'fold') throw new Error(`${op} has no GPU lowering`);
    return def.gpu(inputs, def.shape(inputs, attrs, ctx), attrs, ctx) as LoweringSteps;
  };

  it('bind only the outputs the node declares', () => {
    for (let n = 1; n <= 3; n++) {
      expect(maxOut(lower('LayerNormalization', [t(4, 8), t(8), t(8)], {}, n))).toBe(n - 1);
      expect(maxOut(lower('LayerNormalizationGrad', [t(4, 8), t(4, 8), t(8), t(4, 1), t(4, 1)], { weight_grad: 1 }, n))).toBe(n - 1);
    }
    for (let n = 1; n <= 2; n++) {
      expect(maxOut(lower('SimplifiedLayerNormalization', [t(4, 7), t(7)], {}, n))).toBe(n - 1);
      expect(maxOut(lower('SimplifiedLayerNormalizationGrad', [t(4, 7), t(4, 7), t(7), t(4, 1)], { weight_grad: 1 }, n))).toBe(n - 1);
    }
    // Without numOutputs (a test or a full node) every output is written.
    const full = ops.LayerNormalization.gpu([t(4, 8), t(8)], [], {}, context('LayerNormalization')) as LoweringSteps;
    expect(maxOut(full)).toBe(2);
  });
});
