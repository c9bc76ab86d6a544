// IA3Scale and IA3ScaleGrad on the GPU against the float64 reference: awkward row counts (1, 7,
// more rows than one workgroup or chunk covers), C on and off the vec4 path, 1–3 active vectors in
// PEFT's (C,1) and (1,C) layouts, with and without dx. Every check runs under both tilings: the GPU
// one (row groups summed by a workgroup tree) and the software-adapter one (one row group, no
// barrier, few long chunks), whichever adapter runs the tests.
import { describe, expect, it } from 'vitest';
import { grid, type Program } from '../../src/gpu/kernel.js';
import { fromGpuBytes, toGpuArray, sizeOf, type RefTensor, type ValueInfo } from '../../src/ir/tensor.js';
import { context, runOnGpu, runReference } from '../../src/ops/execute.js';
import { deviceTraits } from '../../src/gpu/traits.js';
import { elementwiseOps } from '../../src/ops/elementwise.js';
import { ia3Ops, ia3Tiling } from '../../src/ops/ia3.js';
import type { BufferRef, LoweringSteps } from '../../src/ops/types.js';
import { getGpu } from '../util/gpu.js';
import { expectClose, randomTensor } from '../util/tensors.js';

const { IA3Scale, IA3ScaleGrad } = ia3Ops;

interface Case {
  lead: number[];
  C: number;
  nl: number;
  /** PEFT's output-scaling layout (C,1), else input-scaling (1,C). */
  colShape: boolean;
}

function vectors(c: Case, seed: number): RefTensor[] {
  const dims = c.colShape ? [c.C, 1] : [1, c.C];
  // Centred on 1 like trained IA3 vectors, and with sign changes so every factor matters.
  return Array.from({ length: c.nl }, (_, k) => randomTensor(dims, seed + 17 * k, -0.5, 1.5));
}

const name = (c: Case) => `x [${[...c.lead, c.C].join(',')}], ${c.nl} vector(s) ${c.colShape ? '(C,1)' : '(1,C)'}`;

const CASES: Case[] = [];
{
  let i = 0;
  for (const rows of [1, 7, 1000]) {
    for (const C of [1, 3, 4, 33, 768]) {
      CASES.push({ lead: [rows], C, nl: 1 + (i % 3), colShape: i % 2 === 0 });
      i++;
    }
  }
  // Every vector count in both layouts, on and off the vec4 path.
  for (const nl of [1, 2, 3]) {
    for (const colShape of [true, false]) {
      CASES.push({ lead: [2, 5], C: 33, nl, colShape });
      CASES.push({ lead: [3, 7], C: 12, nl, colShape });
    }
  }
  // Many chunks: more rows than one workgroup covers, with a ragged last chunk.
  CASES.push({ lead: [4099], C: 1, nl: 1, colShape: true });
  CASES.push({ lead: [4099], C: 3, nl: 2, colShape: false });
  CASES.push({ lead: [4099], C: 768, nl: 1, colShape: true });
  CASES.push({ lead: [2, 2049], C: 36, nl: 4, colShape: false });
}

/**
 * Runs a lowering with every dispatch folded into a 2-D grid that overshoots the workgroup count,
 * as `grid()` does past 65535 on a real GPU: checks that the kernels ignore the extra workgroups.
 */
async function runFolded(
  lowering: LoweringSteps,
  inputs: readonly RefTensor[],
  outDims: readonly (readonly number[])[],
): Promise<RefTensor[]> {
  const gpu = await getGpu();
  const ins = inputs.map((t) => gpu.upload(toGpuArray(t)));
  const outs = outDims.map((d) => gpu.buffers.acquire(4 * Math.max(1, sizeOf(d))));
  const temps = (lowering.temps ?? []).map((b) => gpu.buffers.acquire(Math.max(4, b)));
  const resolve = (r: BufferRef) => ('in' in r ? ins[r.in]! : 'out' in r ? outs[r.out]! : temps[r.tmp]!);
  const refold = (p: Program): Program => {
    const count = p.workgroups[0] * p.workgroups[1];
    // The smallest per-dimension bound whose fold leaves workgroups past the end.
    for (let m = 2; m < count; m++) {
      if (Math.ceil(count / m) > m) continue;
      const g = grid(count, m);
      if (g[0] * g[1] > count) return { ...p, workgroups: g };
    }
    throw new Error(`no overshooting fold for ${count} workgroups`);
  };
  await gpu.run(lowering.steps.map((s) => ({ program: refold(s.program), buffers: s.bindings.map(resolve) })));
  const result = await Promise.all(
    outDims.map(async (d, i) => fromGpuBytes({ dtype: 'float32', dims: d }, await gpu.read(outs[i]!, 4 * sizeOf(d)))),
  );
  for (const b of [...ins, ...outs, ...temps]) gpu.buffers.release(b);
  return result;
}

