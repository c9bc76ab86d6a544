// The optimizer programs on the GPU against the float64 references: several AdamW steps with and
// without clipping and weight decay, lengths that are 1, not a multiple of 4, and beyond one
// workgroup and one stage-1 chunk, and a NaN/Inf gradient that must leave the state untouched.
import { describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/device.js';
import { adamwProgram, adamwReference, clipReference, gradNormPrograms, type AdamWHyper, type AdamWState } from '../../src/ops/optim.js';
import { getGpu } from '../util/gpu.js';
import { closeness, randomTensor } from '../util/tensors.js';

/** GPU-side optimizer state for one test. */
class GpuState {
  readonly params: GPUBuffer;
  readonly m: GPUBuffer;
  readonly v: GPUBuffer;
  readonly normScale: GPUBuffer;
  constructor(
    private readonly gpu: GpuContext,
    readonly n: number,
    init: Float32Array,
  ) {
    this.params = gpu.upload(init);
    this.m = gpu.upload(new Float32Array(n));
    this.v = gpu.upload(new Float32Array(n));
    this.normScale = gpu.buffers.acquire(8);
  }

  /** One clipped AdamW step: norm, scale and update in one submission, as the trainer runs it. */
  async step(grads: Float32Array, hyper: AdamWHyper, step: number, maxNorm: number): Promise<void> {
    const g = this.gpu.upload(grads);
    const norm = gradNormPrograms(this.n, maxNorm);
    const partials = this.gpu.buffers.acquire(Math.max(4, norm.tempBytes));
    await this.gpu.run([
      { program: norm.partial, buffers: [g, partials] },
      { program: norm.finish, buffers: [partials, this.normScale] },
      { program: adamwProgram(this.n, hyper, step), buffers: [g, this.normScale, this.params, this.m, this.v] },
    ]);
    this.gpu.buffers.release(g);
    this.gpu.buffers.release(partials);
  }

  async read(): Promise<{ params: Float32Array; m: Float32Array; v: Float32Array; normScale: Float32Array }> {
    const f = async (b: GPUBuffer, n: number) => new Float32Array(await this.gpu.read(b, 4 * n));
    return { params: await f(this.params, this.n), m: await f(this.m, this.n), v: await f(this.v, this.n), normScale: await f(this.normScale, 2) };
  }

  release(): void {
    for (const b of [this.params, this.m, this.v, this.normScale]) this.gpu.buffers.release(b);
  }
}

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  const { worst, at } = closeness(actual, expected, { rtol, atol });
  expect(worst, `${what}: element ${at} is ${actual[at]}, expected ${expected[at]}`).toBeLessThanOrEqual(1);
}

const f32 = (n: number, seed: number, lo = -1, hi = 1) => Float32Array.from(randomTensor([n], seed, lo, hi).data);

describe('AdamW with global-norm clipping (GPU)', () => {
  const configs: { n: number; maxNorm: number; hyper: AdamWHyper }[] = [
    { n: 1, maxNorm: 0, hyper: { lr: 1e-2 } },
    { n: 7, maxNorm: 0.5, hyper: { lr: 3e-3, weightDecay: 0 } },
    { n: 1000, maxNorm: Infinity, hyper: { lr: 1e-2, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.1 } },
    { n: 1001, maxNorm: 2, hyper: { lr: 1e-2, beta1: 0.3 } }, // lerp's second form (weight > 0.5)
    { n: 300001, maxNorm: 100, hyper: { lr: 1e-3 } }, // several elements per stage-1 thread
  ];
  for (const { n, maxNorm, hyper } of configs) {
    it(`n=${n}, maxNorm=${maxNorm}, ${JSON.stringify(hyper)}: 4 steps match the float64 reference`, async () => {
      const gpu = await getGpu();
      const init = f32(n, 1, -2, 2);
      const st = new GpuState(gpu, n, init);
      let ref: AdamWState = { params: Float64Array.from(init), m: new Float64Array(n), v: new Float64Array(n) };
      let clippedOnce = false;
      for (let step = 1; step <= 4; step++) {
        // Gradients shrink over the steps so clipping is active early and not late when on.
        const grads = f32(n, 10 + step, -3 / step, 3 / step);
        const clip = clipReference(grads, maxNorm);
        clippedOnce ||= clip.scale < 1;
        ref = adamwReference(ref, grads, hyper, step, clip);
        await st.step(grads, hyper, step, maxNorm);
        const got = await st.read();
        expectNear([got.normScale[0]!], [clip.norm], 1e-5, 0, `norm at step ${step}`);
        expectNear([got.normScale[1]!], [clip.scale], 1e-5, 0, `scale at step ${step}`);
        expectNear(got.m, ref.m, 1e-5, 1e-7, `m at step ${step}`);
        expectNear(got.v, ref.v, 1e-5, 1e-9, `v at step ${step}`);
        expectNear(got.params, ref.params, 1e-5, 1e-6, `params at step ${step}`);
      }
      if (maxNorm > 0 && Number.isFinite(maxNorm) && n > 1) expect(clippedOnce).toBe(true);
      st.release();
    });
  }

  for (const bad of [NaN, Infinity, -Infinity]) {
    it(`a ${bad} gradient leaves params, m and v untouched and shows in the norm`, async () => {
      const gpu = await getGpu();
      const n = 777;
      const hyper = { lr: 1e-2 };
      const st = new GpuState(gpu, n, f32(n, 2));
      await st.step(f32(n, 3), hyper, 1, 1);
      const before = await st.read();
      const grads = f32(n, 4);
      grads[n - 5] = bad;
      await st.step(grads, hyper, 2, 1);
      const after = await st.read();
      expect(Number.isFinite(after.normScale[0]!)).toBe(false);
      if (Number.isNaN(bad)) expect(after.normScale[0]).toBeNaN();
      else expect(after.normScale[0]).toBe(Infinity);
      expect(Array.from(after.params)).toEqual(Array.from(before.params));
      expect(Array.from(after.m)).toEqual(Array.from(before.m));
      expect(Array.from(after.v)).toEqual(Array.from(before.v));
      // The untouched state trains on: step 2 again with good gradients matches the reference.
      const good = f32(n, 5);
      await st.step(good, hyper, 2, 1);
      const ref = adamwReference(
        { params: Float64Array.from(before.params), m: Float64Array.from(before.m), v: Float64Array.from(before.v) },
        good,
        hyper,
        2,
        clipReference(good, 1),
      );
      const got = await st.read();
      expectNear(got.params, ref.params, 1e-5, 1e-6, 'params after recovery');
      st.release();
    });
  }

  it('computes the norm deterministically and without clipping when none is asked', async () => {
    const gpu = await getGpu();
    const n = 70001;
    const grads = f32(n, 6, -5, 5);
    const g = gpu.upload(grads);
    const out = gpu.buffers.acquire(8);
    const results: Float32Array[] = [];
    for (const maxNorm of [0, -1, Infinity, 0]) {
      const p = gradNormPrograms(n, maxNorm);
      const tmp = gpu.buffers.acquire(p.tempBytes);
      await gpu.run([
        { program: p.partial, buffers: [g, tmp] },
        { program: p.finish, buffers: [tmp, out] },
      ]);
      results.push(new Float32Array(await gpu.read(out, 8)));
      gpu.buffers.release(tmp);
    }
    for (const r of results) {
      expect(r[1]).toBe(1);
      expect(r[0]).toBe(results[0]![0]);
    }
    expectNear([results[0]![0]!], [clipReference(grads, 0).norm], 1e-5, 0, 'norm');
    gpu.buffers.release(g);
    gpu.buffers.release(out);
  });
});
