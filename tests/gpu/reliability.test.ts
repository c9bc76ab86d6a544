// Issue 11's findings 3–10 on the GPU, through the public API, each as the probe found it:
//   3 unbounded allocation from a tiny file     6 device lost mid-training; checkpoints and resume
//   4 a train() failing before its first step   7 two PeftModels over one base model
//   5 an accumulation no epoch can fill         8 silent clamping of ids, token types and labels
//   9 races between train(), merge, dispose     10 GPU memory back to its start after dispose()
// and resuming from a checkpoint after a simulated reload, bit for bit. Small fixtures, few steps.
import { onnx } from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import {
  BusyError,
  createDevice,
  decodeCheckpoint,
  DeviceLostError,
  DisposedError,
  encodeCheckpoint,
  getPeftModel,
  IA3Config,
  IA3Error,
  IndexOutOfRangeError,
  InputError,
  loadModel,
  loadPeftModel,
  MemoryCheckpointStore,
  OpfsCheckpointStore,
  SizeLimitError,
  Trainer,
  type Checkpoint,
  type Example,
  type GpuContext,
  type Model,
  type PeftModel,
  type TrainingArguments,
} from '../../src/index.js';
import { getGpu } from '../util/gpu.js';
import { toyData } from '../util/toy-data.js';
import { singleOpModel } from '../util/onnx-build.js';

const GPT2 = '/tests/fixtures/gpt2/onnx/model_opset17.onnx'; // vocab 120, 32 positions
const BERT = '/tests/fixtures/bert/onnx/model_opset17.onnx'; // vocab 100, 2 token types, 2 labels

const vectors = (peft: PeftModel): number[] => Object.values(peft.stateDict()).flatMap((t) => Array.from(t.data as Float32Array));
const logits = async (m: { run: Model['run'] }, feeds = { input_ids: [[12, 15, 11, 17]], attention_mask: [[1, 1, 1, 1]] }): Promise<number[]> => Array.from((await m.run(feeds)).logits!.data as Float32Array);

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e;
  }
  return undefined;
}

/** A PeftModel whose vectors are all `v` (so a reset to ones or zeros shows). */
async function scaled(model: Model, v = 1.25): Promise<PeftModel> {
  const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
  const state = peft.stateDict();
  for (const t of Object.values(state)) (t.data as Float32Array).fill(v);
  peft.loadStateDict(state);
  return peft;
}

describe('3: allocations from untrusted sizes are budgeted, the pool untouched on failure', () => {
  const INT64 = onnx.TensorProto.DataType.INT64;
  const ints = (name: string, values: number[]): onnx.ITensorProto => ({ name, dataType: INT64, dims: [values.length], int64Data: values });

  it('ConstantOfShape [1e8], Expand and Tile to [1e12]: SizeLimitError naming the node; liveBytes unchanged', async () => {
    const gpu = await getGpu();
    const cases: [string, Uint8Array, Record<string, number[][]>][] = [
      ['ConstantOfShape', singleOpModel('ConstantOfShape', [{ name: 'shape', dims: [1], elemType: INT64 }], { name: 'y', dims: [1e8] }, [], [ints('shape', [1e8])]), {}],
      ['Expand', singleOpModel('Expand', [{ name: 'x', dims: [1] }, { name: 'shape', dims: [1], elemType: INT64 }], { name: 'y', dims: [1e12] }, [], [ints('shape', [1e12])]), { x: [[1]] }],
      ['Tile', singleOpModel('Tile', [{ name: 'x', dims: [1] }, { name: 'reps', dims: [1], elemType: INT64 }], { name: 'y', dims: [1e12] }, [], [ints('reps', [1e12])]), { x: [[1]] }],
    ];
    for (const [op, bytes, feeds] of cases) {
      const model = await loadModel(bytes, { device: gpu });
      const live = gpu.buffers.liveBytes;
      const feed = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, { data: Float32Array.from(v.flat()), dims: [1] }]));
      const e = await rejection(model.run(feed));
      expect(e, op).toBeInstanceOf(SizeLimitError);
      expect((e as Error).message, op).toContain(`${op} node '${op}_0' output 0`);
      expect(gpu.buffers.liveBytes, op).toBe(live);
      await model.dispose();
    }
  });
});

