// The runtime in Node: Dawn's entry point passed to createDevice, no WebGPU globals installed (the
// library must not need them), a device that survives garbage collection of the caller's only
// reference to Dawn, and typed errors that say what Node needs.
import { create } from 'webgpu';
import { expect, it } from 'vitest';
import { createDevice, loadModel, WebGPUUnavailableError } from '../../src/index.js';
import { getGpu } from '../util/node-gpu.js';

it('runs on Dawn without the WebGPU globals', async () => {
  const g = globalThis as Record<string, unknown>;
  for (const name of ['GPUBufferUsage', 'GPUMapMode', 'GPUShaderStage']) expect(g[name], name).toBeUndefined();
  expect((g.navigator as { gpu?: unknown } | undefined)?.gpu).toBeUndefined();
  const gpu = await getGpu();
  const data = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5 - 7);
  const buffer = gpu.upload(data);
  expect(new Float32Array(await gpu.read(buffer, data.byteLength))).toEqual(data);
  gpu.buffers.release(buffer);
});

it('keeps Dawn alive while the device is in use, whatever the caller keeps', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  expect(gc, 'the node project runs with --expose-gc').toBeTypeOf('function');
  // The only reference to Dawn's GPU object is the argument: once collected, Dawn's instance would
  // go with it (the process aborts in a mutex on the next GPU call) unless the device holds it.
  const gpu = await createDevice({ gpu: create([]) });
  for (let i = 0; i < 5; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 10));
  }
  const model = await loadModel('tests/fixtures/gpt2', { device: gpu });
  const { logits } = await model.run({ input_ids: [[46, 32, 18]], attention_mask: [[1, 1, 1]] });
  expect(logits!.dims).toEqual([1, 3, 120]);
  await model.dispose();
  gpu.destroy();
});

it('says what Node needs: an entry point, a Vulkan driver', async () => {
  const none = createDevice();
  await expect(none).rejects.toBeInstanceOf(WebGPUUnavailableError);
  await expect(none).rejects.toThrow(/in Node, pass a WebGPU entry point.*createDevice\(\{ gpu: create\(\[\]\) \}\)/);
  const noAdapter = createDevice({ gpu: { requestAdapter: async () => null } as unknown as GPU });
  await expect(noAdapter).rejects.toBeInstanceOf(WebGPUUnavailableError);
  await expect(noAdapter).rejects.toThrow(/no Vulkan driver was found: .*libvulkan\.so\.1.*LD_LIBRARY_PATH.*VK_ICD_FILENAMES/);
});
