// Reductions on the CPU: ONNX semantics of the reference (axes by opset, keepdims,
// noop_with_empty_axes, empty reductions, ArgMax ties, CumSum modes), the pass planner, shape
// errors, SumToShape against finite differences of broadcasting, and the WGSL opcode tables.
import { describe, expect, it } from 'vitest';
import scanWgsl from '../../shaders/reduce-scan.wgsl?raw';
import reduceWgsl from '../../shaders/reduce.wgsl?raw';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { DataType } from '../../src/ir/dtype.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor, type ValueInfo } from '../../src/ir/tensor.js';
import { elementwiseOps } from '../../src/ops/elementwise.js';
import { context, runReference } from '../../src/ops/execute.js';
import { planReduce, RED_OP, reduceOps, SCAN_OP } from '../../src/ops/reduce.js';
import { dot, expectClose, numericGradient, randomTensor } from '../util/tensors.js';

type Op = keyof typeof reduceOps;

function ref(op: Op, inputs: (RefTensor | undefined)[], attrs: Attrs = {}, opset = 18): RefTensor {
  return runReference(reduceOps[op], inputs, attrs, context(op, `${op}_node`, opset))[0]!;
}

const t = (dtype: DataType, dims: number[], data: number[]): RefTensor => tensor(dtype, dims, data);
const axes = (a: number[]): RefTensor => t('int64', [a.length], a);
// x = [[1, 2, 3], [4, 5, 6]]
const x23 = t('float32', [2, 3], [1, 2, 3, 4, 5, 6]);
const values = (r: RefTensor): number[] => Array.from(r.data);

describe('opcode tables', () => {
  it('match the const tables of shaders/reduce.wgsl and shaders/reduce-scan.wgsl', () => {
    for (const [src, table] of [
      [reduceWgsl, RED_OP],
      [scanWgsl, SCAN_OP],
    ] as [string, Record<string, number>][]) {
      const consts = new Map<string, number>();
      for (const m of src.matchAll(/^const ([A-Z0-9_]+) = (\d+)u;$/gm)) consts.set(m[1]!, Number(m[2]));
      for (const [name, code] of Object.entries(table)) expect(consts.get(name), name).toBe(code);
    }
  });
});