describe('4: a train() that fails changes nothing', () => {
  it('bad examples, arguments, lengths and datasets with holes: typed errors, vectors (CPU and GPU) unchanged', async () => {
    const model = await loadModel(GPT2, { device: await getGpu() });
    const peft = await scaled(model);
    const before = vectors(peft);
    const out = await logits(peft);
    const data = toyData(8, 6, 1);
    const holes: Example[] = [data[0]!, data[1]!];
    holes[3] = data[2]!;
    const cases: [string, () => Promise<unknown>][] = [
      ['id -2', () => new Trainer(peft, { batchSize: 4, maxSteps: 2 }).train([...data, { input_ids: [11, -2, 12] }])],
      ['id 500 ≥ vocab 120', () => new Trainer(peft, { batchSize: 4, maxSteps: 2 }).train([...data, { input_ids: [11, 500] }])],
      ['unknown lrScheduler', async () => new Trainer(peft, { lrScheduler: 'bogus' as TrainingArguments['lrScheduler'] })],
      ['40 tokens > 32 positions', () => new Trainer(peft, { batchSize: 4, maxSteps: 2, maxLength: 64 }).train([...data, { input_ids: Array(40).fill(12) }])],
      ['longer than every bucket', () => new Trainer(peft, { batchSize: 4, maxSteps: 2, maxLength: 16, buckets: [8] }).train([...data, { input_ids: Array(12).fill(12) }])],
      ['seed 1.5', async () => new Trainer(peft, { seed: 1.5 })],
      ['padTokenId 500', () => new Trainer(peft, { batchSize: 4, maxSteps: 2, padTokenId: 500 }).train(data)],
      ['padTokenId -1', async () => new Trainer(peft, { padTokenId: -1 })],
      ['a dataset with a hole', () => new Trainer(peft, { batchSize: 2, maxSteps: 2 }).train(holes)],
      ['labels ≥ vocab', () => new Trainer(peft, { batchSize: 4, maxSteps: 2 }).train([...data, { input_ids: [11, 12], labels: [11, 999] }])],
      ['labels -5', () => new Trainer(peft, { batchSize: 4, maxSteps: 2 }).train([...data, { input_ids: [11, 12], labels: [11, -5] }])],
    ];
    for (const [what, f] of cases) {
      const e = await rejection(f);
      expect(e, what).toBeInstanceOf(IA3Error);
      expect(vectors(peft), what).toEqual(before);
      expect(await logits(peft), what).toEqual(out);
    }
    await model.dispose();
  });
});

describe('5: an accumulation no epoch can fill', () => {
  it('is an InputError at once (8 examples, batch 4, accumulation 3 or 2.5), not a loop that never steps', async () => {
    const model = await loadModel(GPT2, { device: await getGpu() });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const e = await rejection(new Trainer(peft, { batchSize: 4, gradientAccumulationSteps: 3, numEpochs: 1 }).train(toyData(8, 6, 2)));
    expect(e).toBeInstanceOf(InputError);
    expect((e as Error).message).toMatch(/makes no optimizer step: 8 examples make 2 batches of 4, fewer than gradientAccumulationSteps \(3\)/);
    expect(() => new Trainer(peft, { batchSize: 4, gradientAccumulationSteps: 2.5 })).toThrow(/gradientAccumulationSteps must be a positive integer/);
    await model.dispose();
  });
});

