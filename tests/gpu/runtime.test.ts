import { describe, expect, it } from 'vitest';
import { copyProgram } from '../../src/gpu/copy.js';
import { defineKernel } from '../../src/gpu/kernel.js';
import { ShaderCompileError } from '../../src/errors.js';
import { getGpu } from '../util/gpu.js';

describe('WebGPU runtime', () => {
  it('copies buffers of awkward lengths with the copy kernel', async () => {
    const gpu = await getGpu();
    for (const n of [1, 3, 4, 7, 1023, 1 << 16, 300001]) {
      const src = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);
      const a = gpu.upload(src);
      const b = gpu.buffers.acquire(4 * n);
      await gpu.run([{ program: copyProgram(n), buffers: [a, b] }]);
      const out = new Float32Array(await gpu.read(b, 4 * n));
      expect(Array.from(out.slice(0, 8))).toEqual(Array.from(src.slice(0, 8)));
      expect(out[n - 1]).toBe(src[n - 1]);
      expect(out.every((v, i) => v === src[i])).toBe(true);
      gpu.buffers.release(a);
      gpu.buffers.release(b);
    }
  });

  it('compiles each (kernel, overrides) pipeline once, even when requested concurrently', async () => {
    const gpu = await getGpu();
    const before = gpu.pipelines.compiled;
    const p = copyProgram(100, 64);
    const [x, y] = await Promise.all([gpu.pipelines.get(p), gpu.pipelines.get(p)]);
    expect(x).toBe(y);
    await gpu.pipelines.get(copyProgram(5000, 64)); // a new shape is a uniform, not a new pipeline
    expect(gpu.pipelines.compiled - before).toBe(1);
  });

  it('reports a WGSL compile error with its line and message', async () => {
    const gpu = await getGpu();
    const bad = defineKernel({
      name: 'broken-test-kernel',
      source: '@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(1)\nfn main() {\n  o[0] = undefined_name;\n}\n',
      inputs: [],
      outputs: ['o'],
      uniforms: [],
    });
    const err = await gpu.pipelines.get({ kernel: bad }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShaderCompileError);
    expect((err as ShaderCompileError).line).toBe(4);
    expect((err as Error).message).toMatch(/undefined_name/);
  });

  it('pools buffers by size class and counts live bytes', async () => {
    const gpu = await getGpu();
    const live = gpu.buffers.liveBytes;
    const a = gpu.buffers.acquire(1000);
    expect(gpu.buffers.liveBytes - live).toBe(1024);
    gpu.buffers.release(a);
    const b = gpu.buffers.acquire(900);
    expect(b).toBe(a);
    gpu.buffers.release(b);
    expect(gpu.buffers.liveBytes).toBe(live);
  });
});
