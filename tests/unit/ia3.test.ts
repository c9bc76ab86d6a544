// The IA3 ops on the CPU: reference gradients against finite differences of the reference forward,
// shape rules and their errors, and the tilings the GPU lowering picks (GPU and software adapter).
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedOpError } from '../../src/errors.js';
import { tensor, type RefTensor, type TensorType, type ValueInfo } from '../../src/ir/tensor.js';
import { context, runReference } from '../../src/ops/execute.js';
import { grid } from '../../src/gpu/kernel.js';
import { DEFAULT_TRAITS, deviceTraits } from '../../src/gpu/traits.js';
import { ia3Ops, ia3Tiling } from '../../src/ops/ia3.js';
import type { LoweringSteps } from '../../src/ops/types.js';
import { dot, expectClose, numericGradient, randomTensor } from '../util/tensors.js';

const { IA3Scale, IA3ScaleGrad } = ia3Ops;
const ctxScale = context('IA3Scale', 'scale_node');
const ctxGrad = context('IA3ScaleGrad', 'grad_node');

describe('IA3Scale reference', () => {
  it('scales the last dim by the product of the vectors, whatever their layout', () => {
    const x = tensor('float32', [2, 3], [1, 2, 3, 4, 5, 6]);
    const l1 = tensor('float32', [3, 1], [2, 0.5, -1]);
    const l2 = tensor('float32', [1, 3], [3, 2, 10]);
    const [y] = runReference(IA3Scale, [x, l1, l2], {}, ctxScale);
    expect(Array.from(y!.data)).toEqual([6, 2, -30, 24, 5, -60]);
    expect(y!.dims).toEqual([2, 3]);
  });
});

describe('IA3ScaleGrad reference vs finite differences', () => {
  for (const nl of [1, 2, 3, 4]) {
    for (const dims of [[1, 5], [3, 4], [2, 3, 7]]) {
      it(`${nl} vector(s), x [${dims.join(',')}]`, () => {
        const C = dims[dims.length - 1]!;
        const x = randomTensor(dims, 1 + nl);
        const ls = Array.from({ length: nl }, (_, k) => randomTensor(k % 2 ? [1, C] : [C, 1], 10 * nl + k, -1.5, 1.5));
        const w = randomTensor(dims, 99);
        const loss = (inputs: RefTensor[]) => dot(runReference(IA3Scale, inputs, {}, ctxScale)[0]!, w);
        const grads = runReference(IA3ScaleGrad, [w, x, ...ls], {}, ctxGrad);
        expect(grads.length).toBe(1 + nl);
        const dxNum = numericGradient((xp) => loss([xp, ...ls]), x);
        expectClose(grads[0]!, dxNum, { rtol: 1e-6, atol: 1e-7 }, 'dx');
        ls.forEach((l, k) => {
          const dlNum = numericGradient((lp) => loss([x, ...ls.map((o, j) => (j === k ? lp : o))]), l);
          expect(grads[1 + k]!.dims).toEqual(l.dims);
          expectClose(grads[1 + k]!, dlNum, { rtol: 1e-6, atol: 1e-7 }, `dl${k + 1}`);
        });
        // input_grad = 0 drops dx only.
        const noDx = runReference(IA3ScaleGrad, [w, x, ...ls], { input_grad: 0 }, ctxGrad);
        expect(noDx[0]!.dims).toEqual([0]);
        for (let k = 1; k <= nl; k++) expect(Array.from(noDx[k]!.data)).toEqual(Array.from(grads[k]!.data));
      });
    }
  }

  it('gives every vector its gradient when another vector has a zero (no division by l)', () => {
    const x = tensor('float32', [2, 2], [1, 2, 3, 4]);
    const l1 = tensor('float32', [2, 1], [0, 2]);
    const l2 = tensor('float32', [2, 1], [5, 0]);
    const dy = tensor('float32', [2, 2], [1, 1, 1, 1]);
    const [, dl1, dl2] = runReference(IA3ScaleGrad, [dy, x, l1, l2], {}, ctxGrad);
    expect(Array.from(dl1!.data)).toEqual([4 * 5, 6 * 0]);
    expect(Array.from(dl2!.data)).toEqual([4 * 0, 6 * 2]);
  });
});

