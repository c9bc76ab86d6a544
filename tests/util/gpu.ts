// The GPU of the browser tests: one device per test file, and the adapter named in the output.
// A test that cannot get a WebGPU adapter fails with the reason: it never skips or passes silently.
import { createDevice, adapterName, type GpuContext } from '../../src/gpu/device.js';

let ctx: Promise<GpuContext> | undefined;

export function getGpu(): Promise<GpuContext> {
  ctx ??= createDevice().then((g) => {
    g.onLost((e) => console.error(`[webgpu] ${e.message}`));
    return g;
  });
  return ctx;
}

export async function describeAdapter(): Promise<string> {
  return adapterName((await getGpu()).adapterInfo);
}
