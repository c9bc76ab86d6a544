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
//                  which specialisation puts in its place once input shapes are concrete, so the
//                  GPU plan, fusion and gradients come from those; the op's own reference stays
//                  the independent oracle of the expansion, and its `gpu` is `expandedOp` (never
//                  called).
// The registry (registry.ts) is a table over all op types; the autograd table is a mapped type over
// the same keys, so a new op does not compile until it has every piece. Fused ops of other tools
// (onnxruntime's com.microsoft contrib ops) are ExpandedOpDefs instead: a shape rule, a reference
// and an expansion into primitives at load, and no lowering or gradient of their own. Both kinds of
// expansion are written with one builder (ops/expansion.ts: ExpansionWriter, with an Expander view
// at load and a ShapedExpander view at specialisation).
//
// Conventions:
//   - Attribute names are ONNX's (`perm`, `axis`, `transA`, `epsilon`).
//   - An omitted optional input (ONNX's empty name) is `undefined` in the inputs array.
//   - Reference tensors hold float64 for every dtype; integer dtypes hold exact integers.
//   - On the GPU, float dtypes are stored as f32 and integer and bool dtypes as i32 (bool is 0/1,
//     int64 must fit 32 bits); the dtype table in ir/dtype.ts says which.

import type { LoweringSteps } from '../gpu/dispatch.js';
import type { DeviceTraits } from '../gpu/traits.js';
import type { DataType, WeightStorage } from '../ir/dtype.js';
import type { Attrs, ExpandedOp, Initializer, Node } from '../ir/graph.js';
import type { RefTensor, TensorType, ValueInfo } from '../ir/tensor.js';
import type { OpType } from './registry.js';

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

/** What every registry entry declares: its domain, the versions it implements, its rules. */
export interface OpVersions {
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
}

export interface OpDef extends OpVersions {
  shape(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): TensorType[];
  reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[];
  readonly gpu: GpuLower | 'fold';
  /** A composite op's expansion into other registry ops, applied at specialisation (see above). */
  readonly expand?: (x: ShapedExpander, attrs: Attrs) => void;
  /**
   * Inputs the lowering reads in a packed weight storage (`ValueInfo.storage`) as well as in f32;
   * the plan refuses a packed value anywhere else, and the load-time packing asks before packing.
   */
  readonly packedInputs?: readonly number[];
  /** The storages those inputs accept (default: every WeightStorage). */
  readonly packedStorage?: (storage: WeightStorage) => boolean;
}

/**
 * What an expansion writes with (ops/expansion.ts, one builder for both entry points): registry
 * nodes and constants in place of one node. Emitted ai.onnx nodes follow EXPANSION_OPSET's semantics.
 */
export interface ExpansionWriter {
  /** The node being replaced (an omitted optional input is ''). */
  readonly node: Node;
  /** The node's context (op, name, opset of its domain), for shape errors. */
  readonly context: OpContext;
  /** Input `i`, or undefined when omitted. */
  input(i: number): string | undefined;
  /** Input `i`, which the op requires (an UnsupportedOpError naming it otherwise). */
  need(i: number, what: string): string;
  /** Emits a registry node; its outputs are `outputs` when given (names or a count), else one fresh value. */
  emit(opType: OpType, inputs: readonly (string | undefined)[], attrs?: Attrs, outputs?: number | readonly string[]): string[];
  /** Emits a registry node with one output and returns it; `output` names it (default: a fresh value). */
  op(opType: OpType, inputs: readonly (string | undefined)[], attrs?: Attrs, output?: string): string;
  /** Makes `value` the node's output `k` (an Identity, which specialisation turns into an alias). */
  output(value: string, k?: number): void;
  /** A constant tensor (an initializer flagged `constant`, so never counted as a parameter). */
  constant(t: { readonly dtype: DataType; readonly dims: readonly number[]; readonly data: ArrayLike<number> }, hint?: string): string;
  /** An int64 vector constant (shapes, axes, split sizes). */
  ints(values: readonly number[]): string;
  /** A scalar constant of `dtype`. */
  scalar(value: number, dtype: DataType): string;
  /**
   * What is known of a value's dims: at load, undefined entries are symbolic and the whole is
   * undefined when the rank is unknown; at specialisation, every dim of a value seen so far.
   */
  dims(value: string): readonly (number | undefined)[] | undefined;
  /** The initializer a value is, when it is one. */
  initializer(value: string): Initializer | undefined;
  /** Throws the UnsupportedOpError of this node (op, domain, node name, opset) with `reason`. */
  unsupported(reason: string): never;
}

/** The writer of an expansion at load (a fused op): it also records what module discovery reads. */
export interface Expander extends ExpansionWriter {
  /** Marks an initializer the op reads as a module buffer (rotary caches), not a parameter. */
  buffer(value: string): void;
  /** Records the projections an attention op reads, for module discovery. */
  attention(roles: NonNullable<ExpandedOp['attention']>): void;
  /**
   * A frozen weight the expansion made from the file's (a quantised weight repacked for its kernel;
   * counted as a parameter, unlike constants), replacing `replaces`, which are dropped once unread.
   */
  weight(w: Omit<Initializer, 'name' | 'constant'>, replaces: readonly string[], hint: string): string;
}

/** The writer of an expansion at specialisation (a composite op): the inputs' concrete types come with it. */
export interface ShapedExpander extends ExpansionWriter {
  /** The inputs' types, with their values where specialisation knows them on the CPU. */
  readonly inputs: Inputs<ValueInfo>;
}

/**
 * A fused op that has no kernel of its own: loading replaces each of its nodes by primitive ops of
 * the registry (`expand`), so the GPU plan, fusion and the gradient all come from the primitives.
 * `shape` and the float64 `reference`, written from the op's specification, are the independent
 * oracle the expansion is tested against (tests/unit/contrib-ops.test.ts).
 */
export interface ExpandedOpDef extends OpVersions {
  shape(inputs: Inputs<ValueInfo>, attrs: Attrs, ctx: OpContext): TensorType[];
  reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[];
  /** Writes the op as primitive nodes; the node's declared outputs must be among their outputs. */
  expand(x: Expander, attrs: Attrs): void;
  /** No lowering: a fused op only ever reaches the compiler as its expansion. */
  readonly gpu?: never;
}