describe('Reduce* reference semantics', () => {
  it('reduces the listed axes, keeping them as 1s by default', () => {
    const s = ref('ReduceSum', [x23, axes([1])]);
    expect(s.dims).toEqual([2, 1]);
    expect(values(s)).toEqual([6, 15]);
    expect(values(ref('ReduceMean', [x23, axes([0])], { keepdims: 0 }))).toEqual([2.5, 3.5, 4.5]);
    expect(values(ref('ReduceMax', [x23, axes([-1])]))).toEqual([3, 6]);
    expect(values(ref('ReduceMin', [x23, axes([0])]))).toEqual([1, 2, 3]);
    expect(values(ref('ReduceProd', [x23, axes([1])]))).toEqual([6, 120]);
    expect(values(ref('ReduceSumSquare', [x23, axes([1])]))).toEqual([14, 77]);
  });

  it('reduces everything when axes are omitted or empty', () => {
    const all = ref('ReduceSum', [x23], {}, 13);
    expect(all.dims).toEqual([1, 1]);
    expect(values(all)).toEqual([21]);
    expect(ref('ReduceMean', [x23, axes([])], { keepdims: 0 }).dims).toEqual([]);
    expect(values(ref('ReduceMax', [x23], { axes: [] }, 13))).toEqual([6]);
  });

  it('passes the input through with noop_with_empty_axes (SumSquare squares it)', () => {
    expect(values(ref('ReduceSum', [x23, axes([])], { noop_with_empty_axes: 1 }, 13))).toEqual(values(x23));
    expect(values(ref('ReduceMean', [x23], { noop_with_empty_axes: 1 }))).toEqual(values(x23));
    expect(values(ref('ReduceSumSquare', [x23, axes([])], { noop_with_empty_axes: 1 }))).toEqual([1, 4, 9, 16, 25, 36]);
    // With axes given, the flag changes nothing.
    expect(values(ref('ReduceSum', [x23, axes([0])], { noop_with_empty_axes: 1 }, 13))).toEqual([5, 7, 9]);
  });

  it('takes axes from an attribute or an input depending on the opset', () => {
    expect(values(ref('ReduceSum', [x23], { axes: [1] }, 11))).toEqual([6, 15]);
    expect(values(ref('ReduceMean', [x23], { axes: [1] }, 17))).toEqual([2, 5]);
    expect(() => ref('ReduceSum', [x23], { axes: [1] }, 13)).toThrow(/input from opset 13/);
    expect(() => ref('ReduceMean', [x23], { axes: [1] }, 18)).toThrow(/input from opset 18/);
    expect(() => ref('ReduceMean', [x23, axes([1])], {}, 17)).toThrow(/attribute before opset 18/);
    const info: ValueInfo = { dtype: 'int64', dims: [1] };
    expect(() => reduceOps.ReduceSum.shape([x23, info], {}, context('ReduceSum', 'n', 13))).toThrow(UnsupportedOpError);
  });

  it('rejects bad axes and dtypes, naming the node', () => {
    expect(() => ref('ReduceSum', [x23, axes([2])])).toThrow(ShapeError);
    expect(() => ref('ReduceSum', [x23, axes([1, -1])])).toThrow(/listed twice/);
    expect(() => ref('ReduceSum', [x23, axes([5])])).toThrow(/ReduceSum node 'ReduceSum_node'/);
    expect(() => ref('ReduceSum', [t('bool', [2], [1, 0])])).toThrow(ShapeError);
    expect(() => ref('ReduceSum', [t('uint8', [2], [1, 0])])).toThrow(UnsupportedOpError);
    expect(() => ref('ReduceSum', [x23, t('float32', [1], [0])])).toThrow(/expected int64/);
  });

  it('gives the identity for empty reductions and truncates integer means', () => {
    const empty = t('float32', [2, 0], []);
    expect(values(ref('ReduceSum', [empty, axes([1])]))).toEqual([0, 0]);
    expect(values(ref('ReduceMax', [empty, axes([1])]))).toEqual([-Infinity, -Infinity]);
    expect(values(ref('ReduceMin', [empty, axes([1])]))).toEqual([Infinity, Infinity]);
    expect(values(ref('ReduceProd', [empty, axes([1])]))).toEqual([1, 1]);
    expect(values(ref('ReduceMean', [t('int64', [3], [1, 2, 2]), axes([0])]))).toEqual([1]);
    expect(values(ref('ReduceMean', [t('int64', [3], [-1, -2, -2]), axes([0])]))).toEqual([-1]);
    expect(values(ref('ReduceSum', [t('int32', [2], [2 ** 31 - 1, 1]), axes([0])]))).toEqual([-(2 ** 31)]);
  });
});

describe('pass planning', () => {
  it('coalesces adjacent reduced dims into one pass and drops dims of 1', () => {
    expect(planReduce([2, 3, 4, 5], [false, true, true, false], 'sum', true)).toEqual([
      { outer: 2, R: 12, inner: 5, chunks: 1, op: 'SUM_F', denom: 1 },
    ]);
    expect(planReduce([4, 1, 6], [true, true, false], 'max', false)).toEqual([
      { outer: 1, R: 4, inner: 6, chunks: 1, op: 'MAX_I', denom: 1 },
    ]);
  });

  it('reduces scattered axes run by run, innermost first; Mean divides last, SumSquare squares first', () => {
    const mean = planReduce([2, 3, 4, 5], [false, true, false, true], 'mean', true);
    expect(mean.map((p) => [p.outer, p.R, p.inner, p.op, p.denom])).toEqual([
      [24, 5, 1, 'SUM_F', 1],
      [2, 3, 4, 'SUM_F', 15],
    ]);
    const sq = planReduce([2, 3, 4, 5], [true, false, true, false], 'sumsq', true);
    expect(sq.map((p) => p.op)).toEqual(['SUMSQ_F', 'SUM_F']);
  });

  it('splits a long run with few outputs, and plans nothing (or a squaring pass) when no axis reduces', () => {
    const split = planReduce([3, 5003], [false, true], 'sum', true);
    expect(split.length).toBe(2);
    expect(split[0]!.chunks).toBeGreaterThan(1);
    expect(split[1]!.R).toBe(split[0]!.chunks);
    expect(planReduce([3, 5003], [false, true], 'sum', true, { noSplit: true }).length).toBe(1);
    expect(planReduce([3, 1], [false, true], 'sum', true)).toEqual([]);
    expect(planReduce([3, 1], [false, true], 'sumsq', true)).toEqual([{ outer: 3, R: 1, inner: 1, chunks: 1, op: 'SUMSQ_F', denom: 1 }]);
  });
});