for (const softwareAdapter of [false, true]) {
  describe(`IA3 on the GPU, ${softwareAdapter ? 'software-adapter' : 'GPU'} tiling`, () => {
    // The tiling under test is chosen by the device traits of the lowering context.
    const device = deviceTraits({ software: softwareAdapter });
    const ctxScale = context('IA3Scale', 'ia3', 17, device);
    const ctxGrad = context('IA3ScaleGrad', 'ia3_grad', 17, device);

    describe('IA3Scale (GPU)', () => {
      it('matches the reference over rows × C × vectors × layouts', async () => {
        const gpu = await getGpu();
        for (const [n, c] of CASES.entries()) {
          const x = randomTensor([...c.lead, c.C], 100 + n);
          const inputs = [x, ...vectors(c, 900 + n)];
          const [got] = await runOnGpu(gpu, IA3Scale, inputs, {}, ctxScale);
          const [want] = runReference(IA3Scale, inputs, {}, ctxScale);
          expectClose(got!, want!, { rtol: 1e-6, atol: 1e-7 }, `IA3Scale ${name(c)}`);
        }
      });
    });

    describe('IA3ScaleGrad (GPU)', () => {
      it('matches the reference for dx and every dl, with and without dx', async () => {
        const gpu = await getGpu();
        for (const [n, c] of CASES.entries()) {
          const x = randomTensor([...c.lead, c.C], 200 + n);
          const dy = randomTensor([...c.lead, c.C], 300 + n);
          const inputs = [dy, x, ...vectors(c, 400 + n)];
          const rows = sizeOf(c.lead);
          for (const inputGrad of [1, 0]) {
            const attrs = { input_grad: inputGrad };
            const got = await runOnGpu(gpu, IA3ScaleGrad, inputs, attrs, ctxGrad);
            const want = runReference(IA3ScaleGrad, inputs, attrs, ctxGrad);
            expect(got.length).toBe(1 + c.nl);
            expect(got[0]!.dims).toEqual(inputGrad ? [...c.lead, c.C] : [0]);
            expectClose(got[0]!, want[0]!, { rtol: 1e-6, atol: 1e-7 }, `dx ${name(c)}`);
            for (let k = 0; k < c.nl; k++) {
              // f32 sums over `rows` products of magnitude ≤ 1.5^nl.
              expectClose(got[1 + k]!, want[1 + k]!, { rtol: 1e-4, atol: 2e-6 * rows }, `dl${k + 1} ${name(c)} input_grad=${inputGrad}`);
            }
          }
        }
      });

      it('with a GELU activation: x pre-GELU (a view of dy), gelu inline and GeluGrad fused in', async () => {
        const gpu = await getGpu();
        const ctxAct = context('IA3ScaleGrad', 'ia3_gelu_grad', 17, device);
        const ew = (op: 'Gelu' | 'GeluGrad', inputs: RefTensor[], approximate: string) =>
          runOnGpu(gpu, elementwiseOps[op], inputs, { approximate }, context(op, op, 20, device));
        for (const [n, [rows, C]] of [[7, 12], [300, 33], [2, 768]].entries()) {
          // The pre-GELU state as the MLP writes it ([batch, tokens, C]); dy as c_proj's dX product ([rows, C]).
          const pre = randomTensor([1, rows, C], 500 + n, -4, 4);
          const dy = randomTensor([rows, C], 510 + n);
          const ls = vectors({ lead: [rows], C, nl: 2, colShape: false }, 520 + n);
          for (const [activation, approximate] of [['gelu', 'none'], ['gelu_tanh', 'tanh']] as const) {
            for (const inputGrad of [1, 0]) {
              const attrs = { input_grad: inputGrad, activation };
              const got = await runOnGpu(gpu, IA3ScaleGrad, [dy, pre, ...ls], attrs, ctxAct);
              const want = runReference(IA3ScaleGrad, [dy, pre, ...ls], attrs, ctxAct);
              expect(got[0]!.dims).toEqual(inputGrad ? [1, rows, C] : [0]);
              expectClose(got[0]!, want[0]!, { rtol: 1e-5, atol: 1e-6 }, `dx ${activation} [${rows},${C}]`);
              for (let k = 0; k < 2; k++) expectClose(got[1 + k]!, want[1 + k]!, { rtol: 1e-4, atol: 2e-6 * rows }, `dl${k + 1} ${activation}`);
              // The unfused kernels (Gelu; IA3ScaleGrad; GeluGrad) give the same f32 values, bit for bit.
              const [g] = await ew('Gelu', [pre], approximate);
              const plain = await runOnGpu(gpu, IA3ScaleGrad, [dy, { ...g!, dims: [rows, C] }, ...ls], { input_grad: inputGrad }, ctxAct);
              for (let k = 1; k < 3; k++) expect(Array.from(got[k]!.data), `dl${k} ${activation}`).toEqual(Array.from(plain[k]!.data));
              if (inputGrad) {
                const [dpre] = await ew('GeluGrad', [{ ...plain[0]!, dims: [1, rows, C] }, pre], approximate);
                expect(Array.from(got[0]!.data), `dx ${activation}`).toEqual(Array.from(dpre!.data));
              }
            }
          }
        }
      });

      it('is deterministic: two runs agree bit for bit', async () => {
        const gpu = await getGpu();
        for (const C of [768, 33]) {
          const inputs = [randomTensor([1500, C], 5), randomTensor([1500, C], 6), randomTensor([C, 1], 7), randomTensor([1, C], 8)];
          const a = await runOnGpu(gpu, IA3ScaleGrad, inputs, {}, ctxGrad);
          const b = await runOnGpu(gpu, IA3ScaleGrad, inputs, {}, ctxGrad);
          for (let k = 1; k < a.length; k++) expect(Array.from(a[k]!.data)).toEqual(Array.from(b[k]!.data));
        }
      });
    });

    describe('IA3 kernels on a folded grid', () => {
      it('ignore the workgroups a 2-D grid fold adds past the end', async () => {
        const C = 260; // 65 vec4 lanes: two column blocks, the second one lane wide
        const rows = 300;
        const x = randomTensor([rows, C], 11);
        const dy = randomTensor([rows, C], 12);
        const l = randomTensor([C, 1], 13);
        const info = (t: RefTensor): ValueInfo => ({ dtype: t.dtype, dims: t.dims });
        expect(ia3Tiling(rows, C, 8, softwareAdapter).tiles).toBeGreaterThan(3);

        const fwd = (IA3Scale.gpu as Exclude<typeof IA3Scale.gpu, 'fold'>)([x, l].map(info), [], {}, ctxScale) as LoweringSteps;
        const [y] = await runFolded(fwd, [x, l], [[rows, C]]);
        expectClose(y!, runReference(IA3Scale, [x, l], {}, ctxScale)[0]!, { rtol: 1e-6, atol: 1e-7 }, 'folded IA3Scale');

        const bwd = (IA3ScaleGrad.gpu as Exclude<typeof IA3ScaleGrad.gpu, 'fold'>)([dy, x, l].map(info), [], {}, ctxGrad) as LoweringSteps;
        // The tiling under test: one row group (no workgroup tree) exactly on the software side.
        for (const step of bwd.steps) expect(step.program.overrides!['RT'] === 1).toBe(softwareAdapter);
        const [dx, dl] = await runFolded(bwd, [dy, x, l], [[rows, C], [C, 1]]);
        const want = runReference(IA3ScaleGrad, [dy, x, l], {}, ctxGrad);
        expectClose(dx!, want[0]!, { rtol: 1e-6, atol: 1e-7 }, 'folded dx');
        expectClose(dl!, want[1]!, { rtol: 1e-4, atol: 1e-4 }, 'folded dl');
      });
    });
  });
}
