// Training on WebGPU: a few dozen AdamW steps on a small synthetic causal-LM task lower the loss
// well below its start, reproducibly with a seed; only the IA3 vectors change (frozen weights are
// byte-identical afterwards); one step equals the float64 AdamW reference applied to the
// gradients of lossAndGradients; a non-finite loss stops training with a typed error.
import { describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src/index.js';
import { adamwReference, clipReference } from '../../src/ops/optim.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { collate } from '../../src/train/data.js';
import { NonFiniteError, Trainer, type StepEvent } from '../../src/train/trainer.js';
import { getGpu } from '../util/gpu.js';
import { toyData } from '../util/toy-data.js';

async function gpt2(): Promise<Model> {
  return loadModel('/tests/fixtures/gpt2/onnx/model_opset17.onnx', { device: await getGpu() });
}

async function weightBytes(model: Model): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const [name, buffer] of model.weightBuffers) {
    if (!name.startsWith('ia3::')) out.set(name, new Uint8Array(await model.gpu.read(buffer, buffer.size)));
  }
  return out;
}

describe('Trainer', () => {
  it('lowers the loss on a synthetic task, reproducibly, changing only the IA3 vectors', async () => {
    const data = toyData(64, 12, 7);
    const run = async () => {
      const model = await gpt2();
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
      const trainer = new Trainer(peft, { learningRate: 0.1, batchSize: 8, maxSteps: 30, loggingSteps: 10, seed: 3, warmupSteps: 2 });
      const steps: StepEvent[] = [];
      trainer.on('step', (e) => steps.push(e));
      const before = await trainer.evaluate(data);
      const frozenBefore = await weightBytes(model);
      await trainer.train(data);
      const after = await trainer.evaluate(data);
      const frozenAfter = await weightBytes(model);
      const state = peft.stateDict();
      await model.dispose();
      return { before, after, steps, state, frozenBefore, frozenAfter };
    };
    const a = await run();
    console.log(`[train] loss ${a.before.loss.toFixed(4)} → ${a.after.loss.toFixed(4)} (perplexity ${a.before.perplexity!.toFixed(1)} → ${a.after.perplexity!.toFixed(1)})`);
    expect(a.steps.map((s) => s.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(a.steps.every((s) => Number.isFinite(s.loss) && Number.isFinite(s.gradNorm) && s.tokensPerSecond > 0)).toBe(true);
    expect(a.after.loss).toBeLessThan(0.6 * a.before.loss);
    // Frozen weights are byte-identical; the vectors moved away from ones.
    expect(a.frozenAfter.size).toBeGreaterThan(10);
    for (const [name, bytes] of a.frozenBefore) expect(a.frozenAfter.get(name), name).toEqual(bytes);
    expect(Object.values(a.state).some((t) => Array.from(t.data as Float32Array).some((v) => v !== 1))).toBe(true);
    // Same seed, same data: the same trained vectors, bit for bit.
    const b = await run();
    expect(b.state).toEqual(a.state);
    expect(b.steps.map((s) => s.loss)).toEqual(a.steps.map((s) => s.loss));
  }, 400_000);

  it('one step equals float64 AdamW on the gradients of lossAndGradients (clipping on)', async () => {
    const model = await gpt2();
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const data = toyData(4, 10, 11);
    const batch = collate(data, { task: 'CAUSAL_LM', padTokenId: 0, buckets: [10], maxLength: 10, inputNames: model.inputNames });
    const { gradients } = await peft.lossAndGradients({ inputs: batch.inputs, labels: batch.labels });
    const keys = Object.keys(gradients);
    const init = peft.stateDict();
    const flatGrad = keys.flatMap((k) => Array.from(gradients[k]!.data as Float32Array));
    const flatInit = keys.flatMap((k) => Array.from(init[k]!.data as Float32Array));
    const maxNorm = 0.5 * clipReference(flatGrad, Infinity).norm; // make sure clipping is active
    const hyper = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const ref = adamwReference(
      { params: Float64Array.from(flatInit), m: new Float64Array(flatInit.length), v: new Float64Array(flatInit.length) },
      flatGrad,
      hyper,
      1,
      clipReference(flatGrad, maxNorm),
    );
    const trainer = new Trainer(peft, { learningRate: 0.01, weightDecay: 0.1, maxGradNorm: maxNorm, batchSize: 4, maxSteps: 1, maxLength: 10, buckets: [10], lrScheduler: 'constant', loggingSteps: 1 });
    await trainer.train(data);
    const got = keys.flatMap((k) => Array.from(peft.stateDict()[k]!.data as Float32Array));
    let worst = 0;
    got.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref.params[i]!) / (1e-6 + Math.abs(ref.params[i]! - flatInit[i]!)))));
    expect(worst).toBeLessThan(1e-3);
    await model.dispose();
  });

  it('accumulates gradients: 2 micro-batches of 4 make the same step as one batch of 8', async () => {
    const data = toyData(8, 8, 21);
    const step = async (batchSize: number, gradientAccumulationSteps: number) => {
      const model = await gpt2();
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
      await new Trainer(peft, { learningRate: 0.01, batchSize, gradientAccumulationSteps, maxSteps: 1, seed: 4, lrScheduler: 'constant' }).train(data);
      const state = peft.stateDict();
      await model.dispose();
      return Object.values(state).flatMap((t) => Array.from(t.data as Float32Array));
    };
    const one = await step(8, 1);
    const two = await step(4, 2);
    expect(one.some((v) => v !== 1)).toBe(true);
    expect(Math.max(...one.map((v, i) => Math.abs(v - two[i]!)))).toBeLessThan(1e-5);
  });

  it('fits a memory budget: a batch cut into micro-batches makes the same step, weighted by counted labels', async () => {
    // Lengths 4..9: the pieces of a batch count different numbers of labels.
    const data = toyData(6, 9, 23).map((ex, i) => ({ input_ids: ex.input_ids.slice(0, 4 + i) }));
    const step = async (maxMemoryBytes?: number) => {
      const model = await gpt2();
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
      const trainer = new Trainer(peft, { learningRate: 0.01, batchSize: 6, maxSteps: 1, seed: 4, lrScheduler: 'constant', ...(maxMemoryBytes ? { maxMemoryBytes } : {}) });
      const losses: number[] = [];
      trainer.on('step', (e) => losses.push(e.loss));
      const budget = trainer.memoryPlan({ batch: 2, sequence: 16 }).total;
      const whole = trainer.memoryPlan({ batch: 6, sequence: 16 }).total;
      await trainer.train(data);
      const state = peft.stateDict();
      await model.dispose();
      return { values: Object.values(state).flatMap((t) => Array.from(t.data as Float32Array)), loss: losses[0]!, budget, whole };
    };
    const one = await step();
    expect(one.whole).toBeGreaterThan(one.budget);
    const cut = await step(one.budget);
    expect(one.values.some((v) => v !== 1)).toBe(true);
    expect(Math.abs(cut.loss - one.loss) / one.loss).toBeLessThan(1e-5);
    expect(Math.max(...one.values.map((v, i) => Math.abs(v - cut.values[i]!)))).toBeLessThan(1e-5);
    // Not even one sequence fits: refused before any GPU work.
    const model = await gpt2();
    const trainer = new Trainer(getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' })), { batchSize: 6, maxSteps: 1, maxMemoryBytes: 1024 });
    await expect(trainer.train(data)).rejects.toThrow(/a training step on one sequence of 16 tokens needs [\d,]+ bytes of GPU memory, over maxMemoryBytes \(1,024\)/);
    await model.dispose();
  });

  it('plans the memory a step takes; recomputing activations gives the same gradients from less, half-precision ones close gradients', async () => {
    const model = await gpt2();
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const [rows, seq] = [4, 16];
    const batch = collate(toyData(rows, seq, 31), { task: 'CAUSAL_LM', padTokenId: 0, buckets: [seq], maxLength: seq, inputNames: model.inputNames });
    const pool = model.gpu.buffers;
    const results: { recompute: string; planned: number; measured: number; gradients: Record<string, ArrayLike<number>>; loss: number }[] = [];
    const choices = [{ recompute: 'none' }, { recompute: 'cheap' }, { recompute: 'layers' }, { recompute: 'none', activationPrecision: 'f16' }, { recompute: 'none', activationPrecision: 'bf16' }] as const;
    // A step of another shape first: it puts the IA3 vectors on the GPU, which every plan then shares.
    const one = collate(toyData(1, seq, 32), { task: 'CAUSAL_LM', padTokenId: 0, buckets: [seq], maxLength: seq, inputNames: model.inputNames });
    await peft.lossAndGradients({ inputs: one.inputs, labels: one.labels });
    for (const choice of choices) {
      const plan = peft.memoryPlan({ batch: rows, sequence: seq, ...choice });
      const before = pool.liveBytes;
      pool.resetPeak();
      const r = await peft.lossAndGradients({ inputs: batch.inputs, labels: batch.labels, ...choice });
      // What the step allocated (its plan's slots, inputs, constants and uniforms: plans are kept
      // per shape) against what was planned beyond the weights, resident already.
      results.push({ recompute: Object.values(choice).join('/'), planned: plan.total - plan.weights, measured: pool.peakLiveBytes - before, loss: r.loss, gradients: Object.fromEntries(Object.entries(r.gradients).map(([k, t]) => [k, t.data as Float32Array])) });
    }
    const [none, cheap, layers, f16, bf16] = results as [(typeof results)[0], (typeof results)[0], (typeof results)[0], (typeof results)[0], (typeof results)[0]];
    // Every byte the step allocated through the pool was planned (its readback staging buffers are not the pool's).
    expect(results.map((r) => [r.recompute, r.measured])).toEqual(results.map((r) => [r.recompute, r.planned]));
    expect(cheap.planned).toBeLessThan(none.planned);
    expect(layers.planned).toBeLessThan(cheap.planned);
    for (const r of [cheap, layers]) {
      expect(Math.abs(r.loss - none.loss) / none.loss, r.recompute).toBeLessThan(1e-6);
      for (const [k, g] of Object.entries(none.gradients)) {
        const got = r.gradients[k]!;
        const scale = Math.max(...Array.from(g, Math.abs));
        expect(Math.max(...Array.from(g, (v, i) => Math.abs(v - got[i]!))) / scale, `${r.recompute} ${k}`).toBeLessThan(1e-5);
      }
    }
    // Activations kept in half precision: half the saved bytes; the forward's loss, and gradients
    // within the format's rounding of the f32 ones — and those of the float64 executor on the same IR.
    const worst = (a: Record<string, ArrayLike<number>>, b: Record<string, ArrayLike<number>>): number =>
      Math.max(...Object.entries(b).map(([k, g]) => Math.max(...Array.from(g, (v, i) => Math.abs(v - a[k]![i]!))) / Math.max(...Array.from(g, Math.abs))));
    for (const [r, bound] of [[f16, 2e-3], [bf16, 2e-2]] as const) {
      expect(r.planned, r.recompute).toBeLessThan(none.planned);
      expect(Math.abs(r.loss - none.loss) / none.loss, r.recompute).toBeLessThan(1e-6);
      expect(worst(r.gradients, none.gradients), r.recompute).toBeLessThan(bound);
      const activationPrecision = r === f16 ? 'f16' : 'bf16';
      const ref = peft.lossAndGradientsReference({ inputs: batch.inputs, labels: batch.labels, recompute: 'none', activationPrecision });
      const refGradients = Object.fromEntries(Object.entries(ref.gradients).map(([k, g]) => [k.slice(k.indexOf('/') + 1), g]));
      expect(worst(r.gradients, refGradients), `${r.recompute} against the float64 executor`).toBeLessThan(bound / 5);
    }
    await model.dispose();
  });

  it('stop() ends training after the step in flight, with an end event', async () => {
    const model = await gpt2();
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const trainer = new Trainer(peft, { batchSize: 4, maxSteps: 50, loggingSteps: 1 });
    const ends: { step: number; reason: string }[] = [];
    trainer.on('step', (e) => e.step === 3 && trainer.stop());
    trainer.on('end', (e) => ends.push(e));
    const result = await trainer.train(toyData(16, 8, 9));
    expect(result.steps).toBeLessThanOrEqual(4);
    expect(ends).toEqual([{ step: result.steps, reason: 'stopped' }]);
    await model.dispose();
  });

  it('resumes after stop(): the run ends bit-identical to one never stopped', async () => {
    const data = toyData(12, 8, 13);
    const args = { learningRate: 0.05, batchSize: 4, maxSteps: 7, loggingSteps: 1, seed: 3, warmupSteps: 2 };
    const vectors = (peft: ReturnType<typeof getPeftModel>) => Object.values(peft.stateDict()).flatMap((t) => Array.from(t.data as Float32Array));
    const straightModel = await gpt2();
    const straight = getPeftModel(straightModel, new IA3Config({ taskType: 'CAUSAL_LM' }));
    await new Trainer(straight, args).train(data);
    const expected = vectors(straight);
    await straightModel.dispose();

    const model = await gpt2();
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const trainer = new Trainer(peft, args);
    const off = trainer.on('step', (e) => e.step === 2 && trainer.stop());
    const first = await trainer.train(data);
    off();
    // 7 steps of 4 over 12 examples cross two epoch boundaries after the stop.
    expect(first.steps).toBeLessThan(7);
    const losses: number[] = [];
    trainer.on('step', (e) => losses.push(e.step));
    const second = await trainer.train(data);
    expect(second.steps).toBe(7);
    expect(losses[0]).toBe(first.steps + 1);
    expect(vectors(peft)).toEqual(expected);
    trainer.dispose();
    await model.dispose();
  });

  it('trains with activations kept in half precision, and says when f16 overflowed', async () => {
    const data = toyData(32, 12, 17);
    const model = await gpt2();
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    expect(() => new Trainer(peft, { activationPrecision: 'fp8' as 'f16' })).toThrow(/TrainingArguments.activationPrecision must be one of f32, f16, bf16, got "fp8"/);
    const args = { learningRate: 0.1, batchSize: 8, maxSteps: 12, seed: 3, recompute: 'none' } as const;
    const trainer = new Trainer(peft, { ...args, activationPrecision: 'f16' });
    expect(trainer.memoryPlan({ batch: 8, sequence: 12 }).total).toBeLessThan(new Trainer(peft, args).memoryPlan({ batch: 8, sequence: 12 }).total);
    const before = await trainer.evaluate(data);
    await trainer.train(data);
    const after = await trainer.evaluate(data);
    expect(after.loss).toBeLessThan(0.8 * before.loss);
    // Vectors of 1e5 put the residual stream past f16's range (65504): the kept copies become ∞,
    // the gradient is not finite, and the run stops saying why; bfloat16 keeps f32's range.
    const big = Object.fromEntries(Object.entries(peft.stateDict()).map(([k, t]) => [k, { ...t, data: new Float32Array(t.data.length).fill(1e5) }]));
    for (const [activationPrecision, fails] of [['f16', true], ['bf16', false]] as const) {
      peft.loadStateDict(big);
      const err = await new Trainer(peft, { ...args, maxSteps: 1, loggingSteps: 1, activationPrecision }).train(data).catch((e: unknown) => e);
      if (fails) {
        expect(err).toBeInstanceOf(NonFiniteError);
        expect((err as Error).message).toMatch(/step 1: the gradient norm is not finite.*with activationPrecision 'f16' an activation beyond ±65504 becomes ∞; 'bf16' keeps f32's range/);
      } else {
        expect(err, activationPrecision).not.toBeInstanceOf(Error);
      }
    }
    await model.dispose();
  });

  it('stops with NonFiniteError naming the step and keeps the last good values', async () => {
    const model = await gpt2();
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const state = peft.stateDict();
    const key = Object.keys(state)[0]!;
    (state[key]!.data as Float32Array)[0] = NaN;
    peft.loadStateDict(state);
    const trainer = new Trainer(peft, { batchSize: 4, maxSteps: 3, loggingSteps: 1 });
    const err = await trainer.train(toyData(8, 8, 5)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect((err as NonFiniteError).step).toBe(1);
    const after = peft.stateDict();
    for (const k of Object.keys(after).slice(1)) expect(Array.from(after[k]!.data as Float32Array).every((v) => v === 1)).toBe(true);
    await model.dispose();
  });
});
