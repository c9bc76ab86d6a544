// Precision benchmarks: the llama fixture's fp32 export against its fp16, 4-bit (incl. GatherBlockQuantized), QDQ int8 and q8 variants
// (tests/fixtures/real/llama-variants, tiny: hidden 64, 2 layers), all in the same page and run.
// Per variant: GPU bytes of the frozen weights / the file's bytes, JS heap after load / the file's
// bytes (the model loaded from its URL or path, streaming, as a user's would be; the heap read
// exactly before and after the load, after collections: run.mjs gives Chromium
// --enable-precise-memory-info and both runtimes gc), and forward and IA3 training-step time as ratios to the fp32 model's. These files are tiny:
// every tensor is under the loader's KEEP_BYTES, so all of them stay on the CPU as well and the heap
// ratio says what a small model costs; the scale suite measures the streaming at 124M.
import { getPeftModel, IA3Config, loadModel, type TensorData } from '../../src/index.js';
import { type BenchContext, round, timeForwardAndStep } from './harness.js';

const FILES = ['onnx/model.onnx', 'onnx/model_fp16.onnx', 'onnx/model_fp16_weights.onnx', 'onnx/model_q4.onnx', 'onnx/model_q4_b128_zp.onnx', 'onnx/model_q4f16.onnx', 'onnx/model_q4_gather.onnx', 'onnx/model_int8_qdq.onnx', 'onnx/model_quantized.onnx', 'onnx/model_quantized_per_channel.onnx'];

export async function precisionSuite({ gpu, quick, rows, log, readFile, modelSource, heapBytes }: BenchContext): Promise<void> {
  const [batch, seq] = quick ? [1, 16] : [4, 32];
  const n = batch * seq;
  const ids = new BigInt64Array(n).map((_, i) => BigInt(4 + ((i * 7919) % 100)));
  const feeds: Record<string, TensorData> = {
    input_ids: { data: ids, dims: [batch, seq] },
    attention_mask: { data: new BigInt64Array(n).fill(1n), dims: [batch, seq] },
    position_ids: { data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % seq)), dims: [batch, seq] },
  };
  const reps = quick ? 3 : 10;
  let base: { forward: number; step: number } | undefined;
  // One variant, in a function of its own so that nothing of the model is reachable once it returns.
  const variant = async (path: string) => {
    const heap0 = await heapBytes();
    const model = await loadModel(modelSource(path), { device: gpu });
    const heap = (await heapBytes()) - heap0;
    const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
    const { tForward, tStep } = await timeForwardAndStep(gpu, peft, feeds, reps);
    const weights = model.weightBytes;
    await model.dispose();
    return { heap, tForward, tStep, weights };
  };
  for (const file of FILES) {
    const path = file === 'onnx/model.onnx' ? 'tests/fixtures/llama/onnx/model.onnx' : `tests/fixtures/real/llama-variants/${file}`;
    const fileBytes = (await readFile(path)).length;
    const { heap, tForward, tStep, weights } = await variant(path);
    base ??= { forward: tForward, step: tStep };
    const name = `llama ${file.replace('onnx/', '')}`;
    rows.push({ suite: 'precision', name: `${name} GPU weight bytes / file bytes`, value: weights, unit: 'B', ratio: round(weights / fileBytes), baseline: `file (${fileBytes} B)` });
    rows.push({ suite: 'precision', name: `${name} JS heap after load / file bytes`, value: heap, unit: 'B', ratio: round(heap / fileBytes), baseline: `file (${fileBytes} B); lower is better` });
    rows.push({ suite: 'precision', name: `${name} forward`, value: round(tForward * 1000), unit: 'ms', ratio: round(tForward / base.forward), baseline: `fp32 forward (${round(base.forward * 1000)} ms)` });
    rows.push({ suite: 'precision', name: `${name} training step`, value: round(tStep * 1000), unit: 'ms', ratio: round(tStep / base.step), baseline: `fp32 step (${round(base.step * 1000)} ms)` });
    log(`precision: ${name}: weights ${weights} B on the GPU, heap +${heap} B vs file ${fileBytes} B, forward ${(tForward * 1000).toFixed(2)} ms, step ${(tStep * 1000).toFixed(2)} ms`);
  }
}
