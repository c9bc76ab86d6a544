// Device buffer limits on the GPU: the demo's GPT-2 (embedding and head 3 MiB each) on a device
// that plans for a 64 KiB binding limit — embedding in row blocks, matmul weights in column blocks
// (both written into their blocks as the file streams in, onnx/weights-sink.ts),
// the fused head over vocabulary blocks, the logits in row parts — gives the logits, the loss and
// the IA3 gradients of the same model on a device without the limit, and no buffer it binds exceeds
// the limit. The memory plan predicts the compiled plan's allocations. The logits of the last
// position alone equal the last position of all the logits. A step that cannot fit is a SizeLimitError
// naming the tensor before any GPU work: no buffer allocated, no pipeline compiled.
import { describe, expect, it } from 'vitest';
import { SizeLimitError } from '../../src/errors.js';
import { createDevice } from '../../src/gpu/device.js';
import { getPeftModel, IA3Config, loadModel, type TensorData } from '../../src/index.js';
import { getGpu } from '../util/gpu.js';
import { closeness } from '../util/tensors.js';

const BASE = '/demo/public/models/sotu-gpt2/';
const KiB = 1024;

function batch(rows: number, seq: number, seed: number): Record<string, TensorData> {
  let s = seed;
  const ids = BigInt64Array.from({ length: rows * seq }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return BigInt(s % 4095);
  });
  const mask = BigInt64Array.from({ length: rows * seq }, (_, i) => (i % seq < seq - (i < seq ? 0 : 3) ? 1n : 0n));
  return { input_ids: { data: ids, dims: [rows, seq] }, attention_mask: { data: mask, dims: [rows, seq] } };
}

function expectSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rtol = 1e-5): void {
  expect(got.length, what).toBe(want.length);
  const c = closeness(got, want, { rtol, atol: 1e-6 });
  expect(c.worst, `${what}: worst at ${c.at}, max |diff| ${c.maxAbs}`).toBeLessThanOrEqual(1);
}

describe('device buffer limits', () => {
  it('under a 64 KiB binding limit, logits, loss and IA3 gradients equal those without it', async () => {
    const gpu = await getGpu();
    const small = await createDevice({ limits: { maxStorageBufferBindingSize: 64 * KiB } });
    expect(small.traits.limits.maxStorageBufferBindingSize).toBe(64 * KiB);
    const full = await loadModel(BASE, { device: gpu });
    const split = await loadModel(BASE, { device: small });
    const feeds = batch(2, 8, 1); // 16 rows of 16 KiB logits: four parts
    const shapes = { input_ids: [2, 8], attention_mask: [2, 8] };

    const predicted = split.memoryPlan(shapes);
    const want = await full.run(feeds);
    const got = await split.run(feeds);
    expectSame(got.logits!.data as Float32Array, want.logits!.data as Float32Array, 'logits');
    const { plan } = await split.planFor(shapes);
    expect(predicted.activations).toBe(plan.memory.activationBytes);
    expect(predicted.inputs).toBe(plan.memory.inputBytes);
    expect(predicted.constants).toBe(plan.memory.residentBytes);
    expect(predicted.weights).toBe(plan.memory.sharedBytes);
    for (const [v, b] of plan.buffers) expect(b.size, v).toBeLessThanOrEqual(64 * KiB);
    for (const b of split.weightBuffers.values()) expect(b.size).toBeLessThanOrEqual(64 * KiB);

    const last = await split.run(feeds, ['logits'], { positions: 'last' });
    expect(last.logits!.dims).toEqual([2, 1, 4096]);
    const all = want.logits!.data as Float32Array;
    const lastRows = Float32Array.from([...all.subarray(7 * 4096, 8 * 4096), ...all.subarray(15 * 4096, 16 * 4096)]);
    expectSame(last.logits!.data as Float32Array, lastRows, 'last position');

    const labels = { data: BigInt64Array.from(feeds.input_ids!.data as BigInt64Array, (v, i) => ((feeds.attention_mask!.data as BigInt64Array)[i] ? v : -100n)), dims: [2, 8] };
    const results = [];
    for (const model of [full, split]) {
      const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
      for (const t of peft.trainingModel().trainables) peft.setParamValues(t.name, Float32Array.from({ length: t.param.values.length }, (_, i) => 0.8 + 0.4 * ((i * 7919) % 97) / 97));
      results.push(await peft.lossAndGradients({ inputs: feeds, labels }));
    }
    const [a, b] = results as [(typeof results)[0], (typeof results)[0]];
    expect(Math.abs(b.loss - a.loss) / a.loss).toBeLessThan(1e-5);
    for (const [key, g] of Object.entries(a.gradients)) expectSame(b.gradients[key]!.data as Float32Array, g.data as Float32Array, key, 1e-4);
    await full.dispose();
    await split.dispose();
    small.destroy();
  });

  it('refuses a plan that cannot fit with a SizeLimitError before any GPU work', async () => {
    const tiny = await createDevice({ limits: { maxStorageBufferBindingSize: 16 * KiB } });
    const model = await loadModel(BASE, { device: tiny });
    const live = tiny.buffers.liveBytes;
    const compiled = tiny.pipelines.compiled;
    const error = await model.run(batch(2, 8, 2)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SizeLimitError);
    const e = error as SizeLimitError;
    expect(e.limit).toBe(16 * KiB);
    expect(e.size).toBeGreaterThan(16 * KiB);
    expect(e.message).toMatch(/^tensor '.+'.*: [\d,]+ bytes exceed the limit of 16,384 bytes \(the device's maxStorageBufferBindingSize: /);
    expect(() => model.memoryPlan({ input_ids: [2, 8], attention_mask: [2, 8] })).toThrow(SizeLimitError);
    expect(tiny.buffers.liveBytes).toBe(live);
    expect(tiny.pipelines.compiled).toBe(compiled);
    tiny.destroy();
  });
});
