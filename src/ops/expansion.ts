// Writing an op as other registry ops: the one expansion builder, with its two entry points.
//
// Two kinds of op are written as others rather than given kernels:
//   - fused ops of other tools (ExpandedOpDef: onnxruntime's com.microsoft contrib ops) are
//     expanded at load (`expandAtLoad`, called by onnx/expand.ts), before input shapes are known,
//     so module discovery, IA3 insertion and autograd only ever see primitives. Such an expansion
//     writes shape arithmetic the way exporters do (Reshape with 0 and -1, Split with static sizes)
//     and leaves what only concrete shapes decide to the primitives' shape rules; what it needs of
//     a value's dims comes from `dims()`, partially known (undefined entries are symbolic);
//   - composite standard ops (OpDef.expand: Einsum, OneHot) are expanded at specialisation
//     (`expandAtSpecialisation`, called by onnx/specialize.ts), because how they decompose depends
//     on concrete dims and constant inputs (Einsum's sizes, OneHot's depth): the builder then also
//     carries the inputs' ValueInfos (`inputs`), and `dims()` is fully known.
// Both write through the same ExpansionBuilder: nodes of registry ops in order, the constants they
// read (initializers flagged `constant`), the expanded node's own output names on the nodes that
// produce them (so its readers are untouched), checked on `finish()`.
//
// Opset: emitted ai.onnx nodes carry EXPANSION_OPSET (Node.opset), so an expansion means the same
// in an opset-11 file and in an opset-21 one. Names: nodes are `<node>/<op>`, values
// `<node>/<hint>`, made unique against every name of the graph (`takenNames`).

import { UnsupportedOpError } from '../errors.js';
import type { DataType } from '../ir/dtype.js';
import { normDomain, type Attrs, type ExpandedOp, type Graph, type Initializer, type Node } from '../ir/graph.js';
import { sizeOf, type ValueInfo } from '../ir/tensor.js';
import { OPS, type OpType } from './registry.js';
import type { ExpandedOpDef, Expander, GpuLower, Inputs, OpContext, OpDef, ShapedExpander } from './types.js';

/** The ai.onnx opset whose semantics expanded nodes follow (axes and Split sizes as inputs; Gelu). */
export const EXPANSION_OPSET = 21;

/** What an expansion reads of the graph around its node. */
export interface ExpansionContext {
  /** Every value and node name already in use (the expansion adds to it). */
  readonly taken: Set<string>;
  initializer(value: string): Initializer | undefined;
  /** What is known of a value's dims (see Expander.dims). */
  dims(value: string): readonly (number | undefined)[] | undefined;
  /** Opset of the expanded node's domain in the model. */
  readonly opset: number;
}

/** What an expansion produced. */
export interface Expansion {
  readonly nodes: Node[];
  /** Its constants (flagged `constant`, never parameters) and, at load, the weights it made (`weight`). */
  readonly initializers: Initializer[];
  /** Initializers to flag as module buffers (at load only). */
  readonly buffers: string[];
  /** Initializers of the file the expansion replaced by its own weights (dropped once unread; at load only). */
  readonly replaced: string[];
  /** What `Graph.expanded` records of it (at load only). */
  readonly record: ExpandedOp;
}

/** Every node, value and initializer name of `graph`: what expansions must not reuse. */
export function takenNames(graph: Graph): Set<string> {
  const taken = new Set<string>([...graph.initializers.keys(), ...graph.inputs.map((i) => i.name)]);
  for (const n of graph.nodes) {
    taken.add(n.name);
    for (const v of [...n.inputs, ...n.outputs]) if (v) taken.add(v);
  }
  return taken;
}

function typed(dtype: DataType, data: ArrayLike<number>): Initializer['data'] {
  switch (dtype) {
    case 'int64':
      return BigInt64Array.from(Array.from(data, (v) => BigInt(v)));
    case 'int32':
      return Int32Array.from(data);
    case 'bool':
    case 'uint8':
      return Uint8Array.from(data);
    case 'int8':
      return Int8Array.from(data);
    case 'float64':
      return Float64Array.from(data);
    default:
      return Float32Array.from(data);
  }
}

/** The builder of one node's expansion; the entry points below hand it out as Expander or ShapedExpander. */
class ExpansionBuilder implements Expander, ShapedExpander {
  private readonly nodes: Node[] = [];
  private readonly inits: Initializer[] = [];
  private readonly buffers: string[] = [];
  private readonly replaced: string[] = [];
  private roles: ExpandedOp['attention'];
  readonly context: OpContext;

  constructor(
    readonly node: Node,
    private readonly ctx: ExpansionContext,
    /** The inputs' concrete types, at specialisation only. */
    private readonly shapes?: Inputs<ValueInfo>,
  ) {
    this.context = { opType: node.opType, nodeName: node.name, opset: ctx.opset, numOutputs: node.outputs.length };
  }

  get inputs(): Inputs<ValueInfo> {
    // Unreachable through the types: only expandAtSpecialisation hands out a ShapedExpander.
    if (!this.shapes) throw new Error(`expansion of '${this.node.name}': input types exist only at specialisation`);
    return this.shapes;
  }

  private fresh(base: string): string {
    let name = base;
    for (let k = 1; this.ctx.taken.has(name); k++) name = `${base}_${k}`;
    this.ctx.taken.add(name);
    return name;
  }

