// Layout and shape ops: data movement, views, and the shape arithmetic folded at specialisation.
//
// The family is split by how an op reaches the GPU:
//   - layout-move.ts / layout-slice.ts: ops that move data with a kernel (Transpose, Gather,
//     GatherElements, Slice, Concat, Split, Expand, Tile, Pad, Trilu, and the internal SliceGrad);
//   - layout-view.ts: views lowered as an alias of their input (Reshape, Squeeze, Unsqueeze,
//     Flatten, Identity, Dropout in inference);
//   - layout-fold.ts: ops that only ever see constants after specialisation (Shape, Size, Range,
//     ConstantOfShape, Constant, NonZero), with `gpu: 'fold'`.
// Shared rules: ONNX semantics per `ctx.opset` (attributes that became inputs are read from where
// the node's opset puts them); value inputs that decide a shape must be constant at compile time;
// kernels move raw 32-bit words, so every dtype (f32 or i32 on the GPU) shares one path.

import { foldOps } from './layout-fold.js';
import { moveOps } from './layout-move.js';
import { sliceOps } from './layout-slice.js';
import { viewOps } from './layout-view.js';
import type { OpDef } from './types.js';

export { normalizeSlice, sliceGradAttrs, type NormalSlice } from './layout-slice.js';
export { reshapeDims } from './layout-view.js';

export const layoutOps = {
  ...moveOps,
  ...sliceOps,
  ...viewOps,
  ...foldOps,
} satisfies Record<string, OpDef>;
