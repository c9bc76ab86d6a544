// The copy kernel: a bandwidth baseline for benchmarks and a device-side buffer copy.
//
// A grid-stride loop (shaders/copy.wgsl) whose workgroup count is capped rather than sized to the
// buffer. The cap depends on the adapter: a GPU wants enough workgroups to keep every core's
// memory pipeline busy (a couple of waves on the largest parts); a software adapter runs
// workgroups one by one on a few CPU cores, where each one costs a fixed setup, so a few dozen
// long-running workgroups copy fastest there.

import text from '../../shaders/copy.wgsl?raw';
import { grid, type Program } from './kernel.js';
import { Shader } from './wgsl.js';

export const copyShader = new Shader('copy.wgsl', text, {
  structs: {
    Params: [
      ['n', 'u32'],
      ['n4', 'u32'], // whole vec4s
    ],
  },
});

export const copyKernel = copyShader.kernel({ name: 'copy', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

/** Workgroup cap on a GPU: about two full waves of 256-wide workgroups on the largest GPUs. */
export const COPY_GPU_WORKGROUPS = 2048;
/** Workgroup cap on a software adapter: a few per CPU core on a desktop CPU. */
export const COPY_SOFTWARE_WORKGROUPS = 32;

export interface CopyOptions {
  /** The device is a software adapter (`GpuContext.adapterInfo.isSoftware`). */
  softwareAdapter?: boolean;
  /** Overrides the workgroup cap chosen from `softwareAdapter`. */
  maxWorkgroups?: number;
}

/**
 * Copies `n` floats; both buffers must be padded to a multiple of 16 bytes (pool buffers are).
 * Any grid size is correct: the cap only trades launch cost against parallelism.
 */
export function copyProgram(n: number, workgroupSize = 256, options: CopyOptions = {}): Program {
  const n4 = Math.floor(n / 4);
  const cap = options.maxWorkgroups ?? (options.softwareAdapter ? COPY_SOFTWARE_WORKGROUPS : COPY_GPU_WORKGROUPS);
  return {
    kernel: copyKernel,
    overrides: { WG: workgroupSize },
    uniforms: { n, n4 },
    workgroups: grid(Math.max(1, Math.min(cap, Math.ceil(n4 / workgroupSize)))),
  };
}
