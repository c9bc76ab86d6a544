// Training benchmarks on the realistic-width fixture (gpt2-bench: 6 layers × 384 hidden, weights
// refilled with seeded random values): one training step (forward + causal-LM loss + backward of
// the IA3 vectors, one command buffer) as a ratio to the same model's forward pass (goal ≤ 2.2×:
// IA3 needs no weight gradients), tokens per second, and GPU memory of the training plan as a
// ratio to the frozen weights' size. `stepAndForward` is shared with the scale suite.
import { getPeftModel, IA3Config, loadModel, type Model, type TensorData } from '../../src/index.js';
import { type BenchContext, round, timeForwardAndStep } from './harness.js';
import { syntheticExternalData } from './models.js';

/** The gpt2-bench fixture with its seeded external data. */
export async function loadGpt2Bench(gpu: BenchContext['gpu'], readFile: BenchContext['readFile']): Promise<Model> {
  const bytes = await readFile('tests/fixtures/gpt2-bench/onnx/model.onnx');
  const external = syntheticExternalData(bytes);
  return loadModel(bytes, { device: gpu, externalData: { [external.location]: external.bytes } });
}

/**
 * Seconds of one IA3 training step (forward + causal-LM loss + backward, no readback) and of the
 * adapted model's forward on `batch` × `seq` tokens, each the median of `reps` in one submission.
 */
export async function stepAndForward(gpu: BenchContext['gpu'], model: Model, batch: number, seq: number, reps: number) {
  const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
  const n = batch * seq;
  const ids = new BigInt64Array(n).map((_, i) => BigInt(1 + ((i * 7919) % 500)));
  const feeds: Record<string, TensorData> = { input_ids: { data: ids, dims: [batch, seq] }, attention_mask: { data: new BigInt64Array(n).fill(1n), dims: [batch, seq] } };
  return { ...(await timeForwardAndStep(gpu, peft, feeds, reps)), peft };
}

export async function trainSuite({ gpu, quick, rows, log, readFile }: BenchContext): Promise<void> {
  const model = await loadGpt2Bench(gpu, readFile);
  const [batch, seq] = quick ? [1, 32] : [4, 128];
  const n = batch * seq;
  const { tStep, tForward, forward, step: g } = await stepAndForward(gpu, model, batch, seq, quick ? 2 : 5);

  const label = `gpt2-bench b${batch}×s${seq}`;
  rows.push({
    suite: 'train',
    name: `${label} training step / forward`,
    value: round(tStep * 1000),
    unit: 'ms',
    ratio: round(tStep / tForward),
    baseline: `forward (${round(tForward * 1000)} ms); lower is better`,
    goal: '≤ 2.2×',
    extra: { forwardDispatches: forward.dispatchCount, stepDispatches: g.plan.dispatchCount, backwardNodes: g.summary.nodeCounts, savedActivations: g.summary.savedActivations.length },
  });
  rows.push({ suite: 'train', name: `${label} tokens/s (training)`, value: round(n / tStep), unit: 'tok/s' });
  const weights = model.weightBytes;
  const trainMemory = weights + g.plan.memory.activationBytes + g.plan.memory.inputBytes + g.plan.memory.residentBytes;
  rows.push({
    suite: 'train',
    name: `${label} GPU memory of a training step / weights`,
    value: round(trainMemory / 2 ** 20),
    unit: 'MiB',
    ratio: round(trainMemory / weights),
    baseline: `frozen weights (${round(weights / 2 ** 20)} MiB); lower is better`,
  });
  log(`train: step ${(tStep * 1000).toFixed(1)} ms vs forward ${(tForward * 1000).toFixed(1)} ms (${(tStep / tForward).toFixed(2)}×), ${(n / tStep).toFixed(0)} tok/s, memory ${(trainMemory / 2 ** 20).toFixed(1)} MiB vs weights ${(weights / 2 ** 20).toFixed(1)} MiB`);
  await model.dispose();
}