describe('ArgMax', () => {
  it('returns int64 indices; ties give the first index, or the last with select_last_index', () => {
    const x = t('float32', [2, 4], [1, 3, 3, 0, 5, 5, 5, 5]);
    const first = ref('ArgMax', [x], { axis: 1 }, 13);
    expect(first.dtype).toBe('int64');
    expect(first.dims).toEqual([2, 1]);
    expect(values(first)).toEqual([1, 0]);
    expect(values(ref('ArgMax', [x], { axis: 1, select_last_index: 1 }, 13))).toEqual([2, 3]);
    expect(ref('ArgMax', [x], { axis: 0, keepdims: 0 }, 13).dims).toEqual([4]);
    expect(values(ref('ArgMax', [x], { axis: 0, keepdims: 0 }, 13))).toEqual([1, 1, 1, 1]);
    expect(values(ref('ArgMax', [t('float32', [2], [-Infinity, -Infinity])], {}, 13))).toEqual([0]);
    expect(() => ref('ArgMax', [t('float32', [2, 0], [])], { axis: 1 }, 13)).toThrow(/length 0/);
    expect(() => ref('ArgMax', [x], { axis: 2 }, 13)).toThrow(ShapeError);
  });
});

describe('CumSum', () => {
  const x = t('float32', [4], [1, 2, 3, 4]);
  const axis0 = t('int64', [], [0]);
  it('inclusive, exclusive, reverse and both, as in the ONNX examples', () => {
    expect(values(ref('CumSum', [x, axis0], {}, 14))).toEqual([1, 3, 6, 10]);
    expect(values(ref('CumSum', [x, axis0], { exclusive: 1 }, 14))).toEqual([0, 1, 3, 6]);
    expect(values(ref('CumSum', [x, axis0], { reverse: 1 }, 14))).toEqual([10, 9, 7, 4]);
    expect(values(ref('CumSum', [x, axis0], { exclusive: 1, reverse: 1 }, 14))).toEqual([9, 7, 4, 0]);
  });

  it('scans the given axis of a matrix, negative axes included', () => {
    expect(values(ref('CumSum', [x23, t('int32', [1], [-1])], {}, 14))).toEqual([1, 3, 6, 4, 9, 15]);
    expect(values(ref('CumSum', [x23, t('int64', [], [0])], {}, 14))).toEqual([1, 2, 3, 5, 7, 9]);
    expect(() => ref('CumSum', [x23, t('int64', [2], [0, 1])], {}, 14)).toThrow(/scalar/);
    expect(() => ref('CumSum', [x23, t('int64', [], [2])], {}, 14)).toThrow(ShapeError);
    // The lowering needs the axis at compile time.
    const info: ValueInfo = { dtype: 'int64', dims: [] };
    const lower = reduceOps.CumSum.gpu;
    expect(lower).not.toBe('fold');
    if (lower !== 'fold') expect(() => lower([x23, info], [x23], {}, context('CumSum'))).toThrow(UnsupportedOpError);
  });
});

describe('SumToShape', () => {
  it('is the adjoint of broadcasting: matches finite differences of Σ w · broadcast(y)', () => {
    for (const [shape, out] of [
      [[3, 1], [2, 3, 4]],
      [[4], [2, 3, 4]],
      [[1, 1], [3, 5]],
      [[], [3, 2]],
      [[6, 1, 7], [6, 5, 7]],
    ] as [number[], number[]][]) {
      const y = randomTensor(shape, 1);
      const w = randomTensor(out, 2);
      const zeros = tensor('float32', out);
      const broadcast = (v: RefTensor): RefTensor => runReference(elementwiseOps.Add, [v, zeros], {}, context('Add'))[0]!;
      const numeric = numericGradient((v) => dot(broadcast(v), w), y);
      const analytic = ref('SumToShape', [w], { shape }, 1);
      expect(analytic.dims).toEqual(shape);
      expectClose(analytic, numeric, { rtol: 1e-6, atol: 1e-8 }, `SumToShape [${out}] → [${shape}]`);
    }
  });

  it('rejects targets that do not broadcast to the input', () => {
    expect(() => ref('SumToShape', [x23], { shape: [2] }, 1)).toThrow(ShapeError);
    expect(() => ref('SumToShape', [x23], { shape: [1, 2, 3] }, 1)).toThrow(/not a broadcast/);
    expect(() => ref('SumToShape', [x23], {}, 1)).toThrow(/shape/);
    expect(values(ref('SumToShape', [x23], { shape: [2, 3] }, 1))).toEqual(values(x23));
  });
});
