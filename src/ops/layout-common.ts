// Helpers shared by the layout ops: constant inputs, opset-gated attributes, axis lists.
//
// Layout ops whose output shape depends on an input's value (Reshape's shape, Slice's starts, ...)
// read that value from `ValueInfo.value` at compile time, or from the tensor itself in the
// reference; `constInts` accepts either, so shape rules, references and lowerings share one code
// path. A value that is not constant after shape specialisation is an UnsupportedOpError: the
// toolkit compiles static graphs and never reads a shape back from the GPU.

import { ShapeError, UnsupportedOpError } from '../errors.js';
import { INT_TYPES } from '../ir/dtype.js';
import type { Attrs, AttrValue } from '../ir/graph.js';
import { normAxis } from '../ir/shape.js';
import type { RefTensor, ValueInfo } from '../ir/tensor.js';
import type { OpContext } from './types.js';

/** An op input as a shape rule sees it (ValueInfo) or as the reference sees it (RefTensor). */
export type Operand = ValueInfo | RefTensor;

/** `[2,3,4]`: how errors print shapes. */
export function fmt(dims: readonly number[]): string {
  return `[${dims.join(',')}]`;
}

export function shapeError(ctx: OpContext, detail: string): ShapeError {
  return new ShapeError(ctx.opType, ctx.nodeName, detail);
}

/** The contents of input `index`, which must be known at compile time. */
export function constData(v: Operand | undefined, index: number, what: string, ctx: OpContext): Float64Array {
  if (v === undefined) throw shapeError(ctx, `required input ${index} (${what}) is missing`);
  if ('data' in v) return v.data;
  if (v.value) return v.value.data;
  throw new UnsupportedOpError(
    ctx.opType,
    ctx.nodeName,
    `input ${index} (${what}) must be a constant after shape specialisation; the toolkit compiles static shapes`,
    ctx.opset,
  );
}

/** Input `index` as a list of exact integers (a shape, axes, pads...). */
export function constInts(v: Operand | undefined, index: number, what: string, ctx: OpContext): number[] {
  const data = constData(v, index, what, ctx);
  const out = Array.from(data);
  for (const x of out) {
    if (!Number.isInteger(x)) throw shapeError(ctx, `input ${index} (${what}) holds ${x}, not an integer`);
  }
  return out;
}

/** A scalar input (a tensor of one element, rank 0 or 1). */
export function constScalar(v: Operand | undefined, index: number, what: string, ctx: OpContext): number {
  const data = constData(v, index, what, ctx);
  if (data.length !== 1) throw shapeError(ctx, `input ${index} (${what}) must hold one value, it holds ${data.length}`);
  return data[0]!;
}

/**
 * Attribute `name`, which exists only in opsets [since, until): present outside that range it is
 * a malformed node (the attribute moved to an input, or does not exist yet).
 */
export function gatedAttr(attrs: Attrs, name: string, ctx: OpContext, since: number, until = Infinity): AttrValue | undefined {
  const v = attrs[name];
  if (v === undefined) return undefined;
  if (ctx.opset < since || ctx.opset >= until) {
    const range = until === Infinity ? `opset ${since} and later` : `opsets ${since} to ${until - 1}`;
    throw shapeError(ctx, `attribute '${name}' exists only in ${range}, the node is opset ${ctx.opset}`);
  }
  return v;
}

/** Input `index`, which exists only from opset `since` on. */
export function gatedInput<T>(inputs: readonly (T | undefined)[], index: number, what: string, ctx: OpContext, since: number): T | undefined {
  const v = inputs[index];
  if (v !== undefined && ctx.opset < since) {
    throw shapeError(ctx, `input ${index} (${what}) exists only in opset ${since} and later, the node is opset ${ctx.opset}`);
  }
  return v;
}

/** An ints attribute value, checked. */
export function asInts(v: AttrValue | undefined, name: string, ctx: OpContext): number[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isInteger(x))) {
    throw shapeError(ctx, `attribute '${name}' must be a list of ints`);
  }
  return [...(v as readonly number[])];
}

/** An int attribute value, checked, or `fallback`. */
export function asInt(v: AttrValue | undefined, name: string, ctx: OpContext, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw shapeError(ctx, `attribute '${name}' must be an int`);
  return v;
}

/** Normalises a list of axes, rejecting duplicates. */
export function axesOf(axes: readonly number[], rank: number, ctx: OpContext, what = 'axes'): number[] {
  const out = axes.map((a) => normAxis(a, rank, ctx, what === 'axes' ? 'axis' : what));
  if (new Set(out).size !== out.length) throw shapeError(ctx, `${what} ${fmt(axes)} repeat an axis`);
  return out;
}

/** Requires an integer dtype for an index-like input. */
export function requireIntType(v: Operand, index: number, what: string, ctx: OpContext): void {
  if (!INT_TYPES.has(v.dtype)) throw shapeError(ctx, `input ${index} (${what}) must be an integer tensor, got ${v.dtype}`);
}

/** Number of outputs the node declares (`OpContext.numOutputs`), when known and valid. */
export function numOutputsOf(ctx: OpContext): number | undefined {
  const n = ctx.numOutputs;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : undefined;
}
