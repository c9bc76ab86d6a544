// Kernels declared once, as data.
//
// A KernelDef names a WGSL program and its interface: storage inputs (read-only), storage outputs
// (read-write) and one uniform struct, bound in that fixed order in group 0 — inputs at bindings
// 0..n-1, outputs at n..n+m-1, the uniform struct last (only when the kernel declares uniforms).
// Shapes travel in the uniform struct, so a new shape never recompiles a pipeline; only `override`
// constants (workgroup sizes, op selectors, tile sizes) are part of a pipeline's cache key.
//
// A Program is one dispatch of a kernel: override values, uniform values and the workgroup grid.

/** Scalar uniform field types, and fixed-length arrays packed as `array<vec4<T>, ceil(n/4)>`. */
export type UniformType =
  | 'u32'
  | 'i32'
  | 'f32'
  | { readonly array: 'u32' | 'i32' | 'f32'; readonly length: number };

export type UniformField = readonly [name: string, type: UniformType];

export interface KernelDef {
  /** Unique name; the pipeline cache key starts with it. */
  readonly name: string;
  /**
   * Complete WGSL source. Kernels of the toolkit get it from a `Shader` (gpu/wgsl.ts): prelude
   * helpers, host constants and uniform structs generated from `uniforms`, then the shader's file.
   */
  readonly source: string;
  /** Entry point, `main` by default. */
  readonly entryPoint?: string;
  /** Names of read-only storage bindings, in binding order. */
  readonly inputs: readonly string[];
  /** Names of read-write storage bindings, in binding order after the inputs. */
  readonly outputs: readonly string[];
  /** Fields of the uniform struct, in declaration order (WGSL layout rules apply). */
  readonly uniforms: readonly UniformField[];
  /** WGSL name of the uniform struct generated from `uniforms` (kernels defined by a Shader). */
  readonly uniformStruct?: string;
}

/** One dispatch of a kernel. */
export interface Program {
  readonly kernel: KernelDef;
  /** Pipeline-overridable constants (WGSL `override`), part of the pipeline cache key. */
  readonly overrides?: Readonly<Record<string, number>>;
  /** Values of the kernel's uniform fields, by name. */
  readonly uniforms: Readonly<Record<string, number | readonly number[]>>;
  /** Workgroup counts; see `grid()` for 1-D problems larger than one dimension allows. */
  readonly workgroups: readonly [number, number, number];
}

interface FieldLayout {
  name: string;
  type: UniformType;
  offset: number;
}

export interface UniformLayout {
  readonly fields: readonly FieldLayout[];
  /** Struct size in bytes, rounded to 16 as uniform buffers require. */
  readonly size: number;
}

const layoutCache = new WeakMap<KernelDef, UniformLayout>();

/** Byte layout of a kernel's uniform struct under WGSL's host-shareable layout rules. */
export function uniformLayout(kernel: KernelDef): UniformLayout {
  const cached = layoutCache.get(kernel);
  if (cached) return cached;
  let offset = 0;
  const fields: FieldLayout[] = [];
  for (const [name, type] of kernel.uniforms) {
    // Scalars align to 4 bytes; arrays of vec4 align to (and stride by) 16.
    const align = typeof type === 'string' ? 4 : 16;
    offset = Math.ceil(offset / align) * align;
    fields.push({ name, type, offset });
    offset += typeof type === 'string' ? 4 : 16 * Math.ceil(type.length / 4);
  }
  const layout = { fields, size: Math.max(16, Math.ceil(offset / 16) * 16) };
  layoutCache.set(kernel, layout);
  return layout;
}

/** Packs uniform values into the bytes of the kernel's uniform struct. Throws on a missing field. */
export function packUniforms(
  kernel: KernelDef,
  values: Readonly<Record<string, number | readonly number[]>>,
): ArrayBuffer {
  const layout = uniformLayout(kernel);
  const buf = new ArrayBuffer(layout.size);
  const view = new DataView(buf);
  const put = (kind: 'u32' | 'i32' | 'f32', at: number, v: number, name: string): void => {
    if (!Number.isFinite(v) && kind !== 'f32') {
      throw new Error(`kernel ${kernel.name}: uniform '${name}' is not a finite integer (${v})`);
    }
    if (kind === 'u32') {
      if (v < 0 || v > 0xffffffff || !Number.isInteger(v)) {
        throw new Error(`kernel ${kernel.name}: uniform '${name}' = ${v} does not fit u32`);
      }
      view.setUint32(at, v, true);
    } else if (kind === 'i32') {
      if (v < -0x80000000 || v > 0x7fffffff || !Number.isInteger(v)) {
        throw new Error(`kernel ${kernel.name}: uniform '${name}' = ${v} does not fit i32`);
      }
      view.setInt32(at, v, true);
    } else {
      view.setFloat32(at, v, true);
    }
  };
  for (const f of layout.fields) {
    const v = values[f.name];
    if (v === undefined) throw new Error(`kernel ${kernel.name}: uniform '${f.name}' not given`);
    if (typeof f.type === 'string') {
      if (typeof v !== 'number') throw new Error(`kernel ${kernel.name}: uniform '${f.name}' must be a number`);
      put(f.type, f.offset, v, f.name);
    } else {
      if (typeof v === 'number') throw new Error(`kernel ${kernel.name}: uniform '${f.name}' must be an array`);
      if (v.length > f.type.length) {
        throw new Error(`kernel ${kernel.name}: uniform '${f.name}' has ${v.length} > ${f.type.length} entries`);
      }
      for (let i = 0; i < v.length; i++) put(f.type.array, f.offset + 4 * i, v[i]!, f.name);
    }
  }
  return buf;
}

/** The WebGPU default (and minimum guaranteed) bound on workgroups per grid dimension. */
export const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * A grid of `count` workgroups for a 1-D problem, folded into x and y when it exceeds one dimension.
 * The kernel recovers its linear workgroup index as `wid.y * num_workgroups.x + wid.x` and must
 * ignore indices past the end (the fold can overshoot by up to x-1 workgroups).
 */
export function grid(count: number, maxPerDim = MAX_WORKGROUPS_PER_DIM): [number, number, number] {
  if (count <= 0) return [0, 1, 1];
  if (count <= maxPerDim) return [count, 1, 1];
  const y = Math.ceil(count / maxPerDim);
  if (y > maxPerDim) throw new Error(`grid of ${count} workgroups exceeds ${maxPerDim}² workgroups`);
  return [Math.ceil(count / y), y, 1];
}

/** Defines a kernel after checking its interface is coherent. */
export function defineKernel(def: KernelDef): KernelDef {
  const names = [...def.inputs, ...def.outputs, ...def.uniforms.map((u) => u[0])];
  if (new Set(names).size !== names.length) throw new Error(`kernel ${def.name}: duplicate binding or uniform name`);
  if (def.outputs.length === 0) throw new Error(`kernel ${def.name}: a kernel must write at least one output`);
  return def;
}
