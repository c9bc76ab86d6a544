// The WebGPU runtime: adapter and device acquisition, uploads, readback, and one-off dispatches.
//
// `createDevice()` asks for the adapter's own limits where they exceed WebGPU's defaults (large
// storage buffers hold embedding tables and activations; workgroup memory holds matmul tiles) and
// fails with WebGPUUnavailableError, saying why and what to do, when WebGPU is missing or an
// adapter is below what the toolkit needs. Device loss is surfaced as an event, never swallowed.
// In Node there is no `navigator.gpu`: the caller passes a WebGPU entry point (`{ gpu }`, e.g.
// `create([])` of the `webgpu` package, Dawn); nothing here needs WebGPU's global constants.

import { DeviceLostError, GpuExecutionError, IA3Error, WebGPUUnavailableError } from '../errors.js';
import { awaitGpu, isNode } from '../runtime.js';
import { BufferPool } from './buffers.js';
import { DispatchList, type BoundProgram } from './dispatch.js';
import { BufferUsage, MapMode } from './flags.js';
import { packUniforms, type Program } from './kernel.js';
import { PipelineCache } from './pipelines.js';
import { bindingLimit, DEFAULT_LIMITS, traitsOf, type DeviceLimits, type DeviceTraits } from './traits.js';

/** The limits below which the toolkit refuses an adapter (WebGPU's guaranteed minimums). */
const REQUIRED = {
  maxStorageBufferBindingSize: DEFAULT_LIMITS.maxStorageBufferBindingSize,
  maxComputeWorkgroupStorageSize: DEFAULT_LIMITS.maxComputeWorkgroupStorageSize,
  maxComputeInvocationsPerWorkgroup: DEFAULT_LIMITS.maxComputeInvocationsPerWorkgroup,
  maxStorageBuffersPerShaderStage: DEFAULT_LIMITS.maxStorageBuffersPerShaderStage,
} as const;

/** Limits requested at the adapter's maximum when it offers more than the default. */
const RAISED: readonly (keyof GPUSupportedLimits)[] = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
];

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for software rasterisers (SwiftShader, llvmpipe, WARP). */
  isSoftware: boolean;
}

export interface CreateDeviceOptions {
  powerPreference?: GPUPowerPreference;
  /** Use this adapter instead of requesting one. */
  adapter?: GPUAdapter;
  /**
   * The WebGPU entry point to use instead of `navigator.gpu`. In Node, Dawn's: `create([])` of the
   * `webgpu` package (`import { create } from 'webgpu'`).
   */
  gpu?: GPU;
  /**
   * Buffer limits for the toolkit to plan with, below the device's own: tensors larger than the
   * binding limit are split or refused as if the device had these limits (tests exercise the split
   * paths on small models this way; an application may leave headroom). A value above what the
   * device grants is a WebGPUUnavailableError.
   */
  limits?: Partial<Pick<DeviceLimits, 'maxStorageBufferBindingSize' | 'maxBufferSize'>>;
}

export type DeviceLostListener = (error: DeviceLostError) => void;

/** A WebGPU device with the toolkit's pipeline cache and buffer pool. */
export class GpuContext {
  readonly pipelines: PipelineCache;
  readonly buffers: BufferPool;
  readonly hasF16: boolean;
  readonly hasTimestamps: boolean;
  /** What lowerings for this device may assume and should prefer (software adapter, limits, features). */
  readonly traits: DeviceTraits;
  private readonly lostListeners = new Set<DeviceLostListener>();
  private lostError: DeviceLostError | undefined;

  constructor(
    readonly device: GPUDevice,
    readonly adapterInfo: AdapterDescription,
    /** Limits to plan with instead of the device's (only lower ones; see CreateDeviceOptions.limits). */
    limits: CreateDeviceOptions['limits'] = {},
  ) {
    this.pipelines = new PipelineCache(device);
    this.hasF16 = device.features.has('shader-f16');
    this.hasTimestamps = device.features.has('timestamp-query');
    const own = traitsOf(device, adapterInfo.isSoftware);
    for (const [name, v] of Object.entries(limits) as [keyof DeviceLimits, number | undefined][]) {
      if (v === undefined) continue;
      if (!(Number.isInteger(v) && v >= 16 && v <= own.limits[name])) {
        throw new WebGPUUnavailableError(`limits.${name} = ${v}: the device grants ${own.limits[name]}; ask for a whole number of bytes from 16 up to that`);
      }
    }
    this.traits = { ...own, limits: { ...own.limits, ...limits } };
    this.buffers = new BufferPool(device, bindingLimit(this.traits));
    // Every loss counts, 'destroyed' included: work in flight fails either way, and a caller
    // that destroyed the device still needs its operations to fail with DeviceLostError.
    void device.lost.then((info) => this.markLost(info.reason, info.message));
  }

