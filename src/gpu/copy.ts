// The copy kernel: a bandwidth baseline for benchmarks and a device-side buffer copy.

import source from '../../shaders/copy.wgsl?raw';
import { defineKernel, grid, type Program } from './kernel.js';

export const copyKernel = defineKernel({
  name: 'copy',
  source,
  inputs: ['src'],
  outputs: ['dst'],
  uniforms: [
    ['n', 'u32'],
    ['n4', 'u32'],
  ],
});

/** Copies `n` floats; both buffers must be padded to a multiple of 16 bytes (pool buffers are). */
export function copyProgram(n: number, workgroupSize = 256): Program {
  const n4 = Math.floor(n / 4);
  return {
    kernel: copyKernel,
    overrides: { WG: workgroupSize },
    uniforms: { n, n4 },
    workgroups: grid(Math.max(1, Math.ceil(n4 / workgroupSize))),
  };
}
