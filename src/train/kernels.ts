// Kernels of the training loop: scaled copy / accumulate over flat f32 ranges (shaders/train.wgsl).

import text from '../../shaders/train.wgsl?raw';
import { grid, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';

export const trainShader = new Shader('train.wgsl', text, {
  structs: {
    Params: [
      ['n', 'u32'],
      ['alpha', 'f32'],
      ['beta', 'f32'],
    ],
  },
});

export const accumulateKernel = trainShader.kernel({ name: 'train_accumulate', inputs: ['src'], outputs: ['dst'], uniforms: 'Params' });

const WG = 64;

/** dst = beta·dst + alpha·src over n floats. */
export function accumulateProgram(n: number, alpha: number, beta: number): Program {
  return { kernel: accumulateKernel, overrides: { WG }, uniforms: { n, alpha, beta }, workgroups: grid(Math.ceil(n / WG)) };
}
