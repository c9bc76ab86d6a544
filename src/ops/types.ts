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
//                  specialisation (Shape, Range, ConstantOfShape) and so always run on the CPU;
//   - `expand`:    composite ops only (Einsum, OneHot): the op written as other registry ops,
//                  which specialisation puts in its place, so the GPU plan, fusion and gradients
//                  come from those; the op's own reference stays the independent oracle of the
//                  expansion, and its `gpu` is `expandedOp` (never called).
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
import type { PlanNode } from '../ir/static-graph.js';
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

/**
 * One node of an expansion: an op of the registry, in the registry's domain for it. Its `inputs`
 * name the expanded node's inputs, the expansion's constants, or earlier nodes' outputs; its
 * `opset` is pinned by the expansion (the semantics `attrs` follow, whatever the model's opset).
 */
export type ExpansionNode = PlanNode;

/** A composite op written as other registry ops: nodes in order, and the constants they read. */
export interface Expansion {
  readonly nodes: readonly ExpansionNode[];
  readonly constants: ReadonlyMap<string, RefTensor>;
}

/** The value and node names an expansion connects to. */
export interface ExpansionSite {
  /** Name of the node being expanded (a prefix for the new nodes and values). */
  readonly node: string;
  /** Its input value names ('' for an omitted input) and output value names. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
}

export type Expand = (inputs: Inputs<ValueInfo>, site: ExpansionSite, attrs: Attrs, ctx: OpContext) => Expansion;

export interface OpDef {
  /** ONNX domain: '' (ai.onnx), 'com.microsoft', or 'ia3' for the toolkit's internal ops. */
  readonly domain: string;
  /**
   * Lowest opset version of the op's domain whose semantics this definition implements (1 when
   * any); the decoder refuses a node of an older opset with an UnsupportedOpError.
   */
  readonly sinceVersion?: number;
  /**
   * Highest opset version whose semantics this definition implements, where a later version changed
   * them and is not implemented; absent when every version up to the importer's maximum is.
   */
  readonly untilVersion?: number;
  /** One line for docs/supported-ops.md. */
  readonly doc: string;
  shape(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): TensorType[];
  reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[];
  readonly gpu: GpuLower | 'fold';
  /** A composite op's expansion into other registry ops, applied at specialisation (see above). */
  readonly expand?: Expand;
}
