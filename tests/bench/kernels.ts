// Kernel benchmarks.
// - IA3 forward and fused backward: effective bandwidth as a ratio to the plain copy kernel on
//   buffers of the same size (16M elements), same page, same run, trials interleaved; copy and
//   IA3 both tuned for the adapter (grid cap, tiling).
// - MatMul at transformer shapes: GFLOP/s as a ratio to onnxruntime-web's WebGPU MatMul on the
//   same shapes, inputs resident on the GPU, outputs left on the GPU, one submission per run.
import * as ort from 'onnxruntime-web/webgpu';
import { Plan } from '../../src/compile/plan.js';
import { awaitGpu } from '../../src/runtime.js';
import { copyProgram } from '../../src/gpu/copy.js';
import type { GpuContext } from '../../src/gpu/device.js';
import type { Attrs } from '../../src/ir/graph.js';
import type { PlanGraph, PlanNode } from '../../src/ir/static-graph.js';
import { sizeOf, type TensorType } from '../../src/ir/tensor.js';
import { singleOpModel } from '../util/onnx-build.js';
import { median, round, timeAsync, timeInterleaved, type BenchContext } from './harness.js';

const f32 = (dims: number[]): TensorType => ({ dtype: 'float32', dims });

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** A plan of one node: runtime inputs fed once, `resident` inputs uploaded as weights. */
async function singleNodePlan(
  gpu: GpuContext,
  opType: string,
  inputs: { name: string; type: TensorType; resident?: boolean }[],
  outputs: { name: string; type: TensorType }[],
  attrs: Attrs = {},
): Promise<Plan> {
  const node: PlanNode = { name: opType, opType, inputs: inputs.map((i) => i.name), outputs: outputs.map((o) => o.name), attrs, opset: 17 };
  const graph: PlanGraph = {
    inputs: inputs.filter((i) => !i.resident).map(({ name, type }) => ({ name, type })),
    outputs: outputs.map((o) => o.name),
    nodes: [node],
    types: new Map([...inputs, ...outputs].map((v) => [v.name, v.type])),
    constants: new Map(),
    resident: new Map(inputs.filter((i) => i.resident).map((i, k) => [i.name, { type: i.type, data: fill(sizeOf(i.type.dims), 7 + k) }])),
  };
  const plan = await Plan.compile(gpu, graph);
  plan.writeInputs(new Map(graph.inputs.map((i, k) => [i.name, fill(sizeOf(i.type.dims), 100 + k)])));
  return plan;
}

