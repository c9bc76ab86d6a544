import { describe, expect, it } from 'vitest';
import { COPY_GPU_WORKGROUPS, COPY_SOFTWARE_WORKGROUPS, copyProgram } from '../../src/gpu/copy.js';
import { defineKernel, grid, type Program } from '../../src/gpu/kernel.js';
import { ShaderCompileError } from '../../src/errors.js';
import { getGpu } from '../util/gpu.js';

describe('WebGPU runtime', () => {
  it('copies buffers of awkward lengths with the copy kernel, whatever its grid', async () => {
    const gpu = await getGpu();
    // Grid-stride: a capped grid (software adapter, or 1 and 3 workgroups of 64) leaves each
    // invocation many vec4s, ragged across invocations; the default grid covers small n in one pass.
    const programs: [string, (n: number) => Program][] = [
      ['default', (n) => copyProgram(n)],
      ['software adapter', (n) => copyProgram(n, 256, { softwareAdapter: true })],
      ['1 workgroup of 64', (n) => copyProgram(n, 64, { maxWorkgroups: 1 })],
      ['3 workgroups of 64', (n) => copyProgram(n, 64, { maxWorkgroups: 3 })],
      // A 2-D fold that overshoots (3×2 for 5): the extra workgroup simply joins the stride.
      ['5 workgroups folded to 3×2', (n) => ({ ...copyProgram(n, 64, { maxWorkgroups: 5 }), workgroups: grid(5, 3) })],
    ];
    for (const n of [1, 3, 4, 7, 1023, 1 << 16, 300001]) {
      const src = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);
      const a = gpu.upload(src);
      for (const [what, program] of programs) {
        const b = gpu.buffers.acquire(4 * n);
        await gpu.run([{ program: program(n), buffers: [a, b] }]);
        const out = new Float32Array(await gpu.read(b, 4 * n));
        expect(Array.from(out.slice(0, 8)), `${what}, n = ${n}`).toEqual(Array.from(src.slice(0, 8)));
        expect(out[n - 1], `${what}, n = ${n}`).toBe(src[n - 1]);
        expect(out.every((v, i) => v === src[i]), `${what}, n = ${n}`).toBe(true);
        gpu.buffers.release(b);
      }
      gpu.buffers.release(a);
    }
  });

  it('caps the copy grid by adapter and folds a grid past one dimension', () => {
    const n = 1 << 26; // 16M vec4s: 65536 workgroups of 256 uncapped
    expect(copyProgram(n).workgroups).toEqual([COPY_GPU_WORKGROUPS, 1, 1]);
    expect(copyProgram(n, 256, { softwareAdapter: true }).workgroups).toEqual([COPY_SOFTWARE_WORKGROUPS, 1, 1]);
    expect(copyProgram(100).workgroups).toEqual([1, 1, 1]);
    expect(copyProgram(n, 64, { maxWorkgroups: 70000 }).workgroups).toEqual([35000, 2, 1]);
  });

  it('compiles each (kernel, overrides) pipeline once, even when requested concurrently', async () => {
    const gpu = await getGpu();
    const before = gpu.pipelines.compiled;
    // A workgroup size no other test compiles, so this test's pipeline is new to the cache.
    const p = copyProgram(100, 32);
    const [x, y] = await Promise.all([gpu.pipelines.get(p), gpu.pipelines.get(p)]);
    expect(x).toBe(y);
    await gpu.pipelines.get(copyProgram(5000, 32)); // a new shape is a uniform, not a new pipeline
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
