// Test helpers: seeded random tensors, closeness checks that name the worst element, and
// central finite differences in float64.
import { expect } from 'vitest';
import type { DataType } from '../../src/ir/dtype.js';
import { sizeOf, tensor, type RefTensor } from '../../src/ir/tensor.js';
import { mulberry32 } from '../../src/train/data.js';

/** Seeded floats in [0, 1): the trainer's mulberry32, so tests and training share one PRNG. */
export const rng = mulberry32;

/** Uniform random floats in [lo, hi), rounded to float32 so CPU and GPU see the same inputs. */
export function randomTensor(dims: readonly number[], seed: number, lo = -1, hi = 1, dtype: DataType = 'float32'): RefTensor {
  const r = rng(seed);
  const t = tensor(dtype, dims);
  for (let i = 0; i < t.data.length; i++) t.data[i] = Math.fround(lo + (hi - lo) * r());
  return t;
}

/** Random integers in [lo, hi). */
export function randomInts(dims: readonly number[], seed: number, lo: number, hi: number, dtype: DataType = 'int64'): RefTensor {
  const r = rng(seed);
  const t = tensor(dtype, dims);
  for (let i = 0; i < t.data.length; i++) t.data[i] = lo + Math.floor((hi - lo) * r());
  return t;
}

export interface Tolerance {
  rtol?: number;
  atol?: number;
}

/** Max |a-b| / (atol + rtol·|b|) over elements, with the worst index; ≤ 1 means close. */
export function closeness(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance = {}) {
  const rtol = tol.rtol ?? 1e-4;
  const atol = tol.atol ?? 1e-5;
  let worst = 0;
  let at = -1;
  let maxAbs = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const b = expected[i]!;
    const err = Math.abs(a - b);
    const score =
      a === b || (Number.isNaN(a) && Number.isNaN(b))
        ? 0
        : Number.isNaN(a) || Number.isNaN(b) || !Number.isFinite(err)
          ? Infinity
          : err / (atol + rtol * Math.abs(b));
    if (!(score <= worst)) {
      worst = score;
      at = i;
    }
    if (err > maxAbs) maxAbs = err;
  }
  return { worst, at, maxAbs };
}

/** ‖got − want‖₂ / ‖want‖₂ (a vector's relative error, for gradients). */
export function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i]! - want[i]!) ** 2;
    den += want[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

export function expectClose(actual: RefTensor, expected: RefTensor, tol: Tolerance = {}, what = 'tensor'): void {
  expect(actual.dims, `${what}: dims`).toEqual(expected.dims);
  expect(actual.data.length, `${what}: length`).toBe(sizeOf(expected.dims));
  const { worst, at, maxAbs } = closeness(actual.data, expected.data, tol);
  if (worst > 1) {
    expect.fail(
      `${what}: element ${at} is ${actual.data[at]}, expected ${expected.data[at]} ` +
        `(max abs err ${maxAbs.toExponential(3)}, rtol ${tol.rtol ?? 1e-4}, atol ${tol.atol ?? 1e-5})`,
    );
  }
}

/**
 * Central finite differences of a scalar function of one tensor, in float64:
 * d f / d x[i] ≈ (f(x + h e_i) - f(x - h e_i)) / 2h.
 */
export function numericGradient(f: (x: RefTensor) => number, x: RefTensor, h = 1e-6): RefTensor {
  const g = tensor(x.dtype, x.dims);
  const probe = { ...x, data: x.data.slice() };
  for (let i = 0; i < x.data.length; i++) {
    const v = probe.data[i]!;
    probe.data[i] = v + h;
    const fp = f(probe);
    probe.data[i] = v - h;
    const fm = f(probe);
    probe.data[i] = v;
    g.data[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** Σ w·t: the scalar a gradient check differentiates (w random so every output matters). */
export function dot(t: RefTensor, w: RefTensor): number {
  let s = 0;
  for (let i = 0; i < t.data.length; i++) s += t.data[i]! * w.data[i]!;
  return s;
}
