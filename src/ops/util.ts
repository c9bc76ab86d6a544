// Helpers shared by op definitions: required inputs and attribute access (shape helpers: ir/shape.ts).

import { ShapeError } from '../errors.js';
import type { AttrValue, Attrs } from '../ir/graph.js';
import type { Inputs, OpContext } from './types.js';

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

/** Rounds a float64 to float32 precision (what the GPU stores). */
export const f32 = Math.fround;