describe('IA3 shape rules', () => {
  const t = (dtype: TensorType['dtype'], dims: number[]): ValueInfo => ({ dtype, dims });

  it('keeps x’s shape and each vector’s own shape', () => {
    expect(IA3Scale.shape([t('float32', [2, 8, 6]), t('float32', [6, 1])], {}, ctxScale)).toEqual([
      { dtype: 'float32', dims: [2, 8, 6] },
    ]);
    const out = IA3ScaleGrad.shape(
      [t('float32', [4, 6]), t('float32', [4, 6]), t('float32', [6, 1]), t('float32', [1, 6])],
      {},
      ctxGrad,
    );
    expect(out.map((o) => o.dims)).toEqual([[4, 6], [6, 1], [1, 6]]);
    expect(IA3ScaleGrad.shape([t('float32', [4, 6]), t('float32', [4, 6]), t('float32', [6])], { input_grad: 0 }, ctxGrad)[0]!.dims).toEqual([0]);
  });

  const errors: [string, () => unknown, typeof ShapeError | typeof UnsupportedOpError, RegExp][] = [
    ['a vector of the wrong size', () => IA3Scale.shape([t('float32', [3, 5]), t('float32', [4, 1])], {}, ctxScale), ShapeError, /\[4,1\].*needs 5/],
    ['no vector', () => IA3Scale.shape([t('float32', [3, 5])], {}, ctxScale), ShapeError, /at least one IA3 vector/],
    ['a scalar x', () => IA3Scale.shape([t('float32', []), t('float32', [1])], {}, ctxScale), ShapeError, /at least one dim/],
    ['an integer x', () => IA3Scale.shape([t('int64', [2, 3]), t('float32', [3])], {}, ctxScale), ShapeError, /float/],
    ['an integer vector', () => IA3Scale.shape([t('float32', [2, 3]), t('int32', [3])], {}, ctxScale), ShapeError, /float/],
    ['a gap among the vectors', () => IA3Scale.shape([t('float32', [2, 3]), t('float32', [3]), undefined, t('float32', [3])], {}, ctxScale), ShapeError, /missing/],
    ['five vectors', () => IA3Scale.shape([t('float32', [2, 3]), ...Array.from({ length: 5 }, () => t('float32', [3]))], {}, ctxScale), UnsupportedOpError, /at most 4/],
    ['dy of another shape', () => IA3ScaleGrad.shape([t('float32', [3, 4]), t('float32', [4, 3]), t('float32', [3])], {}, ctxGrad), ShapeError, /same shape/],
    ['a missing dy', () => IA3ScaleGrad.shape([undefined, t('float32', [4, 3]), t('float32', [3])], {}, ctxGrad), ShapeError, /dy/],
    ['input_grad = 2', () => IA3ScaleGrad.shape([t('float32', [4, 3]), t('float32', [4, 3]), t('float32', [3])], { input_grad: 2 }, ctxGrad), ShapeError, /input_grad/],
  ];
  for (const [what, fn, cls, msg] of errors) {
    it(`rejects ${what}, naming the op and node`, () => {
      expect(fn).toThrow(cls);
      expect(fn).toThrow(msg);
      expect(fn).toThrow(/IA3Scale(Grad)? node '(scale|grad)_node'/);
    });
  }
});

