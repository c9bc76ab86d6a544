// Memory of a model load from file paths in Node (issue 14's "JS heap after load / file bytes",
// goal ≤ 0.25): loads a model folder or .onnx path on Dawn, streaming, and prints the load time,
// the JS heap (ArrayBuffers included, after a full collection) at its peak during the load (read at
// every progress event, about one per MiB) and after it, each as a ratio to the files' bytes, and
// the GPU weight bytes / file bytes. Needs gc: node-run.mjs starts Node with --expose-gc.
//
// Usage: node tests/bench/node-run.mjs tests/bench/node-load.ts <model folder or .onnx> [chunk bytes]
import { create } from 'webgpu';
import { createDevice } from '../../src/gpu/device.js';
import { loadModel } from '../../src/index.js';
import type { LoadProgress } from '../../src/onnx/stream.js';

const [path, chunk] = process.argv.slice(2);
if (!path) throw new Error('usage: node-load.ts <model folder or .onnx> [chunk bytes]');
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc (node-run.mjs does)');
const heap = (): number => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

const gpu = await createDevice({ gpu: create([]) });
const MiB = 2 ** 20;
const before = heap();
let peak = 0;
let last: LoadProgress | undefined;
const t0 = performance.now();
const model = await loadModel(path, { device: gpu, ...(chunk ? { fileChunkBytes: Number(chunk) } : {}), onProgress: (p) => {
    last = p;
    peak = Math.max(peak, heap() - before);
  },
});
const seconds = (performance.now() - t0) / 1000;
const after = heap() - before;
// Every byte of the .onnx and its external data passes through the progress count.
const fileBytes = last?.loadedBytes ?? NaN;
const r = (x: number): string => (x / fileBytes).toFixed(3);
console.log(`adapter: ${gpu.adapterInfo.vendor} ${gpu.adapterInfo.architecture} ${gpu.adapterInfo.description}`);
console.log(`${path}: ${(fileBytes / MiB).toFixed(1)} MiB of files, ${last?.tensors} tensors, read in chunks of ${chunk ?? 'the default'} bytes`);
console.log(`load: ${seconds.toFixed(1)} s`);
console.log(`JS heap during load (peak at progress events): +${(peak / MiB).toFixed(1)} MiB, ${r(peak)} of the files`);
console.log(`JS heap after load: +${(after / MiB).toFixed(1)} MiB, ${r(after)} of the files`);
console.log(`GPU weight bytes: ${(model.weightBytes / MiB).toFixed(1)} MiB, ${r(model.weightBytes)} of the files`);
await model.dispose();
gpu.destroy();
process.exit(0);
