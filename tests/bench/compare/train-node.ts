// The toolkit's half of the PyTorch + PEFT comparison (compare.py): IA3 training of the exported
// model on Dawn, in Node, with the batches, hyper-parameters and initial vectors compare.py gives,
// timed the way compare.py times PyTorch. Run through node-run.mjs (bundled, Vulkan environment):
//   node tests/bench/node-run.mjs tests/bench/compare/train-node.ts <spec.json> <result.json>
//
// Timing: every step's loss is read back (loggingSteps 1, as compare.py calls loss.item() every
// step); a step's event arrives once the GPU finished it, so steps W+1..N take t(N) − t(W), after
// W warm-up steps (pipeline compilation, first uploads). Memory: the buffer pool's peak of live
// bytes over the run, weights included (all GPU memory the toolkit allocates goes through it, but
// uniform and staging buffers of a few bytes).
import { readFile, writeFile } from 'node:fs/promises';
import { create } from 'webgpu';
import { adapterName, createDevice, getPeftModel, IA3Config, loadModel, Trainer, type StepEvent } from '../../../src/index.js';
import { shuffled } from '../../../src/train/data.js';

interface Spec {
  model_dir: string;
  examples: number[][];
  eval: number[][];
  batch: number;
  seq: number;
  steps: number;
  timing_warmup: number;
  lr: number;
  weight_decay: number;
  beta1: number;
  beta2: number;
  eps: number;
  max_grad_norm: number;
  seed: number;
  target_modules: string[];
  feedforward_modules: string[];
  require_hardware: boolean;
}

const [specPath, resultPath] = process.argv.slice(2);
if (!specPath || !resultPath) throw new Error('usage: train-node.mjs <spec.json> <result.json>');
const spec = JSON.parse(await readFile(specPath, 'utf8')) as Spec;
if (spec.examples.length !== spec.steps * spec.batch) throw new Error(`spec: ${spec.examples.length} examples for ${spec.steps} steps of ${spec.batch}`);

const gpu = await createDevice({ gpu: create([]) });
const info = gpu.adapterInfo;
console.log(`[train-node] adapter: ${adapterName(info)} (vendor ${info.vendor || '?'}, architecture ${info.architecture || '?'}${info.isSoftware ? ', software' : ''})`);
if (spec.require_hardware && info.isSoftware) {
  throw new Error(`Dawn gave the software adapter '${adapterName(info)}': no Vulkan driver for the GPU was found (install the vendor's Vulkan driver, e.g. the NVIDIA driver's libnvidia-gl / nvidia_icd.json, or name it in VK_ICD_FILENAMES)`);
}

const model = await loadModel(spec.model_dir, { device: gpu });
const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM', targetModules: spec.target_modules, feedforwardModules: spec.feedforward_modules }));
const trainer = new Trainer(peft, {
  learningRate: spec.lr,
  batchSize: spec.batch,
  maxSteps: spec.steps,
  lrScheduler: 'constant',
  warmupSteps: 0,
  weightDecay: spec.weight_decay,
  adamBeta1: spec.beta1,
  adamBeta2: spec.beta2,
  adamEpsilon: spec.eps,
  maxGradNorm: spec.max_grad_norm,
  loggingSteps: 1,
  seed: spec.seed,
  maxLength: spec.seq,
  buckets: [spec.seq],
});
const examples = spec.examples.map((ids) => ({ input_ids: ids }));
const evalSet = spec.eval.map((ids) => ({ input_ids: ids }));
// The order the Trainer draws examples in: one epoch of exactly `steps` batches, shuffled by
// (seed, epoch 0) as `batches` does. compare.py trains PyTorch on the same batches, in this order;
// the first step's loss (before any update) checks that both saw the same batch.
const order = shuffled(examples.map((_, i) => i), spec.seed, 0);

const evalBefore = (await trainer.evaluate(evalSet)).loss;
const steps: StepEvent[] = [];
const times: number[] = [];
trainer.on('step', (e) => {
  steps.push(e);
  times.push(performance.now());
});
gpu.buffers.resetPeak();
const t0 = performance.now();
await trainer.train(examples);
const wall = (performance.now() - t0) / 1000;
const peakBytes = gpu.buffers.peakLiveBytes;
const evalAfter = (await trainer.evaluate(evalSet)).loss;

const w = spec.timing_warmup;
const timed = spec.steps - w;
const seconds = (times[spec.steps - 1]! - times[w - 1]!) / 1000;
const state = Object.fromEntries(Object.entries(peft.stateDict()).map(([k, t]) => [k, Array.from(t.data as Float32Array)]));
await writeFile(
  resultPath,
  JSON.stringify({
    adapter: { name: adapterName(info), ...info },
    order: Array.from({ length: spec.steps }, (_, s) => order.slice(s * spec.batch, (s + 1) * spec.batch)),
    step_losses: steps.map((e) => e.loss),
    step_grad_norms: steps.map((e) => e.gradNorm),
    eval_loss_before: evalBefore,
    eval_loss_after: evalAfter,
    tokens_per_second: (timed * spec.batch * spec.seq) / seconds,
    timed_steps: timed,
    timed_seconds: seconds,
    train_wall_seconds: wall,
    peak_bytes: peakBytes,
    weights_bytes: model.weightBytes,
    trainable_parameters: peft.printTrainableParameters(),
    state,
  }),
);
gpu.destroy();
