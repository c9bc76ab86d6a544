// The op contract: what every op of the IR must provide.
//
// An op type (ONNX's name for ONNX ops, e.g. `MatMul`; our own names for internal ops such as
// `IA3Scale` or `SoftmaxGrad`) is defined once by an OpDef:
//   - `shape`:     output dtypes and dims from input dtypes and dims (and constant values, when the
//                  op reads shapes or axes from an input, like Reshape or Slice);
//   - `reference`: the float64 CPU implementation, the oracle of every GPU test and the engine of
//                  constant folding; naive loops, never on a hot path;
//   - `gpu`:       the lowering to WGSL programs for a device (its traits come in the context),
//                  or 'fold' for ops that only ever see constant inputs after shape
//                  specialisation (Shape, Range, ConstantOfShape) and so always run on the CPU.
// The registry (registry.ts) is a table over all op types; the autograd table is a mapped type over
// the same keys, so a new op does not compile until it has every piece.
//
// Conventions:
//   - Attribute names are ONNX's (`perm`, `axis`, `transA`, `epsilon`).
//   - An omitted optional input (ONNX's empty name) is `undefined` in the inputs array.
//   - Reference tensors hold float64 for every dtype; integer dtypes hold exact integers.
//   - On the GPU, float dtypes are stored as f32 and integer and bool dtypes as i32 (bool is 0/1,
//     int64 must fit 32 bits); the dtype table in ir/dtype.ts says which.

import type { LoweringSteps } from '../gpu/dispatch.js';
import type { DeviceTraits } from '../gpu/traits.js';
import type { Attrs } from '../ir/graph.js';
import type { RefTensor, TensorType, ValueInfo } from '../ir/tensor.js';

/** Where an op sits: for error messages and opset-dependent semantics. */
export interface OpContext {
  readonly opType: string;
  readonly nodeName: string;
  /** Opset version of the node's domain (ai.onnx for ONNX ops). */
  readonly opset: number;
  /** Number of outputs the node declares (Split without sizes divides by it). */
  readonly numOutputs?: number;
}

export type Inputs<T> = readonly (T | undefined)[];

/** Output 0 is input `alias` reinterpreted with a new shape (Reshape, Squeeze, Identity, ...). */
export interface LoweringAlias {
  readonly alias: number;
}

export type { BufferRef, LoweringSteps } from '../gpu/dispatch.js';

export type Lowering = LoweringSteps | LoweringAlias;

/**
 * What a GPU lowering knows besides shapes and attributes: where the node is, and the device it
 * lowers for. Shape rules and references get an OpContext only: they never depend on the device.
 */
export interface LoweringContext extends OpContext {
  readonly device: DeviceTraits;
}

export type GpuLower = (inputs: Inputs<ValueInfo>, outputs: readonly TensorType[], attrs: Attrs, ctx: LoweringContext) => Lowering;

export interface OpDef {
  /** ONNX domain: '' (ai.onnx), 'com.microsoft', or 'ia3' for the toolkit's internal ops. */
  readonly domain: string;
  /** Lowest opset version whose semantics this definition implements (1 when any). */
  readonly sinceVersion?: number;
  /** One line for docs/supported-ops.md. */
  readonly doc: string;
  shape(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): TensorType[];
  reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[];
  readonly gpu: GpuLower | 'fold';
}
