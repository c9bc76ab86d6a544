// Learning-rate schedules against values computed by hand from transformers' formulas
// (optimization.py), at the boundaries where an off-by-one would show: step 0, the last warmup
// step, the end of warmup, totalSteps and past it; plus warmup from a ratio and every bad input.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { learningRateAt, warmupStepsFrom, type ScheduleName } from '../../src/train/schedule.js';

const lr = (name: ScheduleName, step: number, warmupSteps: number, totalSteps: number, baseLr = 1) =>
  learningRateAt(step, { name, baseLr, warmupSteps, totalSteps });

describe('learningRateAt', () => {
  it('linear: ramps from 0 over warmup, then decays to 0 at totalSteps and stays there', () => {
    // warmup 4, total 12: ramp 0, 1/4, 2/4, 3/4; then (12 − s) / 8.
    expect([0, 1, 2, 3].map((s) => lr('linear', s, 4, 12, 2))).toEqual([0, 0.5, 1, 1.5]);
    expect(lr('linear', 4, 4, 12, 2)).toBe(2);
    expect(lr('linear', 5, 4, 12, 2)).toBe(2 * (7 / 8));
    expect(lr('linear', 11, 4, 12, 2)).toBe(2 * (1 / 8));
    expect(lr('linear', 12, 4, 12, 2)).toBe(0);
    expect(lr('linear', 20, 4, 12, 2)).toBe(0);
  });

  it('linear without warmup starts at the full rate (the first step uses λ(0))', () => {
    expect(lr('linear', 0, 0, 10, 3e-3)).toBe(3e-3);
    expect(lr('linear', 5, 0, 10)).toBe(0.5);
    expect(lr('linear', 9, 0, 10)).toBeCloseTo(0.1, 15);
  });

  it('linear with totalSteps ≤ warmupSteps divides by max(1, ·) as HF does', () => {
    // total − warmup = −2 → divisor 1; after warmup λ = max(0, total − step) = 0.
    expect(lr('linear', 3, 5, 3)).toBe(3 / 5);
    expect(lr('linear', 5, 5, 3)).toBe(0);
  });

  it('cosine: half a period from 1 at the end of warmup to 0 at totalSteps, rising past it', () => {
    // warmup 2, total 10 → progress = (s − 2) / 8.
    expect(lr('cosine', 0, 2, 10)).toBe(0);
    expect(lr('cosine', 1, 2, 10)).toBe(0.5);
    expect(lr('cosine', 2, 2, 10)).toBe(1);
    expect(lr('cosine', 4, 2, 10)).toBeCloseTo(0.5 * (1 + Math.SQRT1_2), 15); // cos(π/4)
    expect(lr('cosine', 6, 2, 10)).toBeCloseTo(0.5, 15); // cos(π/2)
    expect(lr('cosine', 8, 2, 10)).toBeCloseTo(0.5 * (1 - Math.SQRT1_2), 15);
    expect(lr('cosine', 10, 2, 10)).toBe(0); // cos(π) = −1 exactly in float64
    // HF does not clamp progress: at progress 1.5 the cosine term is cos(1.5π) ≈ 0 → λ ≈ 0.5.
    expect(lr('cosine', 14, 2, 10)).toBeCloseTo(0.5, 12);
  });

  it('constant ignores warmup; constant_with_warmup ramps then holds', () => {
    expect([0, 1, 100].map((s) => lr('constant', s, 5, 10, 0.25))).toEqual([0.25, 0.25, 0.25]);
    expect([0, 1, 2, 3, 4, 50].map((s) => lr('constant_with_warmup', s, 4, 10))).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
    expect(lr('constant_with_warmup', 0, 0, 10, 7)).toBe(7);
  });

  it('baseLr 0 gives 0 everywhere', () => {
    expect(lr('cosine', 3, 2, 10, 0)).toBe(0);
  });

  it('rejects bad inputs with an InputError naming the field', () => {
    const ok = { name: 'linear' as const, baseLr: 1, warmupSteps: 2, totalSteps: 10 };
    const cases: [number, object, RegExp][] = [
      [-1, ok, /step/],
      [1.5, ok, /step/],
      [Number.NaN, ok, /step/],
      [0, { ...ok, warmupSteps: -1 }, /warmupSteps/],
      [0, { ...ok, warmupSteps: 0.5 }, /warmupSteps/],
      [0, { ...ok, totalSteps: Infinity }, /totalSteps/],
      [0, { ...ok, baseLr: -1e-3 }, /baseLr/],
      [0, { ...ok, baseLr: Number.NaN }, /baseLr/],
      [0, { ...ok, name: 'polynomial' }, /name.*polynomial/],
    ];
    for (const [step, opts, msg] of cases) {
      expect(() => learningRateAt(step, opts as Parameters<typeof learningRateAt>[1])).toThrow(InputError);
      expect(() => learningRateAt(step, opts as Parameters<typeof learningRateAt>[1])).toThrow(msg);
    }
  });
});

describe('warmupStepsFrom', () => {
  it('is ceil(ratio · total), with HF’s floating-point rounding', () => {
    expect(warmupStepsFrom(0, 100)).toBe(0);
    expect(warmupStepsFrom(0.06, 100)).toBe(6);
    expect(warmupStepsFrom(0.05, 30)).toBe(2); // 1.5 → 2
    expect(warmupStepsFrom(1, 7)).toBe(7);
    expect(warmupStepsFrom(0.5, 0)).toBe(0);
    // 0.07 · 100 = 7.000000000000001 in float64; Python's math.ceil(100 * 0.07) is 8 as well.
    expect(warmupStepsFrom(0.07, 100)).toBe(8);
  });

  it('rejects a ratio outside [0, 1] and a bad total', () => {
    expect(() => warmupStepsFrom(-0.1, 10)).toThrow(/ratio/);
    expect(() => warmupStepsFrom(1.5, 10)).toThrow(/ratio/);
    expect(() => warmupStepsFrom(Number.NaN, 10)).toThrow(InputError);
    expect(() => warmupStepsFrom(0.1, -1)).toThrow(/totalSteps/);
    expect(() => warmupStepsFrom(0.1, 2.5)).toThrow(InputError);
  });
});