describe('6: a lost device, checkpoints and resume', () => {
  const args: TrainingArguments = { learningRate: 0.05, batchSize: 4, maxSteps: 7, loggingSteps: 1, seed: 3, warmupSteps: 2, checkpointSteps: 2 };
  const data = toyData(12, 8, 13);

  /** A fresh device, model and PeftModel: what a reloaded page has. */
  async function fresh(): Promise<{ gpu: GpuContext; model: Model; peft: PeftModel }> {
    const gpu = await createDevice();
    const model = await loadModel(GPT2, { device: gpu });
    return { gpu, model, peft: getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' })) };
  }

  let straight: Promise<number[]> | undefined;
  /** The vectors of the run never interrupted (computed once for both tests). */
  const uninterrupted = (): Promise<number[]> => (straight ??= straightRun());
  async function straightRun(): Promise<number[]> {
    const model = await loadModel(GPT2, { device: await getGpu() });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    await new Trainer(peft, args).train(data);
    const v = vectors(peft);
    await model.dispose();
    return v;
  }

  it('destroy() mid-run: DeviceLostError naming the last checkpoint, whose values the adapter keeps; resumed on a new device, bit for bit', async () => {
    const expected = await uninterrupted();
    const a = await fresh();
    const lostReasons: string[] = [];
    a.gpu.onLost((e) => lostReasons.push(e.reason));
    const store = new MemoryCheckpointStore();
    const trainer = new Trainer(a.peft, args, { checkpoints: store });
    const saved: number[] = [];
    trainer.on('checkpoint', (e) => saved.push(e.step));
    trainer.on('step', (e) => {
      if (e.step >= 3 && saved.length > 0 && !a.gpu.isLost) a.gpu.device.destroy();
    });
    const e = await rejection(trainer.train(data));
    expect(e).toBeInstanceOf(DeviceLostError);
    expect(lostReasons).toEqual(['destroyed']);
    const cp = (await store.load())!;
    expect((e as DeviceLostError).checkpointStep).toBe(cp.step);
    expect(saved.at(-1)).toBe(cp.step);
    expect(cp.step).toBeGreaterThanOrEqual(2);
    expect((e as Error).message).toContain(`the adapter holds the values of step ${cp.step}, the last checkpoint`);
    // The CPU side holds the checkpoint's values, never the pre-training ones.
    expect(vectors(a.peft)).toEqual(cp.tensors.flatMap((t) => Array.from(t.values)));

    const b = await fresh();
    const resumed = Trainer.fromCheckpoint(b.peft, cp);
    expect(resumed.globalStep).toBe(cp.step);
    const steps: number[] = [];
    resumed.on('step', (s) => steps.push(s.step));
    await resumed.train(data);
    expect(steps[0]).toBe(cp.step + 1);
    expect(vectors(b.peft)).toEqual(expected);
    await b.model.dispose();
    b.gpu.destroy();
  });

  it('after a simulated reload: checkpoint bytes (and OPFS) → new device, model and PeftModel → the same vectors bit for bit', async () => {
    const expected = await uninterrupted();
    const a = await fresh();
    const opfs = new OpfsCheckpointStore('reliability-test');
    await opfs.clear();
    const trainer = new Trainer(a.peft, args, { checkpoints: opfs });
    trainer.on('step', (e) => e.step === 3 && trainer.stop());
    const first = await trainer.train(data);
    expect(first.steps).toBeGreaterThanOrEqual(3); // the step in flight when the event came
    expect(first.steps).toBeLessThan(7);
    // Saved when the run stopped; what a page finds after a reload.
    const fromOpfs = (await opfs.load())!;
    expect(fromOpfs.step).toBe(first.steps);
    const bytes = encodeCheckpoint(fromOpfs);
    await a.model.dispose();
    a.gpu.destroy();

    const b = await fresh();
    const cp: Checkpoint = decodeCheckpoint(bytes);
    const resumed = Trainer.fromCheckpoint(b.peft, cp);
    await resumed.train(data);
    expect(vectors(b.peft)).toEqual(expected);
    // Another dataset, base model or adapter config is refused, not silently diverged from.
    const c = Trainer.fromCheckpoint(b.peft, cp);
    expect(await rejection(c.train(toyData(12, 8, 99)))).toBeInstanceOf(InputError);
    const other = getPeftModel(b.model, new IA3Config({ taskType: 'CAUSAL_LM', targetModules: ['c_attn'], feedforwardModules: [] }));
    expect(() => Trainer.fromCheckpoint(other, cp)).toThrow(/other adapter configs/);
    await b.model.dispose();
    b.gpu.destroy();
    await opfs.clear();
  });
});

describe('7: two PeftModels over one base model are isolated', () => {
  it('a second PeftModel with the same adapter name neither resets nor moves the first', async () => {
    const model = await loadModel(GPT2, { device: await getGpu() });
    const base = await logits(model);
    const donor = await scaled(model, 1.5);
    const files = donor.saveAdapter();
    await donor.dispose();
    const first = await loadPeftModel(model, files);
    const firstOut = await logits(first);
    expect(firstOut).not.toEqual(base);
    const second = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    expect(await logits(second)).toEqual(base);
    expect(await logits(first)).toEqual(firstOut);
    await new Trainer(second, { batchSize: 4, maxSteps: 2, learningRate: 0.1 }).train(toyData(8, 6, 4));
    expect(await logits(second)).not.toEqual(base);
    expect(await logits(first)).toEqual(firstOut);
    expect(vectors(first).every((v) => v === 1.5)).toBe(true);
    // Merging writes the shared base weights: refused while the other lives.
    expect(await rejection(first.merge())).toBeInstanceOf(BusyError);
    await second.dispose();
    await first.merge();
    expect(await logits(first)).not.toEqual(base);
    await model.dispose();
  });
});

describe('8: no silent clamping', () => {
  it("ids past the vocabulary or negative, token types past the table: onnxruntime's IndexOutOfRangeError before upload; labels past the classes: InputErrors", async () => {
    const gpu = await getGpu();
    const gpt2 = await loadModel(GPT2, { device: gpu });
    for (const [id, ids] of [[120, [[5, 120]]], [-200, [[5, -200]]]] as const) {
      const e = await rejection(gpt2.run({ input_ids: ids.map((r) => [...r]), attention_mask: [[1, 1]] }));
      expect(e).toBeInstanceOf(IndexOutOfRangeError);
      expect((e as Error).message).toBe(
        `Gather node '/transformer/wte/Gather': indices element out of data bounds, idx=${id} must be within the inclusive range [-120,119] (input 'input_ids' element 1, checked before upload)`,
      );
    }
    await gpt2.dispose();

    const bert = await loadModel(BERT, { device: gpu });
    const feeds = { input_ids: [[2, 7, 9, 3]], attention_mask: [[1, 1, 1, 1]] };
    const types = await rejection(bert.run({ ...feeds, token_type_ids: [[0, 0, 5, 0]] }));
    expect(types).toBeInstanceOf(IndexOutOfRangeError);
    expect((types as Error).message).toMatch(/indices element out of data bounds, idx=5 .*\(input 'token_type_ids' element 2, checked before upload\)/);
    const peft = getPeftModel(bert, new IA3Config({ taskType: 'SEQ_CLS' }));
    const trainer = new Trainer(peft, { batchSize: 2, maxSteps: 1 });
    const e = await rejection(trainer.evaluate([{ input_ids: [2, 7, 3], label: 7 }]));
    expect(e).toBeInstanceOf(InputError);
    expect((e as Error).message).toMatch(/example 0: label is 7, outside \[0, 2\)/);
    const before = vectors(peft);
    expect(await rejection(trainer.train([{ input_ids: [2, 7, 3], label: 1 }, { input_ids: [2, 8, 3], label: 2 }]))).toBeInstanceOf(InputError);
    expect(vectors(peft)).toEqual(before);
    expect(() => new Trainer(peft, { loggingSteps: 1e9 })).toThrow(/loggingSteps must be at most 65536/);
    await bert.dispose();
  });
});

describe('9: concurrent use is refused, never interleaved', () => {
  it('train() twice, two Trainers, merge, setAdapter, loadStateDict and dispose during training; a no-op train() keeps a later loadStateDict', async () => {
    const model = await loadModel(GPT2, { device: await getGpu() });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const data = toyData(8, 6, 5);
    const trainer = new Trainer(peft, { batchSize: 4, maxSteps: 4, loggingSteps: 1 });
    const steps: number[] = [];
    trainer.on('step', (e) => steps.push(e.step));
    const running = trainer.train(data);
    expect(await rejection(trainer.train(data))).toBeInstanceOf(BusyError);
    expect(await rejection(new Trainer(peft, { batchSize: 4, maxSteps: 1 }).train(data))).toBeInstanceOf(BusyError);
    expect(await rejection(peft.merge())).toBeInstanceOf(BusyError);
    expect(await rejection(() => peft.setAdapter('default'))).toBeInstanceOf(BusyError);
    expect(await rejection(() => peft.loadStateDict(peft.stateDict()))).toBeInstanceOf(BusyError);
    expect(await rejection(peft.dispose())).toBeInstanceOf(BusyError);
    expect(await rejection(model.dispose())).toBeInstanceOf(BusyError);
    expect(await rejection(() => trainer.dispose())).toBeInstanceOf(BusyError);
    await running;
    expect(steps).toEqual([1, 2, 3, 4]);

    const state = peft.stateDict();
    for (const t of Object.values(state)) (t.data as Float32Array).fill(0.75);
    peft.loadStateDict(state);
    expect((await trainer.train(data)).steps).toBe(4); // finished: no step
    expect(vectors(peft).every((v) => v === 0.75)).toBe(true);
    await model.dispose();
  });
});

describe('10: dispose() returns every GPU byte', () => {
  it('20 load → train → dispose cycles end at the starting live bytes; disposed objects refuse use', async () => {
    const gpu = await getGpu();
    const data = toyData(8, 6, 6);
    const start = gpu.buffers.liveBytes;
    const after: number[] = [];
    for (let cycle = 0; cycle < 20; cycle++) {
      const model = await loadModel(GPT2, { device: gpu });
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
      const trainer = new Trainer(peft, { batchSize: 4, maxSteps: 1 });
      await trainer.train(data);
      await logits(peft);
      trainer.dispose();
      if (cycle % 2 === 0) await peft.dispose(); // else the model disposes it
      await model.dispose();
      after.push(gpu.buffers.liveBytes);
      if (cycle === 0) {
        expect(await rejection(logits(peft))).toBeInstanceOf(DisposedError);
        expect(await rejection(logits(model))).toBeInstanceOf(DisposedError);
        expect(await rejection(trainer.train(data))).toBeInstanceOf(DisposedError);
        await Promise.all([peft.dispose(), model.dispose()]); // idempotent
        trainer.dispose();
      }
    }
    console.log(`[reliability] live bytes before ${start}, after each of 20 cycles: ${[...new Set(after)].join(', ')}`);
    expect(after).toEqual(Array(20).fill(start));
  });
});
