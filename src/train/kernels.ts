// Kernels of the training loop: scaled copy / accumulate over flat f32 ranges (shaders/train.wgsl).

import source from '../../shaders/train.wgsl?raw';
import { defineKernel, grid, type Program } from '../gpu/kernel.js';

export const accumulateKernel = defineKernel({
  name: 'train_accumulate',
  source,
  inputs: ['src'],
  outputs: ['dst'],
  uniforms: [
    ['n', 'u32'],
    ['alpha', 'f32'],
    ['beta', 'f32'],
  ],
});

const WG = 64;

/** dst = beta·dst + alpha·src over n floats. */
export function accumulateProgram(n: number, alpha: number, beta: number): Program {
  return { kernel: accumulateKernel, overrides: { WG }, uniforms: { n, alpha, beta }, workgroups: grid(Math.ceil(n / WG)) };
}
