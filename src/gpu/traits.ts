// Device traits: the facts about a GPU that kernel choices depend on, in one value.
//
// Lowerings are pure functions of (op, shapes, device traits): a lowering reads these from its
// context (`LoweringContext.device`), never from module state, so two devices in one page each get
// their own kernel variants, and a test asks for a variant by passing the traits it wants. Every
// variant is correct on every device; traits only change speed, or (features, limits) what a
// lowering may use at all.
//
// `DEFAULT_TRAITS` are WebGPU's guaranteed limits on a hardware adapter without optional features:
// what a lowering may assume when it is asked without a device (docs, unit tests).

import { MAX_WORKGROUPS_PER_DIM } from './kernel.js';

/** The adapter limits lowerings read (see GPUSupportedLimits for their meaning). */
export interface DeviceLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly minStorageBufferOffsetAlignment: number;
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupsPerDimension: number;
  readonly maxStorageBuffersPerShaderStage: number;
}

export interface DeviceTraits {
  /**
   * A software adapter (SwiftShader, llvmpipe, WARP) runs workgroups one after another on a few CPU
   * cores: each workgroup has a fixed launch cost and a workgroup barrier suspends every SIMD group,
   * so its kernels want few, long-running workgroups; a GPU wants occupancy.
   */
  readonly software: boolean;
  /** The device was created with `shader-f16` (WGSL `enable f16;` is allowed). */
  readonly shaderF16: boolean;
  readonly limits: DeviceLimits;
}

/** WebGPU's default limits (the minimum every adapter offers). */
export const DEFAULT_LIMITS: DeviceLimits = {
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
  maxBufferSize: 256 * 1024 * 1024,
  minStorageBufferOffsetAlignment: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupsPerDimension: MAX_WORKGROUPS_PER_DIM,
  maxStorageBuffersPerShaderStage: 8,
};

/** A hardware adapter with WebGPU's default limits and no optional feature. */
export const DEFAULT_TRAITS: DeviceTraits = { software: false, shaderF16: false, limits: DEFAULT_LIMITS };

/** Traits from the defaults with some facts replaced, e.g. `deviceTraits({ software: true })`. */
export function deviceTraits(overrides: { software?: boolean; shaderF16?: boolean; limits?: Partial<DeviceLimits> } = {}): DeviceTraits {
  return {
    software: overrides.software ?? DEFAULT_TRAITS.software,
    shaderF16: overrides.shaderF16 ?? DEFAULT_TRAITS.shaderF16,
    limits: { ...DEFAULT_LIMITS, ...overrides.limits },
  };
}

/** The traits of a created device (its granted limits and features) on an adapter. */
export function traitsOf(device: GPUDevice, software: boolean): DeviceTraits {
  const limits = {} as Record<keyof DeviceLimits, number>;
  for (const name of Object.keys(DEFAULT_LIMITS) as (keyof DeviceLimits)[]) limits[name] = device.limits[name];
  return { software, shaderF16: device.features.has('shader-f16'), limits };
}

/** The largest buffer a kernel may bind whole: the binding limit, or the buffer limit when lower. */
export function bindingLimit(device: DeviceTraits): number {
  return Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
}
