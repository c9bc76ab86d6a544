// Gradients of every IA3 vector on WebGPU equal PyTorch's (float64, PEFT placement, computed by
// tests/fixtures/generate.py) on every fixture: causal-LM loss for GPT-2 and Llama, sequence
// classification for BERT and DistilBERT, with padding in the attention mask and with two active
// adapters (whose vectors multiply). Relative error per vector: ‖g − g_torch‖ / ‖g_torch‖ < 1e-3;
// and against the float64 CPU executor running the same backward IR (< 1e-4).
import { describe, expect, it } from 'vitest';
import { loadModel, type TensorData } from '../../src/index.js';
import { IA3Config } from '../../src/peft/config.js';
import { getPeftModel } from '../../src/peft/model.js';
import { getGpu } from '../util/gpu.js';
import { relativeError } from '../util/tensors.js';

interface Json {
  dtype: string;
  dims: number[];
  data: number[];
}
interface IA3Reference {
  peft_config: { target_modules: string[]; feedforward_modules: string[] };
  adapters: Record<string, Record<string, Json>>;
  cases: {
    name: string;
    active_adapters: string[];
    inputs: Record<string, Json>;
    labels: Json;
    loss: number;
    grads: Record<string, Record<string, Json>>;
  }[];
}

const floats = (t: Record<string, Json>): Record<string, TensorData> =>
  Object.fromEntries(Object.entries(t).map(([k, v]) => [k, { data: Float32Array.from(v.data), dims: v.dims }]));
const ints = (v: Json): TensorData => ({ data: BigInt64Array.from(v.data.map(BigInt)), dims: v.dims });

describe.each(['bert', 'gpt2', 'llama', 'distilbert'])('%s', (name) => {
  it('IA3 gradients equal PyTorch (one adapter, padding, two adapters)', async () => {
    const gpu = await getGpu();
    const ref = (await (await fetch(`/tests/fixtures/${name}/ia3_reference.json`)).json()) as IA3Reference;
    const model = await loadModel(`/tests/fixtures/${name}/onnx/model_opset17.onnx`, { device: gpu });
    const config =
      name === 'distilbert'
        ? new IA3Config({ targetModules: ref.peft_config.target_modules, feedforwardModules: ref.peft_config.feedforward_modules })
        : new IA3Config();
    const peft = getPeftModel(model, config);
    peft.loadStateDict(floats(ref.adapters.default!));
    peft.addAdapter('second', config);
    peft.loadStateDict(floats(ref.adapters.second!), 'second');
    for (const c of ref.cases) {
      peft.setAdapter(c.active_adapters);
      const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, ints(v)]));
      const { loss, adapterGradients } = await peft.lossAndGradients({ inputs, labels: ints(c.labels) });
      // The float64 CPU executor on the same backward IR agrees with the GPU.
      const cpu = peft.lossAndGradientsReference({ inputs, labels: ints(c.labels) });
      expect(Math.abs(loss - cpu.loss) / Math.abs(cpu.loss), `${name}/${c.name}: loss vs CPU`).toBeLessThan(1e-5);
      for (const adapter of c.active_adapters) {
        for (const [key, got] of Object.entries(adapterGradients[adapter]!)) {
          expect(relativeError(got.data as Float32Array, Array.from(cpu.gradients[`${adapter}/${key}`]!)), `${name}/${c.name}: ${key} vs CPU`).toBeLessThan(1e-4);
        }
      }
      expect(Math.abs(loss - c.loss) / Math.abs(c.loss), `${name}/${c.name}: loss ${loss} vs ${c.loss}`).toBeLessThan(1e-4);
      for (const adapter of c.active_adapters) {
        for (const [key, want] of Object.entries(c.grads[adapter]!)) {
          const got = adapterGradients[adapter]![key]!;
          expect(got.dims).toEqual(want.dims);
          const err = relativeError(got.data as Float32Array, want.data);
          expect(err, `${name}/${c.name}/${adapter}: ${key}`).toBeLessThan(1e-3);
        }
      }
    }
    await model.dispose();
  });
});
