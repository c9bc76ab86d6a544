// Float64 reference of the fused cross-entropy: values against a direct formula, ignored and
// all-ignored positions, V = 1, typed errors, and the gradient against finite differences.
import { describe, expect, it } from 'vitest';
import { InputError, ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { context, runReference } from '../../src/ops/execute.js';
import { lossOps as ops } from '../../src/ops/loss.js';
import type { LoweringSteps } from '../../src/ops/types.js';
import { expectClose, numericGradient, randomInts, randomTensor } from '../util/tensors.js';

function run(op: keyof typeof ops, inputs: RefTensor[], attrs: Attrs = {}): RefTensor[] {
  return runReference(ops[op], inputs, attrs, context(op, `test_${op}`));
}

/** −log softmax(row)[label], directly. */
function nll(row: number[], label: number): number {
  const s = row.reduce((a, z) => a + Math.exp(z), 0);
  return Math.log(s) - row[label]!;
}

describe('CrossEntropyLoss reference', () => {
  it('averages −log p(label) over the positions that count', () => {
    const logits = tensor('float32', [2, 2, 3], [1, 2, 3, 0, 0, 0, -1, 5, 2, 3, 3, -3]);
    const labels = tensor('int64', [2, 2], [2, -100, 1, 0]);
    const [loss, count] = run('CrossEntropyLoss', [logits, labels]);
    const expected = (nll([1, 2, 3], 2) + nll([-1, 5, 2], 1) + nll([3, 3, -3], 0)) / 3;
    expect(loss!.dims).toEqual([]);
    expect(loss!.data[0]).toBeCloseTo(expected, 12);
    expect(count!.dims).toEqual([]);
    expect(count!.data[0]).toBe(3);
    const [sum] = run('CrossEntropyLoss', [logits, labels], { reduction: 'sum' });
    expect(sum!.data[0]).toBeCloseTo(expected * 3, 12);
    // ignore_index takes precedence even inside [0, V); -100 is then an ordinary, invalid label.
    expect(() => run('CrossEntropyLoss', [logits, labels], { ignore_index: 0 })).toThrow(InputError);
    const [other, n] = run('CrossEntropyLoss', [logits, tensor('int64', [2, 2], [2, 2, 1, 0])], { ignore_index: 2 });
    expect(other!.data[0]).toBeCloseTo((nll([-1, 5, 2], 1) + nll([3, 3, -3], 0)) / 2, 12);
    expect(n!.data[0]).toBe(2);
  });

  it('gives loss 0 and count 0 when every position is ignored', () => {
    const [loss, count] = run('CrossEntropyLoss', [randomTensor([3, 4], 1), tensor('int64', [3], [-100, -100, -100])]);
    expect(loss!.data[0]).toBe(0);
    expect(count!.data[0]).toBe(0);
  });

  it('is 0 for a vocabulary of one', () => {
    const [loss, count] = run('CrossEntropyLoss', [randomTensor([4, 1], 2, -5, 5), tensor('int64', [4], [0, 0, -100, 0])]);
    expect(loss!.data[0]).toBeCloseTo(0, 15);
    expect(count!.data[0]).toBe(3);
  });

  it('stays finite for large logits (max-subtracted log-sum-exp)', () => {
    const [loss] = run('CrossEntropyLoss', [tensor('float32', [1, 3], [1000, 1001, 999]), tensor('int64', [1], [1])]);
    expect(loss!.data[0]).toBeCloseTo(nll([0, 1, -1], 1), 12);
  });
});

describe('CrossEntropyLoss typed errors', () => {
  it('names the position of an out-of-range label', () => {
    const labels = tensor('int64', [2, 3], [0, 1, 2, 3, -100, 7]);
    const err = (() => {
      try {
        run('CrossEntropyLoss', [randomTensor([2, 3, 5], 3), labels]);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/label 7 at position \[1,2\] is outside \[0, 5\)/);
    expect(() => run('CrossEntropyLoss', [randomTensor([2, 3], 3), tensor('int64', [2], [-1, 0])])).toThrow(InputError);
    expect(() => run('CrossEntropyLossGrad', [tensor('float32', [], [1]), randomTensor([2, 3], 3), tensor('int64', [2], [3, 0])])).toThrow(
      InputError,
    );
  });

  it('rejects mismatched shapes, float labels, bad attributes and a non-scalar dloss', () => {
    const c = context('CrossEntropyLoss');
    const logits = { dtype: 'float32' as const, dims: [2, 3, 5] };
    expect(ops.CrossEntropyLoss.shape([logits, { dtype: 'int64', dims: [2, 3] }], {}, c).map((t) => t.dims)).toEqual([[], []]);
    expect(() => ops.CrossEntropyLoss.shape([logits, { dtype: 'int64', dims: [6] }], {}, c)).toThrow(ShapeError);
    expect(() => ops.CrossEntropyLoss.shape([logits, { dtype: 'float32', dims: [2, 3] }], {}, c)).toThrow(/integer/);
    expect(() => ops.CrossEntropyLoss.shape([logits, { dtype: 'int64', dims: [2, 3] }], { reduction: 'none' }, c)).toThrow(
      UnsupportedOpError,
    );
    expect(() =>
      ops.CrossEntropyLossGrad.shape(
        [{ dtype: 'float32', dims: [2] }, logits, { dtype: 'int64', dims: [2, 3] }],
        {},
        context('CrossEntropyLossGrad'),
      ),
    ).toThrow(/dloss must be a scalar/);
  });
});

describe('CrossEntropyLossGrad reference against finite differences', () => {
  for (const [dims, reduction, ignored] of [
    [[3, 5], 'mean', 0],
    [[2, 3, 4], 'mean', 2],
    [[2, 3, 4], 'sum', 1],
    [[4, 1], 'mean', 1],
    [[3, 6], 'mean', 3],
  ] as [number[], string, number][]) {
    it(`logits [${dims}], ${reduction}, ${ignored} ignored`, () => {
      const logits = randomTensor(dims, 40, -3, 3);
      const v = dims[dims.length - 1]!;
      const labels = randomInts(dims.slice(0, -1), 41, 0, v);
      for (let i = 0; i < ignored; i++) labels.data[i] = -100;
      const attrs = { reduction };
      const dloss = 1.7;
      const f = (t: RefTensor) => dloss * run('CrossEntropyLoss', [t, labels], attrs)[0]!.data[0]!;
      const [g] = run('CrossEntropyLossGrad', [tensor('float32', [], [dloss]), logits, labels], attrs);
      expectClose(g!, numericGradient(f, logits), { rtol: 1e-5, atol: 1e-8 }, 'dlogits');
      // Rows that do not count get exactly zero.
      for (let r = 0; r < ignored; r++) for (let j = 0; j < v; j++) expect(g!.data[r * v + j]).toBe(0);
    });
  }
});

describe('CrossEntropyLoss lowering', () => {
  it('binds the count output only when the node declares it', () => {
    const inputs = [
      { dtype: 'float32' as const, dims: [2, 3, 5] },
      { dtype: 'int64' as const, dims: [2, 3] },
    ];
    for (const n of [1, 2]) {
      const ctx = { ...context('CrossEntropyLoss'), numOutputs: n };
      const l = ops.CrossEntropyLoss.gpu(inputs, ops.CrossEntropyLoss.shape(inputs, {}, ctx), {}, ctx) as LoweringSteps;
      const outs = l.steps.flatMap((s) => s.bindings.flatMap((b) => ('out' in b ? [b.out] : [])));
      expect(Math.max(...outs)).toBe(n - 1);
    }
  });
});
