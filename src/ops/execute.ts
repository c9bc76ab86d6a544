// Running a single op: on the CPU reference, or lowered to the GPU with fresh buffers.
//
// This is the path of kernel tests and one-off work. Compiled plans (src/compile/) use the same
// lowerings but allocate buffers once, by liveness, and replay prebuilt bind groups.

import type { GpuContext } from '../gpu/device.js';
import { resolveBindings } from '../gpu/dispatch.js';
import { DEFAULT_TRAITS, type DeviceTraits } from '../gpu/traits.js';
import { packHalves, type WeightStorage } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { fromGpuBytes, sizeOf, toGpuArray, type RefTensor, type ValueInfo } from '../ir/tensor.js';
import type { Inputs, LoweringContext, OpContext, OpDef } from './types.js';

/** A node context for running one op (tests, one-off work): lowered for `device`, a hardware adapter by default. */
export function context(opType: string, nodeName = opType, opset = 17, device: DeviceTraits = DEFAULT_TRAITS): LoweringContext {
  return { opType, nodeName, opset, device };
}

/** Runs an op's float64 reference. */
export function runReference(def: OpDef, inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  return def.reference(inputs, attrs, ctx);
}

/**
 * Runs an op on the GPU: uploads inputs, lowers, dispatches, reads outputs back. The lowering is for
 * `ctx.device` when the context names traits (a test asking for a variant), else for `gpu`'s own.
 * `constants` marks inputs whose values the lowering may read at compile time (axes, shapes);
 * `storage` uploads inputs in a packed weight storage (the op must list them in `packedInputs`).
 */
export async function runOnGpu(
  gpu: GpuContext,
  def: OpDef,
  inputs: Inputs<RefTensor>,
  attrs: Attrs,
  ctx: OpContext & { readonly device?: DeviceTraits },
  constants: ReadonlySet<number> = new Set(),
  storage: Readonly<Record<number, WeightStorage>> = {},
): Promise<RefTensor[]> {
  const infos: Inputs<ValueInfo> = inputs.map((t, i) =>
    t === undefined ? undefined : { dtype: t.dtype, dims: t.dims, ...(constants.has(i) ? { value: t } : {}), ...(storage[i] ? { storage: storage[i] } : {}) },
  );
  const outTypes = def.shape(infos, attrs, ctx);
  if (def.gpu === 'fold') return def.reference(inputs, attrs, ctx);
  const lowering = def.gpu(infos, outTypes, attrs, { ...ctx, device: ctx.device ?? gpu.traits });
  const pool = gpu.buffers;
  // Compile-time constants are uploaded only when they fit GPU storage (an INT64_MAX Slice end
  // does not); a lowering that binds one that did not fit fails below, naming the input.
  const inBufs = inputs.map((t, i) => {
    if (t === undefined) return undefined;
    if (storage[i] === 'f16x2') return gpu.upload(packHalves(t.data));
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
    try {
      await gpu.run(resolveBindings(lowering, { inputs: inBufs, outputs: outBufs, temps }, `${ctx.opType} '${ctx.nodeName}'`));
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
