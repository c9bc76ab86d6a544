// Helpers shared by op definitions: attribute access, broadcasting, reference tensor construction.

import { ShapeError } from '../errors.js';
import { sizeOf, stridesOf } from '../gpu/kernel.js';
import type { AttrValue, Attrs, DataType, Inputs, OpContext, RefTensor } from './types.js';

export { sizeOf, stridesOf };

export function tensor(dtype: DataType, dims: readonly number[], data?: ArrayLike<number>): RefTensor {
  const n = sizeOf(dims);
  const out = new Float64Array(n);
  if (data) {
    if (data.length !== n) throw new Error(`tensor: ${data.length} values for shape [${dims.join(',')}]`);
    out.set(data as ArrayLike<number>);
  }
  return { dtype, dims: [...dims], data: out };
}

/** Input `i`, which the op requires. */
export function need<T>(inputs: Inputs<T>, i: number, ctx: OpContext): T {
  const v = inputs[i];
  if (v === undefined) throw new ShapeError(ctx.opType, ctx.nodeName, `required input ${i} is missing`);
  return v;
}

export function attrInt(attrs: Attrs, name: string, fallback?: number): number {
  const v = attrs[name];
  if (v === undefined) {
    if (fallback === undefined) throw new Error(`missing attribute '${name}'`);
    return fallback;
  }
  if (typeof v !== 'number') throw new Error(`attribute '${name}' must be a number`);
  return v;
}

export function attrFloat(attrs: Attrs, name: string, fallback: number): number {
  const v = attrs[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'number') throw new Error(`attribute '${name}' must be a number`);
  return v;
}

export function attrInts(attrs: Attrs, name: string): readonly number[] | undefined {
  const v: AttrValue | undefined = attrs[name];
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new Error(`attribute '${name}' must be a list of ints`);
  return v as readonly number[];
}

export function attrString(attrs: Attrs, name: string, fallback: string): string {
  const v = attrs[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'string') throw new Error(`attribute '${name}' must be a string`);
  return v;
}

/** Normalises a possibly negative axis against `rank`, or throws a ShapeError. */
export function normAxis(axis: number, rank: number, ctx: OpContext): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank || !Number.isInteger(a)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `axis ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

/** NumPy broadcast of several shapes, or a ShapeError naming both shapes. */
export function broadcastShapes(shapes: readonly (readonly number[])[], ctx: OpContext): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) {
        throw new ShapeError(
          ctx.opType,
          ctx.nodeName,
          `shapes ${shapes.map((x) => `[${x.join(',')}]`).join(' and ')} do not broadcast`,
        );
      }
    }
  }
  return out;
}

/**
 * Strides to read a tensor of shape `dims` as if broadcast to `outDims` (0 where broadcast).
 * The result has `outDims.length` entries.
 */
export function broadcastStrides(dims: readonly number[], outDims: readonly number[]): number[] {
  const s = stridesOf(dims);
  const out = new Array<number>(outDims.length).fill(0);
  for (let i = 0; i < dims.length; i++) {
    const o = outDims.length - dims.length + i;
    out[o] = dims[i] === 1 ? 0 : s[i]!;
  }
  return out;
}

/** Calls `fn(outIndex, coords)` for every element of `dims` in row-major order. */
export function forEachIndex(dims: readonly number[], fn: (i: number, coords: readonly number[]) => void): void {
  const n = sizeOf(dims);
  const coords = new Array<number>(dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    fn(i, coords);
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++coords[d]! < dims[d]!) break;
      coords[d] = 0;
    }
  }
}

/** Rounds a float64 to float32 precision (what the GPU stores). */
export const f32 = Math.fround;