describe('IA3 tiling', () => {
  const cases: [number, number][] = [[0, 8], [1, 1], [7, 3], [1, 768], [1000, 33], [4099, 1], [16384, 1024], [4096, 4096], [1 << 24, 1], [1, 1 << 24], [21845, 768]];
  for (const [rows, C] of cases) {
    for (const software of [false, true]) {
      it(`covers [${rows}, ${C}] with a valid workgroup shape and bounded grid (${software ? 'software' : 'GPU'} tiling)`, () => {
        for (const minRows of [4, 8]) {
          const t = ia3Tiling(rows, C, minRows, software);
          expect(t.vec4).toBe(C % 4 === 0);
          expect(t.ct * t.rt).toBeLessThanOrEqual(256);
          expect(Number.isInteger(Math.log2(t.rt))).toBe(true);
          expect(t.chunkRows % t.rt).toBe(0);
          expect(t.chunkRows).toBeGreaterThanOrEqual(t.rt * minRows);
          expect(t.colBlocks * t.ct).toBeGreaterThanOrEqual(t.lanes);
          expect((t.colBlocks - 1) * t.ct).toBeLessThan(Math.max(1, t.lanes));
          expect(t.chunks * t.chunkRows).toBeGreaterThanOrEqual(rows);
          expect(Math.max(0, t.chunks - 1) * t.chunkRows).toBeLessThan(Math.max(1, rows));
          expect(t.tiles).toBe(t.chunks * t.colBlocks);
          if (rows * C >= 1 << 20) expect(t.chunks * C).toBeLessThanOrEqual(Math.max(C, (rows * C) / 8));
          if (software) {
            // No workgroup tree (no barrier) and a few dozen workgroups: enough for a multicore CPU,
            // few enough that each one streams a long run of rows.
            expect(t.rt).toBe(1);
            expect(t.tiles).toBeLessThanOrEqual(Math.max(32, t.colBlocks));
            if (rows >= 32 * minRows) expect(t.tiles).toBeGreaterThanOrEqual(16);
          } else {
            // Enough workgroups to fill a large GPU when the problem allows.
            if (rows * C >= 1 << 24) expect(t.tiles).toBeGreaterThanOrEqual(1024);
            if (rows >= 256) expect(t.rt).toBeGreaterThan(1);
          }
        }
      });
    }
  }

  it('follows the device traits of the lowering context (a hardware adapter by default)', () => {
    expect(context('IA3ScaleGrad').device).toEqual(DEFAULT_TRAITS);
    expect(DEFAULT_TRAITS.software).toBe(false);
    const info = (dims: number[]): ValueInfo => ({ dtype: 'float32', dims });
    const ins = [info([16384, 1024]), info([16384, 1024]), info([1024, 1])];
    const lower = (device = DEFAULT_TRAITS) => ((IA3ScaleGrad.gpu as Exclude<typeof IA3ScaleGrad.gpu, 'fold'>)(ins, [], {}, { ...ctxGrad, device }) as LoweringSteps).steps[0]!.program;
    expect(lower(deviceTraits({ software: true })).workgroups).toEqual(grid(ia3Tiling(16384, 1024, 8, true).tiles));
    expect(lower().workgroups).toEqual(grid(ia3Tiling(16384, 1024, 8, false).tiles));
  });

  it('lowers the backward to one fused pass plus one finishing pass per vector', () => {
    const info = (dims: number[]): ValueInfo => ({ dtype: 'float32', dims });
    const lower = IA3ScaleGrad.gpu as Exclude<typeof IA3ScaleGrad.gpu, 'fold'>;
    const ins = [info([512, 768]), info([512, 768]), info([768, 1]), info([1, 768])];
    const l = lower(ins, [], {}, ctxGrad) as LoweringSteps;
    expect(l.steps.map((s) => s.program.kernel.name)).toEqual(['ia3_scale_grad_v4', 'ia3_scale_grad_finish', 'ia3_scale_grad_finish']);
    expect(l.steps[0]!.program.overrides).toMatchObject({ NL: 2, DX: 1 });
    const noDx = lower(ins, [], { input_grad: 0 }, ctxGrad) as LoweringSteps;
    expect(noDx.steps[0]!.program.overrides).toMatchObject({ DX: 0 });
    expect(noDx.steps[0]!.bindings).toContainEqual({ tmp: 1 });
    const scalar = lower([info([5, 7]), info([5, 7]), info([7])], [], {}, ctxGrad) as LoweringSteps;
    expect(scalar.steps[0]!.program.kernel.name).toBe('ia3_scale_grad');
    // GPU tiling: the fused pass and the finishing passes sum row groups with a workgroup tree.
    expect(l.steps.map((s) => s.program.overrides!['RT'])).toEqual([4, 4, 4]);
  });

  it('lowers without any workgroup tree, in few workgroups, on a software adapter', () => {
    const info = (dims: number[]): ValueInfo => ({ dtype: 'float32', dims });
    const software = deviceTraits({ software: true });
    const ins = [info([4096, 1024]), info([4096, 1024]), info([1024, 1]), info([1, 1024])];
    const bwd = (IA3ScaleGrad.gpu as Exclude<typeof IA3ScaleGrad.gpu, 'fold'>)(ins, [], {}, { ...ctxGrad, device: software }) as LoweringSteps;
    expect(bwd.steps.map((s) => s.program.kernel.name)).toEqual(['ia3_scale_grad_v4', 'ia3_scale_grad_finish', 'ia3_scale_grad_finish']);
    expect(bwd.steps.map((s) => s.program.overrides!['RT'])).toEqual([1, 1, 1]);
    expect(bwd.steps[0]!.program.workgroups).toEqual([32, 1, 1]);
    // The partials buffer holds one row per chunk: 8 chunks × 4 column blocks here.
    expect(bwd.temps).toEqual([4 * 8 * 1024]);
    const fwd = (IA3Scale.gpu as Exclude<typeof IA3Scale.gpu, 'fold'>)([info([4096, 1024]), info([1024])], [], {}, { ...ctxScale, device: software }) as LoweringSteps;
    expect(fwd.steps[0]!.program.overrides).toMatchObject({ RT: 1 });
    expect(fwd.steps[0]!.program.workgroups).toEqual([32, 1, 1]);
  });
});