export async function kernelSuite({ gpu, quick, rows, log }: BenchContext): Promise<void> {
  // ---- IA3 vs copy, 16M elements (4M in quick mode) ----
  const C = 1024;
  const R = (quick ? 4 : 16) * 1024;
  const n = R * C;
  const reps = quick ? 3 : 10;
  // Both sides use the tiling the toolkit picks for this adapter: a baseline left at its GPU
  // setting on a software adapter runs ~2.5× slower there and would flatter every ratio.
  const softwareAdapter = gpu.adapterInfo.isSoftware;
  const src = gpu.upload(fill(n, 1));
  const dst = gpu.buffers.acquire(4 * n);
  const copy = copyProgram(n, 256, { softwareAdapter });
  await gpu.pipelines.get(copy);
  const copyBind = gpu.bindGroup(copy, [src, dst], gpu.uniformBuffer(copy));
  const copyPipe = gpu.pipelines.getReady(copy);
  const encodeCopy = (enc: GPUCommandEncoder): void => {
    const pass = enc.beginComputePass();
    pass.setPipeline(copyPipe);
    pass.setBindGroup(0, copyBind);
    pass.dispatchWorkgroups(...copy.workgroups);
    pass.end();
  };

  // Plans lower for the device's traits: the IA3 tiling of this adapter.
  const fwd = await singleNodePlan(gpu, 'IA3Scale', [{ name: 'x', type: f32([R, C]) }, { name: 'l', type: f32([C, 1]), resident: true }], [{ name: 'y', type: f32([R, C]) }]);
  const bwd = await singleNodePlan(
    gpu,
    'IA3ScaleGrad',
    [{ name: 'dy', type: f32([R, C]) }, { name: 'x', type: f32([R, C]) }, { name: 'l', type: f32([C, 1]), resident: true }],
    [{ name: 'dx', type: f32([R, C]) }, { name: 'dl', type: f32([C, 1]) }],
  );

  // Copy, forward and backward take turns trial by trial, and each ratio is the median of per-trial
  // ratios: on a shared machine a load change then hits the baseline and the kernel alike, instead
  // of deciding the ratio by which of them happened to run in a quiet moment.
  const [tCopy, tFwd, tBwd] = await timeInterleaved(gpu, [encodeCopy, (enc) => fwd.encode(enc), (enc) => bwd.encode(enc)], reps);
  const copyBytes = 2 * 4 * n;
  const fwdBytes = 2 * 4 * n;
  const bwdBytes = 3 * 4 * n; // reads dy and x, writes dx
  const gbs = (bytes: number, ts: number[]): number => bytes / median(ts) / 1e9;
  const ratio = (bytes: number, ts: number[]): number => median(ts.map((t, i) => bytes / t / (copyBytes / tCopy[i]!)));
  const copyGBs = gbs(copyBytes, tCopy);
  const fwdGBs = gbs(fwdBytes, tFwd);
  const bwdGBs = gbs(bwdBytes, tBwd);
  rows.push({ suite: 'kernels', name: `copy ${n / 2 ** 20}M f32 (baseline)`, value: round(copyGBs), unit: 'GB/s' });
  rows.push({ suite: 'kernels', name: `IA3Scale forward ${R}×${C}`, value: round(fwdGBs), unit: 'GB/s', ratio: round(ratio(fwdBytes, tFwd)), baseline: 'copy bandwidth', goal: '≥ 0.8×' });
  rows.push({ suite: 'kernels', name: `IA3ScaleGrad fused backward ${R}×${C}`, value: round(bwdGBs), unit: 'GB/s', ratio: round(ratio(bwdBytes, tBwd)), baseline: 'copy bandwidth', goal: '≥ 0.6×' });
  log(`copy: ${copyGBs.toFixed(2)} GB/s; ia3: forward ${fwdGBs.toFixed(2)} GB/s, backward ${bwdGBs.toFixed(2)} GB/s`);
  fwd.destroy();
  bwd.destroy();
  gpu.buffers.release(src);
  gpu.buffers.release(dst);

  // ---- MatMul vs onnxruntime-web WebGPU ----
  ort.env.wasm.numThreads = 1;
  ort.env.logLevel = 'error';
  const shapes: [number, number, number][] = quick ? [[128, 768, 768]] : [[512, 768, 768], [512, 768, 3072], [512, 3072, 768]];
  for (const [M, K, N] of shapes) {
    const flops = 2 * M * K * N;
    const ours = await singleNodePlan(gpu, 'MatMul', [{ name: 'a', type: f32([M, K]) }, { name: 'b', type: f32([K, N]), resident: true }], [{ name: 'y', type: f32([M, N]) }]);
    // Both sides submit once per run and sync at the end of a trial: the same structure.
    const iters = quick ? 2 : 5;
    const tOurs = (await timeAsync(async () => {
      for (let i = 0; i < iters; i++) {
        const enc = gpu.device.createCommandEncoder();
        ours.encode(enc);
        gpu.device.queue.submit([enc.finish()]);
      }
      await awaitGpu(gpu.device.queue.onSubmittedWorkDone());
    }, { reps: 1, trials: 3 })) / iters;

    const weight = fill(K * N, 7);
    const model = singleOpModel('MatMul', [{ name: 'a', dims: [M, K] }, { name: 'b', dims: [K, N] }], { name: 'y', dims: [M, N] }, [], [
      { name: 'b', dims: [K, N], dataType: 1, rawData: new Uint8Array(weight.buffer) },
    ]);
    const session = await ort.InferenceSession.create(model, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
    // ORT runs on its own device: give it the same input, resident in a buffer of that device.
    const ortDevice = (await ort.env.webgpu.device) as GPUDevice;
    const aBuf = ortDevice.createBuffer({ size: 4 * M * K, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    ortDevice.queue.writeBuffer(aBuf, 0, fill(M * K, 100));
    const feeds = { a: ort.Tensor.fromGpuBuffer(aBuf, { dataType: 'float32', dims: [M, K] }) };
    const runOrt = async (): Promise<void> => {
      const r = await session.run(feeds);
      r.y!.dispose();
    };
    const tOrt = (await timeAsync(async () => {
      for (let i = 0; i < iters; i++) await runOrt();
      await ortDevice.queue.onSubmittedWorkDone();
    }, { reps: 1, trials: 3 })) / iters;
    await session.release();
    aBuf.destroy();
    ours.destroy();
    const g = flops / tOurs / 1e9;
    const gOrt = flops / tOrt / 1e9;
    rows.push({ suite: 'kernels', name: `MatMul ${M}×${K}×${N}`, value: round(g), unit: 'GFLOP/s', ratio: round(g / gOrt), baseline: `onnxruntime-web webgpu (${round(gOrt)} GFLOP/s)`, goal: '≥ 1.0×' });
    log(`matmul ${M}x${K}x${N}: ours ${g.toFixed(1)} GFLOP/s, ort ${gOrt.toFixed(1)} GFLOP/s`);
  }
}