  input(i: number): string | undefined {
    const v = this.node.inputs[i];
    return v ? v : undefined;
  }

  need(i: number, what: string): string {
    const v = this.input(i);
    if (v === undefined) this.unsupported(`required input ${i} ('${what}') is missing`);
    return v;
  }

  emit(opType: OpType, inputs: readonly (string | undefined)[], attrs: Attrs = {}, outputs: number | readonly string[] = 1): string[] {
    let last = inputs.length;
    while (last > 0 && inputs[last - 1] === undefined) last--;
    const name = this.fresh(`${this.node.name}/${opType}`);
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, k) => this.fresh(`${name}${outputs > 1 ? `_out${k}` : '_out'}`)) : [...outputs];
    const domain = normDomain(OPS[opType].domain);
    this.nodes.push({
      name,
      opType,
      domain,
      inputs: inputs.slice(0, last).map((v) => v ?? ''),
      outputs: outs,
      attrs,
      ...(domain === '' ? { opset: EXPANSION_OPSET } : {}),
    });
    return outs;
  }

  op(opType: OpType, inputs: readonly (string | undefined)[], attrs: Attrs = {}, output?: string): string {
    return this.emit(opType, inputs, attrs, output === undefined ? 1 : [output])[0]!;
  }

  output(value: string, k = 0): void {
    const out = this.node.outputs[k];
    if (!out) this.unsupported(`its expansion writes output ${k}, which the node does not declare`);
    if (value !== out) this.op('Identity', [value], {}, out);
  }

  constant(t: { readonly dtype: DataType; readonly dims: readonly number[]; readonly data: ArrayLike<number> }, hint = 'Constant'): string {
    if (t.data.length !== sizeOf(t.dims)) throw new Error(`expansion constant '${hint}': ${t.data.length} values for [${t.dims.join(',')}]`);
    const name = this.fresh(`${this.node.name}/${hint}`);
    this.inits.push({ name, dtype: t.dtype, dims: [...t.dims], data: typed(t.dtype, t.data), constant: true });
    return name;
  }

  weight(w: Omit<Initializer, 'name' | 'constant'>, replaces: readonly string[], hint: string): string {
    const name = this.fresh(hint);
    this.inits.push({ ...w, name });
    this.replaced.push(...replaces);
    return name;
  }

  ints(values: readonly number[]): string {
    return this.constant({ dtype: 'int64', dims: [values.length], data: values }, `ints[${values.join(',')}]`);
  }

  scalar(value: number, dtype: DataType): string {
    return this.constant({ dtype, dims: [], data: [value] }, `${dtype}(${value})`);
  }

  dims(value: string): readonly (number | undefined)[] | undefined {
    return this.ctx.dims(value);
  }

  initializer(value: string): Initializer | undefined {
    return this.ctx.initializer(value);
  }

  buffer(value: string): void {
    if (this.ctx.initializer(value)) this.buffers.push(value);
  }

  attention(roles: NonNullable<ExpandedOp['attention']>): void {
    this.roles = roles;
  }

  unsupported(reason: string): never {
    throw new UnsupportedOpError(this.node.opType, this.node.name, reason, this.ctx.opset, this.node.domain);
  }

  /** The nodes and constants written, checked to produce every output the node declares. */
  finish(): Expansion {
    const produced = new Set(this.nodes.flatMap((n) => n.outputs));
    for (const o of this.node.outputs) {
      if (o && !produced.has(o)) this.unsupported(`its expansion does not produce output '${o}'`);
    }
    const constants = this.inits.filter((i) => i.constant).map((i) => i.name);
    const record: ExpandedOp = { node: this.node, nodes: this.nodes.map((n) => n.name), constants, ...(this.roles ? { attention: this.roles } : {}) };
    return { nodes: this.nodes, initializers: this.inits, buffers: this.buffers, replaced: this.replaced, record };
  }
}

/**
 * Entry point at load: `node`, a fused op (`def`, an ExpandedOpDef), written as primitives before
 * input shapes are known. `ctx.dims` gives what is known of dims then (onnx/expand.ts's StaticDims).
 */
export function expandAtLoad(def: ExpandedOpDef, node: Node, ctx: ExpansionContext): Expansion {
  const x = new ExpansionBuilder(node, ctx);
  def.expand(x, node.attrs);
  return x.finish();
}

/**
 * Entry point at specialisation: `node` (its inputs resolved to the values specialisation reads), a
 * composite op whose `def.expand` needs its inputs' concrete types `inputs` (constant values
 * included); `ctx.dims` gives concrete dims. The record and buffers of the result mean nothing here:
 * module discovery has run on the loaded graph.
 */
export function expandAtSpecialisation(def: OpDef, node: Node, inputs: Inputs<ValueInfo>, ctx: ExpansionContext): Expansion {
  if (!def.expand) throw new Error(`'${node.opType}' is not a composite op`); // callers check `expand`
  const x = new ExpansionBuilder(node, ctx, inputs);
  def.expand(x, node.attrs);
  return x.finish();
}

/**
 * The `gpu` entry of a composite op: specialisation always expands it, so reaching this lowering
 * means a graph skipped specialisation.
 */
export function expandedOp(opType: string): GpuLower {
  return (_inputs, _outputs, _attrs, ctx) => {
    throw new UnsupportedOpError(opType, ctx.nodeName, 'is expanded into other ops at specialisation and has no lowering of its own', ctx.opset);
  };
}
