// The optimizer references on the CPU: AdamW against torch's formula worked by hand for two steps,
// clip_grad_norm_ semantics, and the uniforms the GPU programs carry.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.js';
import { adamwProgram, adamwReference, clipReference, gradNormPrograms } from '../../src/ops/optim.js';

describe('adamwReference', () => {
  it('follows torch.optim.AdamW for two steps (worked by hand)', () => {
    // p0 = 0.5, grads 0.2 then -0.4, lr 0.1, weight decay 0.01, β = (0.9, 0.999), ε = 1e-8.
    // Step 1: p = 0.5·(1 − 0.001) = 0.4995; m = 0.1·0.2 = 0.02; v = 0.001·0.04 = 4e-5;
    //         bias corrections 0.1 and 0.001: p = 0.4995 − (0.1/0.1)·0.02/(√4e-5/√0.001 + 1e-8)
    //         = 0.4995 − 0.02/0.20000001 = 0.399500005
    // Step 2: p = 0.399500005·0.999; m = 0.9·0.02 + 0.1·(−0.4) = −0.022;
    //         v = 0.999·4e-5 + 0.001·0.16 = 1.9996e-4; bias corrections 0.19 and 0.001999:
    //         p = 0.399100504995 + (0.1/0.19)·0.022/(√(1.9996e-4/0.001999) + 1e-8) = 0.43571085654
    const hyper = { lr: 0.1, weightDecay: 0.01 };
    const s0 = { params: Float64Array.of(0.5), m: Float64Array.of(0), v: Float64Array.of(0) };
    const s1 = adamwReference(s0, [0.2], hyper, 1);
    expect(s1.params[0]).toBeCloseTo(0.399500005, 12);
    expect(s1.m[0]).toBeCloseTo(0.02, 15);
    expect(s1.v[0]).toBeCloseTo(4e-5, 15);
    const s2 = adamwReference(s1, [-0.4], hyper, 2);
    expect(s2.m[0]).toBeCloseTo(-0.022, 15);
    expect(s2.v[0]).toBeCloseTo(1.9996e-4, 15);
    const hand = 0.399500005 * 0.999 + (0.1 / 0.19) * (0.022 / (Math.sqrt(1.9996e-4 / 0.001999) + 1e-8));
    expect(s2.params[0]).toBeCloseTo(hand, 12);
    expect(s2.params[0]).toBeCloseTo(0.43571085654, 10);
    // The input state is not modified.
    expect(s0.params[0]).toBe(0.5);
  });

  it('uses torch.optim.AdamW defaults: β (0.9, 0.999), ε 1e-8, weight decay 0.01', () => {
    const s0 = { params: Float64Array.of(2), m: Float64Array.of(0), v: Float64Array.of(0) };
    const a = adamwReference(s0, [1], { lr: 0.01 }, 1);
    const b = adamwReference(s0, [1], { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, 1);
    expect(a).toEqual(b);
    // First step of Adam moves by ≈ lr·sign(g), after the decay 2·(1 − 1e-4).
    expect(a.params[0]).toBeCloseTo(2 * (1 - 1e-4) - 0.01, 8);
  });

  it('scales gradients by the clip factor and skips a step with a non-finite norm', () => {
    const s0 = { params: Float64Array.of(1, -1), m: Float64Array.of(0.1, 0.2), v: Float64Array.of(0.01, 0.02) };
    const hyper = { lr: 0.05, weightDecay: 0 };
    const scaled = adamwReference(s0, [3, 4], hyper, 3, { norm: 5, scale: 0.2 });
    const manual = adamwReference(s0, [0.6, 0.8], hyper, 3);
    expect(Array.from(scaled.params)).toEqual(Array.from(manual.params));
    for (const norm of [NaN, Infinity]) {
      const same = adamwReference(s0, [NaN, 1], hyper, 3, { norm, scale: 1 });
      expect(same).toEqual(s0);
      expect(same.params).not.toBe(s0.params);
    }
  });

  it('rejects invalid hyper-parameters, steps and lengths', () => {
    const s0 = { params: Float64Array.of(1), m: Float64Array.of(0), v: Float64Array.of(0) };
    expect(() => adamwReference(s0, [1], { lr: -1 }, 1)).toThrow(InputError);
    expect(() => adamwReference(s0, [1], { lr: 1, beta1: 1 }, 1)).toThrow(/beta1/);
    expect(() => adamwReference(s0, [1], { lr: 1, beta2: -0.1 }, 1)).toThrow(/beta2/);
    expect(() => adamwReference(s0, [1], { lr: 1 }, 0)).toThrow(/step/);
    expect(() => adamwReference(s0, [1, 2], { lr: 1 }, 1)).toThrow(/length/);
    expect(() => adamwProgram(10, { lr: 1, eps: -1 }, 1)).toThrow(/epsilon/);
    expect(() => adamwProgram(-1, { lr: 1 }, 1)).toThrow(/length/);
  });
});

describe('clipReference', () => {
  it('follows clip_grad_norm_: scale = min(1, maxNorm / (norm + 1e-6))', () => {
    expect(clipReference([3, 4], 1)).toEqual({ norm: 5, scale: 1 / (5 + 1e-6), finite: true });
    expect(clipReference([3, 4], 10)).toEqual({ norm: 5, scale: 1, finite: true });
    for (const off of [0, -2, Infinity]) expect(clipReference([3, 4], off)).toEqual({ norm: 5, scale: 1, finite: true });
    expect(clipReference([1, NaN], 1).finite).toBe(false);
    expect(clipReference([1, -Infinity], 1).norm).toBe(Infinity);
  });
});

describe('optimizer programs', () => {
  it('carry the bias corrections computed in float64', () => {
    const p = adamwProgram(10, { lr: 0.1, beta1: 0.9, beta2: 0.999, weightDecay: 0.01 }, 2);
    expect(p.uniforms['stepSize']).toBeCloseTo(0.1 / 0.19, 15);
    expect(p.uniforms['bc2Sqrt']).toBeCloseTo(Math.sqrt(0.001999), 15);
    expect(p.uniforms['decay']).toBeCloseTo(0.999, 15);
  });

  it('size the norm reduction so stage 2 is one workgroup, whatever n', () => {
    for (const n of [0, 1, 255, 257, 262144, 262145, 1 << 24, 3e7]) {
      const g = gradNormPrograms(n, 1);
      const { chunk, groups } = g.partial.uniforms as { chunk: number; groups: number };
      expect(groups * chunk).toBeGreaterThanOrEqual(n);
      expect(groups).toBeLessThanOrEqual(1024);
      expect(g.tempBytes).toBe(4 * groups);
      expect(g.finish.workgroups).toEqual([1, 1, 1]);
      expect(g.finish.uniforms['count']).toBe(groups);
    }
    expect(gradNormPrograms(10, Infinity).finish.uniforms['clip']).toBe(0);
    expect(gradNormPrograms(10, 0).finish.uniforms['clip']).toBe(0);
    expect(gradNormPrograms(10, 1).finish.uniforms['clip']).toBe(1);
  });
});
