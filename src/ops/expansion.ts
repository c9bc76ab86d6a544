// Writing a fused op as primitive nodes: the Expander an ExpandedOpDef's `expand` receives.
//
// An expansion runs on the graph as decoded, before input shapes are known, so it writes shape
// arithmetic the way exporters do (Reshape with 0 and -1, Split with static sizes) and leaves what
// only concrete shapes decide (attention mask forms, past lengths) to the shape rules of the
// primitives, which see them at specialisation. Emitted ai.onnx nodes carry EXPANSION_OPSET, so an
// expansion means the same in an opset-11 file and in an opset-21 one.
//
// Names: nodes are `<fused node>/<op>`, values `<fused node>/<hint>`, made unique against every
// name of the graph; the node's own outputs keep their names, so its readers are untouched.

import { UnsupportedOpError } from '../errors.js';
import type { DataType } from '../ir/dtype.js';
import { normDomain, type Attrs, type ExpandedOp, type Initializer, type Node } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { OPS, type OpType } from './registry.js';
import type { Expander } from './types.js';

/** The ai.onnx opset whose semantics expanded nodes follow (Split sizes, Squeeze axes and Reduce axes as inputs; Gelu). */
export const EXPANSION_OPSET = 21;

/** What an expansion reads of the graph around its node. */
export interface ExpansionContext {
  /** Every value and node name already in use (the expansion adds to it). */
  readonly taken: Set<string>;
  initializer(value: string): Initializer | undefined;
  dims(value: string): readonly (number | undefined)[] | undefined;
  /** Opset of the fused node's domain. */
  readonly opset: number;
}

/** What an expansion produced. */
export interface Expansion {
  readonly nodes: Node[];
  readonly initializers: Initializer[];
  /** Initializers to flag as module buffers. */
  readonly buffers: string[];
  /** Initializers of the file the expansion replaced by its own weights (dropped once unread). */
  readonly replaced: string[];
  readonly record: ExpandedOp;
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

/** The Expander of one fused node; `finish()` returns what it wrote. */
export class ExpansionBuilder implements Expander {
  private readonly nodes: Node[] = [];
  private readonly inits: Initializer[] = [];
  private readonly buffers: string[] = [];
  private readonly replaced: string[] = [];
  private roles: ExpandedOp['attention'];

  constructor(
    readonly node: Node,
    private readonly ctx: ExpansionContext,
  ) {}

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

  constant(t: { readonly dtype: DataType; readonly dims: readonly number[]; readonly data: ArrayLike<number> }, hint: string): string {
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

  /** The nodes and constants written, checked to produce every output the fused node declares. */
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
