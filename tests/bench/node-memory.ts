// Planned and measured GPU memory of an IA3 training step in Node on Dawn (issue 14's "planned and
// measured peak GPU bytes of an IA3 step / weight bytes", goal ≤ 1.6): loads a causal LM, prints
// `memoryPlan` for each recompute choice, with activations kept in f32 and in f16, at batch ×
// sequence (pure planning: nothing runs), then, with --step, runs one step (loss and gradients)
// with the default choices — or those of --recompute=<choice> and --activations=<f32|f16|bf16> —
// and prints the buffer pool's peak of live bytes over it next to the plan.
//
// Usage: node tests/bench/node-run.mjs tests/bench/node-memory.ts <model folder or .onnx> <batch> <sequence> [--step] [--recompute=none] [--activations=f16]
import { create } from 'webgpu';
import { createDevice } from '../../src/gpu/device.js';
import { getPeftModel, IA3Config, loadModel, type ActivationPrecision, type Recompute, type TensorData } from '../../src/index.js';

const [path, b, s, ...flags] = process.argv.slice(2);
if (!path || !b || !s) throw new Error('usage: node-memory.ts <model folder or .onnx> <batch> <sequence> [--step]');
const [batch, sequence] = [Number(b), Number(s)];
const MiB = 2 ** 20;
const mib = (x: number): string => `${(x / MiB).toFixed(1)} MiB`;

const gpu = await createDevice({ gpu: create([]) });
const model = await loadModel(path, { device: gpu });
const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.description}`);
const flag = (name: string): string | undefined => flags.find((f) => f.startsWith(`--${name}=`))?.slice(name.length + 3);
const chosen = { recompute: (flag('recompute') ?? 'cheap') as Recompute, activationPrecision: (flag('activations') ?? 'f32') as ActivationPrecision };
for (const activationPrecision of ['f32', 'f16'] as const) {
  for (const recompute of ['cheap', 'none', 'layers'] as const) {
    const p = peft.memoryPlan({ batch, sequence, recompute, activationPrecision });
    console.log(
      `planned ${batch}×${sequence}, recompute '${recompute}', activations ${activationPrecision}: ${mib(p.total)} = ${(p.total / p.weights).toFixed(3)}× the weights ` +
        `(weights ${mib(p.weights)}, activations ${mib(p.activations)}, inputs ${mib(p.inputs)}, constants ${mib(p.constants)}, uniforms ${mib(p.uniforms)})`,
    );
  }
}
if (flags.includes('--step')) {
  const n = batch * sequence;
  const ids: TensorData = { data: new BigInt64Array(n).map((_, i) => BigInt(1 + ((i * 7919) % 500))), dims: [batch, sequence] };
  const inputs = { input_ids: ids, attention_mask: { data: new BigInt64Array(n).fill(1n), dims: [batch, sequence] } };
  const planned = peft.memoryPlan({ batch, sequence, ...chosen });
  gpu.buffers.resetPeak();
  const t0 = performance.now();
  await peft.lossAndGradients({ inputs, labels: ids, ...chosen });
  const seconds = (performance.now() - t0) / 1000;
  // The pool's live bytes hold every weight the model uploaded; the plan counts those its step reads.
  const peak = gpu.buffers.peakLiveBytes - (model.weightBytes - planned.weights);
  console.log(`measured ${batch}×${sequence}, recompute '${chosen.recompute}', activations ${chosen.activationPrecision} (one step, ${seconds.toFixed(1)} s): peak ${mib(peak)} = ${(peak / planned.weights).toFixed(3)}× the weights; planned ${mib(planned.total)}`);
}
await model.dispose();
gpu.destroy();
process.exit(0);
