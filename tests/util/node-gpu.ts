// The GPU of the Node tests: Dawn through the `webgpu` package, one device per test file, named in
// the output. WebGPU's globals (GPUBufferUsage, …) are deliberately not installed: the library must
// not need them. No adapter is a failure with Dawn's reason and ours, never a skip.
import { create } from 'webgpu';
import { adapterName, createDevice, type GpuContext } from '../../src/gpu/device.js';

let ctx: Promise<GpuContext> | undefined;

export function getGpu(): Promise<GpuContext> {
  ctx ??= createDevice({ gpu: create([]) }).then((g) => {
    g.onLost((e) => console.error(`[dawn] ${e.message}`));
    return g;
  });
  return ctx;
}

export async function describeAdapter(): Promise<string> {
  return adapterName((await getGpu()).adapterInfo);
}
