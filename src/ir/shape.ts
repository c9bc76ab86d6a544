// Shape arithmetic shared by the shape rules, the references, the specialiser and the autograd:
// axis normalisation, NumPy broadcasting, index iteration.

import { ShapeError } from '../errors.js';
import { sizeOf, stridesOf } from './tensor.js';

/** Where a shape problem is: an op type and a node name (an OpContext is one). */
export interface NodeRef {
  readonly opType: string;
  readonly nodeName: string;
}

/**
 * Normalises a possibly negative axis against `rank` (valid axes are [-rank, rank)), or throws a
 * ShapeError naming the node and `what` the axis is.
 */
export function normAxis(axis: number, rank: number, ctx: NodeRef, what = 'axis'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank || !Number.isInteger(a)) {
    throw new ShapeError(ctx.opType, ctx.nodeName, `${what} ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

/** `i` counted from the end when negative (ONNX's index and axis rule), without a range check. */
export function wrapIndex(i: number, n: number): number {
  return i < 0 ? i + n : i;
}

/** Shape-15's `[start, end)` over `rank` dims: negatives count from the end, both clamped to [0, rank]. */
export function clampedRange(start: number, end: number, rank: number): [number, number] {
  const clamp = (v: number): number => Math.min(rank, Math.max(0, wrapIndex(v, rank)));
  const s = clamp(start);
  return [s, Math.max(s, clamp(end))];
}

/** NumPy broadcast of several shapes, or a ShapeError naming both shapes. */
export function broadcastShapes(shapes: readonly (readonly number[])[], ctx: NodeRef): number[] {
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
