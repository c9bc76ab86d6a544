// Per-adapter kernel choices. Lowerings are pure functions of shapes, so the choices that depend on
// the adapter (a software rasteriser such as SwiftShader rewards few, large workgroups; a GPU
// rewards occupancy) are module settings, set from the device before anything is lowered.

import type { GpuContext } from '../gpu/device.js';
import { setIA3Tuning } from '../ops/ia3.js';
import { setMatmulTuning } from '../ops/matmul.js';

/** Selects the kernel variants for `gpu`'s adapter (every variant is correct on every adapter). */
export function tuneKernelsFor(gpu: GpuContext): void {
  const softwareAdapter = gpu.adapterInfo.isSoftware;
  setIA3Tuning({ softwareAdapter });
  setMatmulTuning({ softwareAdapter });
}
