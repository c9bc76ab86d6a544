// IA3 in Node on Dawn: gradients of every vector equal PyTorch's (float64, PEFT placement, from
// tests/fixtures/generate.py) for a causal LM (GPT-2) and a classifier (BERT); a Trainer run lowers
// the loss; an adapter saved to disk loads back from disk into a model loaded from a path with the
// same tensors and outputs; an adapter PEFT wrote gives PEFT's outputs.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getPeftModel, IA3Config, loadModel, loadPeftModel, Trainer, type StepEvent, type TensorData } from '../../src/index.js';
import { getGpu } from '../util/node-gpu.js';
import { closeness, relativeError } from '../util/tensors.js';

interface Json {
  dims: number[];
  data: number[];
}
interface IA3Reference {
  adapters: Record<string, Record<string, Json>>;
  cases: { name: string; active_adapters: string[]; inputs: Record<string, Json>; labels: Json; loss: number; grads: Record<string, Record<string, Json>> }[];
}

const floats = (t: Record<string, Json>): Record<string, TensorData> =>
  Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { data: Float32Array.from(v.data), dims: v.dims }]));
const ints = (v: Json): TensorData => ({ data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims });

describe.each(['gpt2', 'bert'])('%s', (name) => {
  it('IA3 loss and gradients equal PyTorch', async () => {
    const ref = JSON.parse(readFileSync(`tests/fixtures/${name}/ia3_reference.json`, 'utf8')) as IA3Reference;
    const model = await loadModel(`tests/fixtures/${name}/onnx/model_opset17.onnx`, { device: await getGpu() });
    const peft = getPeftModel(model, new IA3Config());
    peft.loadStateDict(floats(ref.adapters.default!));
    const cases = ref.cases.filter((c) => c.active_adapters.join() === 'default');
    expect(cases.length).toBeGreaterThan(0);
    for (const c of cases) {
      const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, ints(v)]));
      const { loss, adapterGradients } = await peft.lossAndGradients({ inputs, labels: ints(c.labels) });
      expect(Math.abs(loss - c.loss) / Math.abs(c.loss), `${name}/${c.name}: loss ${loss} vs ${c.loss}`).toBeLessThan(1e-4);
      const want = c.grads.default!;
      expect(Object.keys(adapterGradients.default!).sort()).toEqual(Object.keys(want).sort());
      for (const [key, w] of Object.entries(want)) {
        const got = adapterGradients.default![key]!;
        expect(got.dims).toEqual(w.dims);
        expect(relativeError(got.data as Float32Array, w.data), `${name}/${c.name}: ${key}`).toBeLessThan(1e-3);
      }
    }
    await model.dispose();
  });
});

it('a Trainer run lowers the loss of a learnable toy language', async () => {
  // Uniform over 8 of GPT-2's 120 tokens: the frozen random model starts near ln 120 ≈ 4.8 nats.
  let s = 7;
  const rand = (k: number): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % k;
  const data = Array.from({ length: 32 }, () => ({ input_ids: Array.from({ length: 12 }, () => 10 + rand(8)) }));
  const model = await loadModel('tests/fixtures/gpt2', { device: await getGpu() });
  const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
  const trainer = new Trainer(peft, { learningRate: 0.1, batchSize: 8, maxSteps: 20, loggingSteps: 5, seed: 3, warmupSteps: 2 });
  const steps: StepEvent[] = [];
  trainer.on('step', (e) => steps.push(e));
  const before = await trainer.evaluate(data);
  await trainer.train(data);
  const after = await trainer.evaluate(data);
  console.log(`[train] loss ${before.loss.toFixed(4)} → ${after.loss.toFixed(4)}, ${steps.at(-1)!.tokensPerSecond.toFixed(0)} tokens/s`);
  expect(steps.map((e) => e.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  expect(steps.every((e) => Number.isFinite(e.loss) && Number.isFinite(e.gradNorm))).toBe(true);
  expect(after.loss).toBeLessThan(0.75 * before.loss);
  await model.dispose();
});

describe('adapter files on disk', () => {
  const feeds = { input_ids: [[46, 32, 18, 7]], attention_mask: [[1, 1, 1, 1]] };

  it('save → files → load into a model loaded from a path: same tensors, same outputs', async () => {
    const gpu = await getGpu();
    const model = await loadModel('tests/fixtures/gpt2', { device: gpu });
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const state = peft.stateDict();
    let k = 0;
    for (const t of Object.values(state)) (t.data as Float32Array).forEach((v, i, a) => (a[i] = v + 0.05 * Math.sin(++k)));
    peft.loadStateDict(state);
    const before = Array.from((await peft.run(feeds)).logits!.data as Float32Array);
    const dir = mkdtempSync(join(tmpdir(), 'ia3-adapter-'));
    for (const [file, content] of Object.entries(peft.saveAdapter())) writeFileSync(join(dir, file), content);

    const fresh = await loadModel('tests/fixtures/gpt2/onnx/model.onnx', { device: gpu });
    const loaded = await loadPeftModel(fresh, {
      'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
      'adapter_config.json': readFileSync(join(dir, 'adapter_config.json'), 'utf8'),
    });
    expect(loaded.stateDict()).toEqual(peft.stateDict());
    expect(Array.from((await loaded.run(feeds)).logits!.data as Float32Array)).toEqual(before);
    await model.dispose();
    await fresh.dispose();
  });

  it("an adapter PEFT wrote gives PEFT's outputs", async () => {
    const dir = 'tests/fixtures/peft/gpt2';
    const ref = JSON.parse(readFileSync(`${dir}/outputs.json`, 'utf8')) as { base_model: string; cases: { name: string; inputs: Record<string, Json>; outputs: { logits: Json } }[] };
    const model = await loadModel(ref.base_model, { device: await getGpu() });
    const peft = await loadPeftModel(model, {
      'adapter_model.safetensors': readFileSync(`${dir}/adapter_model.safetensors`),
      'adapter_config.json': readFileSync(`${dir}/adapter_config.json`, 'utf8'),
    });
    for (const c of ref.cases) {
      const got = (await peft.run(Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, ints(v)])))).logits!;
      const { worst, at } = closeness(got.data as Float32Array, c.outputs.logits.data, { rtol: 2e-3, atol: 1e-4 });
      expect(worst, `${c.name}: element ${at}`).toBeLessThanOrEqual(1);
    }
    await model.dispose();
  });
});