  private markLost(reason: string, message: string): void {
    if (this.lostError) return;
    this.lostError = new DeviceLostError(
      reason,
      `the GPU device was lost (${reason}): ${message || 'no message'}. Create a new device with createDevice() and load the model again; saved adapters and checkpoints are unaffected.`,
    );
    for (const l of this.lostListeners) l(this.lostError);
  }

  /** True once the device is lost (for any reason, `destroy()` included). */
  get isLost(): boolean {
    return this.lostError !== undefined;
  }

  /**
   * The DeviceLostError behind `error` when the device is lost: work in flight fails first (a
   * mapAsync AbortError) and the lost promise may settle a moment later, so this waits for it
   * briefly before deciding that `error` has another cause (undefined).
   */
  async lossBehind(error: unknown): Promise<DeviceLostError | undefined> {
    if (this.lostError || error instanceof IA3Error) return this.lostError;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.device.lost, new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)))]);
    clearTimeout(timer);
    // The lost promise's own handler runs before this continuation only if it was queued first.
    await Promise.resolve();
    return this.lostError;
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** Calls `listener` if the device is lost; returns a function that unsubscribes. */
  onLost(listener: DeviceLostListener): () => void {
    if (this.lostError) listener(this.lostError);
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Throws the device-lost error if the device is gone. */
  assertAlive(): void {
    if (this.lostError) throw this.lostError;
  }

  /** A pooled buffer holding `data` (padded to 4 bytes); `exact` sizes it to the data (weights). */
  upload(data: ArrayBufferView, label?: string, exact = false): GPUBuffer {
    const bytes = Math.max(4, data.byteLength);
    const buffer = exact ? this.buffers.acquireExact(bytes, label) : this.buffers.acquire(bytes, label);
    this.write(buffer, data);
    return buffer;
  }

  /** Writes `data` at `offset` bytes into `buffer` (the write is padded to a multiple of 4). */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buffer, offset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(buffer, offset, padded);
    }
  }

  /** Copies `bytes` bytes of `buffer` (from `offset`) back to the CPU. */
  async read(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
    this.assertAlive();
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder({ label: 'readback' });
    enc.copyBufferToBuffer(buffer, offset, staging, 0, size);
    this.device.queue.submit([enc.finish()]);
    try {
      await awaitGpu(staging.mapAsync(MapMode.READ));
      return staging.getMappedRange().slice(0, bytes);
    } catch (e) {
      throw (await this.lossBehind(e)) ?? e;
    } finally {
      staging.destroy();
    }
  }

  /** A uniform buffer holding the program's packed uniforms, or undefined if it has none. */
  uniformBuffer(program: Program): GPUBuffer | undefined {
    if (program.kernel.uniforms.length === 0) return undefined;
    const bytes = packUniforms(program.kernel, program.uniforms);
    const buffer = this.buffers.create({
      label: `${program.kernel.name}.uniforms`,
      size: bytes.byteLength,
      usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST,
    });
    this.device.queue.writeBuffer(buffer, 0, bytes);
    return buffer;
  }

  /**
   * A bind group for `program` over `buffers` (the kernel's inputs then outputs, in order) and
   * its uniform buffer. The pipeline must have been prepared with `pipelines.get`.
   */
  bindGroup(program: Program, buffers: readonly (GPUBuffer | GPUBufferBinding)[], uniforms: GPUBuffer | undefined): GPUBindGroup {
    const k = program.kernel;
    const expected = k.inputs.length + k.outputs.length;
    if (buffers.length !== expected) {
      throw new Error(`kernel ${k.name}: ${buffers.length} buffers bound, ${expected} expected`);
    }
    // A GPUBufferBinding binds a sub-range (offsets aligned to minStorageBufferOffsetAlignment).
    const entries: GPUBindGroupEntry[] = buffers.map((b, binding) => ({ binding, resource: 'buffer' in b ? b : { buffer: b } }));
    if (uniforms) entries.push({ binding: buffers.length, resource: { buffer: uniforms } });
    return this.device.createBindGroup({ label: k.name, layout: this.pipelines.bindGroupLayout(k), entries });
  }

  /**
   * Runs programs in order in one compute pass and waits for validation: a one-off dispatch list
   * (tests, benchmarks, merges). Plans and the trainer keep their lists and replay them.
   */
  async run(steps: readonly BoundProgram[]): Promise<void> {
    this.assertAlive();
    const list = await DispatchList.prepare(this, steps);
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('out-of-memory');
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    list.encode(pass);
    pass.end();
    this.device.queue.submit([enc.finish()]);
    const oom = await this.device.popErrorScope();
    const invalid = await this.device.popErrorScope();
    list.destroy();
    const err = invalid ?? oom;
    if (err) throw new GpuExecutionError(`GPU work failed (${list.kernels.join(', ')}): ${err.message}`);
  }

  /** Destroys every buffer and the device; afterwards every use is a DeviceLostError (reason 'destroyed'). */
  destroy(): void {
    this.markLost('destroyed', 'GpuContext.destroy() was called');
    this.buffers.destroy();
    this.device.destroy();
  }
}

