// Float64 reference of the rotary embedding: the Hugging Face (rotate_half) and GPT-J (interleaved)
// formulas written out independently, broadcasting of cos/sin, shape errors, and the gradient
// against finite differences.
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import type { Attrs } from '../../src/ir/graph.js';
import { tensor, type RefTensor } from '../../src/ir/tensor.js';
import { context, runReference } from '../../src/ops/execute.js';
import { rotaryOps as ops } from '../../src/ops/rotary.js';
import { dot, expectClose, numericGradient, randomTensor } from '../util/tensors.js';

function run(op: keyof typeof ops, inputs: RefTensor[], attrs: Attrs = {}): RefTensor[] {
  return runReference(ops[op], inputs, attrs, context(op, `test_${op}`));
}

/** HF-style caches for positions 0..t-1: [t, d], each half (or each pair) sharing one angle. */
function caches(t: number, d: number, interleaved: boolean): [RefTensor, RefTensor] {
  const cos = tensor('float32', [t, d]);
  const sin = tensor('float32', [t, d]);
  for (let p = 0; p < t; p++) {
    for (let j = 0; j < d; j++) {
      const k = interleaved ? Math.floor(j / 2) : j % (d / 2);
      const a = p * 10000 ** (-(2 * k) / d);
      cos.data[p * d + j] = Math.cos(a);
      sin.data[p * d + j] = Math.sin(a);
    }
  }
  return [cos, sin];
}

describe('RotaryEmbedding reference', () => {
  it('is x·cos + rotate_half(x)·sin with rotate_half = concat(−x2, x1)', () => {
    const [b, h, t, d] = [2, 3, 4, 6];
    const x = randomTensor([b, h, t, d], 1);
    const [cos, sin] = caches(t, d, false);
    const [y] = run('RotaryEmbedding', [x, cos, sin]);
    for (let r = 0; r < b * h * t; r++) {
      const p = r % t;
      const row = Array.from(x.data.slice(r * d, r * d + d));
      const rot = [...row.slice(d / 2).map((v) => -v), ...row.slice(0, d / 2)];
      for (let j = 0; j < d; j++) {
        expect(y!.data[r * d + j]).toBeCloseTo(row[j]! * cos.data[p * d + j]! + rot[j]! * sin.data[p * d + j]!, 12);
      }
    }
  });

  it('rotates adjacent pairs when interleaved (GPT-J)', () => {
    const [t, d] = [3, 4];
    const x = randomTensor([1, 2, t, d], 2);
    const [cos, sin] = caches(t, d, true);
    const [y] = run('RotaryEmbedding', [x, cos, sin], { interleaved: 1 });
    for (let r = 0; r < 2 * t; r++) {
      const p = r % t;
      for (let k = 0; k < d / 2; k++) {
        const [x0, x1] = [x.data[r * d + 2 * k]!, x.data[r * d + 2 * k + 1]!];
        const a = p * 10000 ** (-(2 * k) / d);
        expect(y!.data[r * d + 2 * k]).toBeCloseTo(x0 * Math.cos(a) - x1 * Math.sin(a), 6);
        expect(y!.data[r * d + 2 * k + 1]).toBeCloseTo(x1 * Math.cos(a) + x0 * Math.sin(a), 6);
      }
    }
  });

  it('preserves each pair’s norm (a rotation) and broadcasts [B, 1, T, D] caches like [T, D]', () => {
    const x = randomTensor([2, 3, 5, 8], 3);
    const [cos, sin] = caches(5, 8, false);
    const [y] = run('RotaryEmbedding', [x, cos, sin]);
    let nx = 0;
    let ny = 0;
    for (let i = 0; i < x.data.length; i++) {
      nx += x.data[i]! ** 2;
      ny += y!.data[i]! ** 2;
    }
    expect(ny).toBeCloseTo(nx, 5);
    const rep = (c: RefTensor) => {
      const out = tensor('float32', [2, 1, 5, 8]);
      out.data.set(c.data, 0);
      out.data.set(c.data, 40);
      return out;
    };
    expectClose(run('RotaryEmbedding', [x, rep(cos), rep(sin)])[0]!, y!, { rtol: 1e-15, atol: 0 });
  });

  it('rejects an odd last dim, caches that do not broadcast to x, and bad attributes', () => {
    const c = context('RotaryEmbedding');
    const f = (x: number[], cs: number[], attrs: Attrs = {}) =>
      ops.RotaryEmbedding.shape(
        [
          { dtype: 'float32', dims: x },
          { dtype: 'float32', dims: cs },
          { dtype: 'float32', dims: cs },
        ],
        attrs,
        c,
      );
    expect(f([1, 2, 3, 4], [3, 4])[0]!.dims).toEqual([1, 2, 3, 4]);
    expect(f([1, 2, 3, 4], [3, 1])[0]!.dims).toEqual([1, 2, 3, 4]);
    expect(() => f([1, 2, 3, 5], [3, 5])).toThrow(/must be even/);
    expect(() => f([1, 2, 3, 4], [4, 4])).toThrow(ShapeError);
    expect(() => f([2, 3, 4], [2, 2, 3, 4])).toThrow(ShapeError);
    expect(() => f([1, 2, 3, 4], [3, 4], { interleaved: 2 })).toThrow(UnsupportedOpError);
  });
});

describe('RotaryEmbeddingGrad reference against finite differences', () => {
  for (const [xd, cd, inter] of [
    [[2, 3, 4, 6], [4, 6], 0],
    [[2, 3, 4, 6], [4, 6], 1],
    [[2, 2, 3, 4], [2, 1, 3, 4], 0],
    [[1, 2, 3, 8], [1, 1, 3, 1], 1],
    [[3, 2], [3, 2], 0],
  ] as [number[], number[], number][]) {
    it(`x [${xd}], cos/sin [${cd}], interleaved ${inter}`, () => {
      const x = randomTensor(xd, 50);
      // Independent random cos and sin (not a rotation) so every index pairing is exercised.
      const cos = randomTensor(cd, 51);
      const sin = randomTensor(cd, 52);
      const w = randomTensor(xd, 53);
      const attrs = { interleaved: inter };
      const f = (t: RefTensor) => dot(run('RotaryEmbedding', [t, cos, sin], attrs)[0]!, w);
      const [dx] = run('RotaryEmbeddingGrad', [w, cos, sin], attrs);
      expectClose(dx!, numericGradient(f, x), { rtol: 1e-6, atol: 1e-8 }, 'dx');
    });
  }
});
