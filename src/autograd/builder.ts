// Emitting IR nodes into a specialised graph: the tool the VJP rules and the reverse pass write with.
//
// A GraphBuilder sits on top of a SpecializedGraph and appends nodes to it. Every node it emits
// gets fresh, unique value and node names, its ONNX domain from the op's OpDef, and the types of
// its outputs from the registry's shape rule, evaluated right away: a rule that wires a shape
// wrongly fails here, naming the op, instead of deep inside a GPU lowering. Constants (shapes,
// axes, scalars) are deduplicated and recorded both as CPU values (`constants`, which shape rules
// and lowerings read) and as GPU storage (`resident`). Nothing is folded: the builder only writes IR.
//
// `extendGraph` wraps the builder for callers that append a few nodes to a graph, e.g. a loss.

import { IA3Error } from '../errors.js';
import { DTYPES, isFloat, type DataType } from '../ir/dtype.js';
import { normDomain, opsetOf, type Attrs } from '../ir/graph.js';
import type { ResidentData, SpecNode, SpecializedGraph } from '../ir/static-graph.js';
import { toGpuArray, sizeOf, type RefTensor, type TensorType, type ValueInfo } from '../ir/tensor.js';
import { OPS, type OpType } from '../ops/registry.js';
import type { Inputs, OpContext, OpDef } from '../ops/types.js';

/** Lowest ai.onnx opset of emitted ONNX nodes: Reshape/Slice/ReduceSum/Unsqueeze take inputs there. */
export const MIN_EMIT_OPSET = 13;

const sameDims = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

export interface EmitOptions {
  /** Opset of the node (default: the builder's ai.onnx opset, or the graph's for other domains). */
  readonly opset?: number;
  /** Declare only the first n outputs (a forward LayerNormalization with Y alone; Split's count). */
  readonly outputs?: number;
}

/** Appends typed nodes and constants to a specialised graph. */
export class GraphBuilder {
  /** Nodes emitted so far, in order (each reads only earlier values). */
  readonly nodes: SpecNode[] = [];
  /** Types of the base graph's values plus every value emitted. */
  readonly types: Map<string, TensorType>;
  readonly constants: Map<string, RefTensor>;
  readonly resident: Map<string, ResidentData>;
  /** Prefix of generated node and value names (the reverse pass sets it per forward node). */
  scope = 'grad';
  /** Opset of emitted ai.onnx nodes. */
  readonly onnxOpset: number;
  private readonly values = new Set<string>();
  private readonly nodeNames = new Set<string>();
  private readonly constantCache = new Map<string, string>();

  constructor(readonly base: SpecializedGraph) {
    this.types = new Map(base.types);
    this.constants = new Map(base.constants);
    this.resident = new Map(base.resident);
    this.onnxOpset = Math.max(MIN_EMIT_OPSET, opsetOf(base.source, ''));
    // Every name the executor could resolve is taken, initializers included (it falls back to them).
    for (const v of base.types.keys()) this.values.add(v);
    for (const v of base.source.initializers.keys()) this.values.add(v);
    for (const d of base.source.inputs) this.values.add(d.name);
    for (const n of base.source.nodes) {
      this.nodeNames.add(n.name);
      for (const o of n.outputs) if (o) this.values.add(o);
    }
    for (const n of base.nodes) this.nodeNames.add(n.name);
  }

  /** A value name not used anywhere in the graph, `base` itself when free. */
  fresh(base: string): string {
    let name = base;
    for (let k = 1; this.values.has(name); k++) name = `${base}_${k}`;
    this.values.add(name);
    return name;
  }

  /** Marks names as taken (names the caller will give values later). */
  reserve(...names: string[]): void {
    for (const n of names) this.values.add(n);
  }

  /** The type of a value, with its contents when it is a constant. Throws for an unknown value. */
  info(name: string): ValueInfo {
    const t = this.types.get(name);
    if (!t) throw new Error(`graph builder: value '${name}' has no type`);
    const value = this.constants.get(name);
    return value ? { dtype: t.dtype, dims: t.dims, value } : t;
  }

  type(name: string): TensorType {
    const t = this.types.get(name);
    if (!t) throw new Error(`graph builder: value '${name}' has no type`);
    return t;
  }

  /**
   * Emits one node and returns the names of its outputs: all of them unless `options.outputs` says
   * otherwise (backward nodes name every output, so the compiler gives each a buffer). Omitted
   * optional inputs are `undefined`; trailing ones are dropped. Output types come from the op's
   * shape rule.
   */
  emit(opType: OpType, inputs: readonly (string | undefined)[], attrs: Attrs = {}, options: EmitOptions = {}): string[] {
    const def: OpDef = OPS[opType];
    const domain = normDomain(def.domain);
    const opset = options.opset ?? (domain === '' ? this.onnxOpset : opsetOf(this.base.source, domain));
    let last = inputs.length;
    while (last > 0 && inputs[last - 1] === undefined) last--;
    const ins = inputs.slice(0, last);
    let name = `${this.scope}/${opType}`;
    for (let k = 1; this.nodeNames.has(name); k++) name = `${this.scope}/${opType}_${k}`;
    this.nodeNames.add(name);
    const ctx: OpContext = { opType, nodeName: name, opset, ...(options.outputs ? { numOutputs: options.outputs } : {}) };
    const infos: Inputs<ValueInfo> = ins.map((v) => (v === undefined ? undefined : this.info(v)));
    let outTypes: TensorType[];
    try {
      outTypes = def.shape(infos, attrs, ctx);
    } catch (e) {
      // A shape error here is a bug in a rule, not in the user's model: say where it came from.
      const detail = e instanceof Error ? e.message : String(e);
      if (e instanceof IA3Error) throw e;
      throw new Error(`graph builder: ${opType} node '${name}': ${detail}`, { cause: e });
    }
    const outputs = outTypes.slice(0, options.outputs ?? outTypes.length).map((t, k) => {
      const o = this.fresh(`${this.scope}/${opType}${outTypes.length > 1 ? `_out${k}` : ''}`);
      this.types.set(o, { dtype: t.dtype, dims: [...t.dims] });
      return o;
    });
    this.nodes.push({ name, opType, domain, inputs: ins.map((v) => v ?? ''), outputs, attrs, opset });
    return outputs;
  }