function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info;
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isSoftware: /swiftshader|llvmpipe|lavapipe|warp|software/.test(text) || (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true,
  };
}

/** One-line name of an adapter, e.g. `google swiftshader`. */
export function adapterName(info: AdapterDescription): string {
  return [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ') || 'unknown adapter';
}

/**
 * Each device's entry point and adapter, held as long as the device lives. Dawn's Node binding
 * tears its instance down when the `GPU` object is garbage-collected, even with devices alive (the
 * process then aborts in a mutex), and `createDevice({ gpu: create([]) })` holds no other reference.
 */
const keepAlive = new WeakMap<GPUDevice, { gpu: GPU; adapter: GPUAdapter }>();

/**
 * Requests a WebGPU adapter and device with the limits the toolkit needs.
 * @throws WebGPUUnavailableError when WebGPU is absent, no adapter is granted, or it is too small.
 */
export async function createDevice(options: CreateDeviceOptions = {}): Promise<GpuContext> {
  const gpu = options.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new WebGPUUnavailableError(
      isNode()
        ? 'WebGPU is not available here (navigator.gpu is undefined): in Node, pass a WebGPU entry point, ' +
            "e.g. Dawn's from the webgpu package: import { create } from 'webgpu'; createDevice({ gpu: create([]) })."
        : 'WebGPU is not available here (navigator.gpu is undefined). Use a browser with WebGPU enabled ' +
            '(Chrome or Edge 113+, Safari 26+, Firefox 141+ on Windows), served over https or localhost; ' +
            'in Chromium on Linux start it with --enable-unsafe-webgpu.',
    );
  }
  let adapter: GPUAdapter | null | undefined = options.adapter;
  if (!adapter) {
    try {
      adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    } catch (cause) {
      throw new WebGPUUnavailableError(`requestAdapter() failed: ${String(cause)}`, { cause });
    }
  }
  if (!adapter) {
    throw new WebGPUUnavailableError(
      isNode()
        ? 'WebGPU is present but no GPU adapter was granted. With Dawn on Linux this means no Vulkan driver was found: ' +
            'the Vulkan loader libvulkan.so.1 must be on the library path (LD_LIBRARY_PATH, set before Node starts) and a driver ' +
            "installed or named by VK_ICD_FILENAMES / VK_ADD_DRIVER_FILES (Debian's chromium package ships both: " +
            'LD_LIBRARY_PATH=/usr/lib/chromium VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json); Dawn prints the reason on stderr.'
        : 'WebGPU is present but no GPU adapter was granted (blocklisted driver, or GPU disabled). ' +
            'Check chrome://gpu, update the GPU driver, or enable the software adapter with --enable-unsafe-webgpu.',
    );
  }
  for (const [name, min] of Object.entries(REQUIRED) as [keyof typeof REQUIRED, number][]) {
    if (adapter.limits[name] < min) {
      throw new WebGPUUnavailableError(`the GPU adapter offers ${name} = ${adapter.limits[name]}, the toolkit needs ${min}`);
    }
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED) {
    const v = adapter.limits[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ['shader-f16', 'timestamp-query'] as GPUFeatureName[]) {
    if (adapter.features.has(f)) requiredFeatures.push(f);
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'ia3-webgpu' });
  } catch (cause) {
    throw new WebGPUUnavailableError(`requestDevice() failed: ${String(cause)}`, { cause });
  }
  keepAlive.set(device, { gpu, adapter });
  try {
    return new GpuContext(device, describeAdapter(adapter), options.limits);
  } catch (e) {
    device.destroy();
    throw e;
  }
}
