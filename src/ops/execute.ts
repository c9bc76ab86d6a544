// Running a single op: on the CPU reference, or lowered to the GPU with fresh buffers.
//
// This is the path of kernel tests and one-off work. Compiled plans (src/compile/) use the same
// lowerings but allocate buffers once, by liveness, and replay prebuilt bind groups.

import type { GpuContext } from '../gpu/device.js';
import { sizeOf } from '../gpu/kernel.js';
import type { Attrs, BufferRef, Inputs, OpContext, OpDef, RefTensor, TensorType, ValueInfo } from './types.js';
import { gpuStorage } from './types.js';

/** Converts a reference tensor to the bytes the GPU stores (f32, or i32 for integer types). */
export function toGpuArray(t: RefTensor): Float32Array | Int32Array {
  if (gpuStorage(t.dtype) === 'f32') return Float32Array.from(t.data);
  const out = new Int32Array(t.data.length);
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i]!;
    if (v < -0x80000000 || v > 0x7fffffff) {
      throw new RangeError(`value ${v} of a ${t.dtype} tensor does not fit the GPU's 32-bit integers`);
    }
    out[i] = v;
  }
  return out;
}

/** Converts GPU bytes back to a reference tensor of `type`. */
export function fromGpuBytes(type: TensorType, bytes: ArrayBuffer): RefTensor {
  const n = sizeOf(type.dims);
  const src = gpuStorage(type.dtype) === 'f32' ? new Float32Array(bytes, 0, n) : new Int32Array(bytes, 0, n);
  return { dtype: type.dtype, dims: [...type.dims], data: Float64Array.from(src) };
}

export function context(opType: string, nodeName = opType, opset = 17): OpContext {
  return { opType, nodeName, opset };
}

/** Runs an op's float64 reference. */
export function runReference(def: OpDef, inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  return def.reference(inputs, attrs, ctx);
}

/**
 * Runs an op on the GPU: uploads inputs, lowers, dispatches, reads outputs back.
 * `constants` marks inputs whose values the lowering may read at compile time (axes, shapes).
 */
export async function runOnGpu(
  gpu: GpuContext,
  def: OpDef,
  inputs: Inputs<RefTensor>,
  attrs: Attrs,
  ctx: OpContext,
  constants: ReadonlySet<number> = new Set(),
): Promise<RefTensor[]> {
  const infos: Inputs<ValueInfo> = inputs.map((t, i) =>
    t === undefined ? undefined : { dtype: t.dtype, dims: t.dims, ...(constants.has(i) ? { value: t } : {}) },
  );
  const outTypes = def.shape(infos, attrs, ctx);
  if (def.gpu === 'fold') return def.reference(inputs, attrs, ctx);
  const lowering = def.gpu(infos, outTypes, attrs, ctx);
  const pool = gpu.buffers;
  // Compile-time constants are uploaded only when they fit GPU storage (an INT64_MAX Slice end
  // does not); a lowering that binds one that did not fit fails below, naming the input.
  const inBufs = inputs.map((t, i) => {
    if (t === undefined) return undefined;
    if (!constants.has(i)) return gpu.upload(toGpuArray(t));
    try {
      return gpu.upload(toGpuArray(t));
    } catch {
      return undefined;
    }
  });
  try {
    if ('alias' in lowering) {
      const src = inputs[lowering.alias]!;
      return [{ dtype: outTypes[0]!.dtype, dims: [...outTypes[0]!.dims], data: src.data.slice() }];
    }
    const outBufs = outTypes.map((t) => pool.acquire(4 * Math.max(1, sizeOf(t.dims))));
    const temps = (lowering.temps ?? []).map((bytes) => pool.acquire(Math.max(4, bytes)));
    const resolve = (r: BufferRef): GPUBuffer => {
      if ('in' in r) {
        const b = inBufs[r.in];
        if (!b) throw new Error(`${ctx.opType}: lowering binds missing input ${r.in}`);
        return b;
      }
      if ('out' in r) return outBufs[r.out]!;
      return temps[r.tmp]!;
    };
    try {
      await gpu.run(lowering.steps.map((s) => ({ program: s.program, buffers: s.bindings.map(resolve) })));
      return await Promise.all(
        outTypes.map(async (t, i) => fromGpuBytes(t, await gpu.read(outBufs[i]!, 4 * sizeOf(t.dims)))),
      );
    } finally {
      for (const b of [...outBufs, ...temps]) pool.release(b);
    }
  } finally {
    for (const b of inBufs) if (b) pool.release(b);
  }
}