  /** Emits a node and returns its first output. */
  op(opType: OpType, inputs: readonly (string | undefined)[], attrs: Attrs = {}): string {
    return this.emit(opType, inputs, attrs)[0]!;
  }

  /** A constant value (deduplicated by contents), resident on the GPU when it fits 32 bits. */
  constant(t: RefTensor): string {
    const key = `${t.dtype}[${t.dims.join(',')}]${Array.from(t.data).join(',')}`;
    const hit = this.constantCache.get(key);
    if (hit) return hit;
    const name = this.fresh(`grad/const_${this.constantCache.size}`);
    const value: RefTensor = { dtype: t.dtype, dims: [...t.dims], data: Float64Array.from(t.data) };
    this.constants.set(name, value);
    this.types.set(name, { dtype: t.dtype, dims: value.dims });
    try {
      this.resident.set(name, { type: { dtype: t.dtype, dims: value.dims }, data: toGpuArray(value) });
    } catch (e) {
      if (!(e instanceof RangeError)) throw e; // an int64 outside i32: CPU-only, like specialize's
    }
    this.constantCache.set(key, name);
    return name;
  }

  /** A rank-0 constant. */
  scalar(v: number, dtype: DataType): string {
    return this.constant({ dtype, dims: [], data: Float64Array.of(v) });
  }

  /** A 1-D int64 constant (shapes, axes, starts). */
  ints(values: readonly number[]): string {
    return this.constant({ dtype: 'int64', dims: [values.length], data: Float64Array.from(values) });
  }

  // ---- Small compositions the rules share ----

  add(a: string, b: string): string {
    return this.op('Add', [a, b]);
  }

  mul(a: string, b: string): string {
    return this.op('Mul', [a, b]);
  }

  /** x · k for a number k (no node when k = 1). */
  scale(x: string, k: number): string {
    return k === 1 ? x : this.mul(x, this.scalar(k, this.type(x).dtype));
  }

  neg(x: string): string {
    return this.op('Neg', [x]);
  }

  /** x viewed with `dims` (same element count); no node when the dims already match. */
  reshape(x: string, dims: readonly number[]): string {
    return sameDims(this.type(x).dims, dims) ? x : this.op('Reshape', [x, this.ints(dims)]);
  }

  /** x broadcast to `dims`; no node when the dims already match. */
  expand(x: string, dims: readonly number[]): string {
    return sameDims(this.type(x).dims, dims) ? x : this.op('Expand', [x, this.ints(dims)]);
  }

  /**
   * Sums x, a broadcast of a tensor of `dims`, back to `dims` (the adjoint of broadcasting): a
   * view when only dims of 1 differ, else one SumToShape reduction.
   */
  sumTo(x: string, dims: readonly number[]): string {
    const t = this.type(x);
    if (sameDims(t.dims, dims)) return x;
    if (sizeOf(t.dims) === sizeOf(dims)) return this.reshape(x, dims);
    return this.op('SumToShape', [x], { shape: [...dims] });
  }

  /** Zeros of a type: a scalar broadcast by Expand (one fill, no resident tensor). */
  zeros(type: TensorType): string {
    return this.op('Expand', [this.scalar(0, type.dtype), this.ints(type.dims)]);
  }

  /** Cast of x to a float dtype; no node when it already has it. */
  castFloat(x: string, dtype: DataType): string {
    if (this.type(x).dtype === dtype) return x;
    if (!isFloat(dtype)) throw new Error(`graph builder: ${dtype} is not a float type`);
    return this.op('Cast', [x], { to: DTYPES[dtype].onnx });
  }
}

/**
 * Appends nodes to a specialised graph: `build` emits them and returns the values to add as graph
 * outputs, by output name. Returns a new graph (the input is not modified) whose outputs are the
 * old ones followed by the new ones.
 */
export function extendGraph(
  spec: SpecializedGraph,
  build: (b: GraphBuilder) => Readonly<Record<string, string>>,
  scope = 'extend',
): SpecializedGraph {
  const b = new GraphBuilder(spec);
  b.scope = scope;
  const added = build(b);
  const names = Object.keys(added);
  return {
    ...spec,
    key: `${spec.key};${scope}:${names.join(',')}`,
    nodes: [...spec.nodes, ...b.nodes],
    types: b.types,
    constants: b.constants,
    resident: b.resident,
    outputs: [...spec.outputs, ...names.map((n) => added[n]!)],
    outputNames: [...spec.outputNames, ...names],
  };
}
