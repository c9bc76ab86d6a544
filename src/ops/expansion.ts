// Writing a composite op as other registry ops (OpDef.expand): the builder expansions use.
//
// An expansion is a small graph: nodes of registry ops, in order, with fresh value and node names
// under the expanded node's name, the constants they read (shapes, axes), and its last nodes
// writing the expanded node's own output names. Every node pins the opset whose semantics its
// attributes follow (ai.onnx 18 here: axes as inputs, Slice/Pad/Split inputs), whatever the opset
// of the model, so one expansion serves every model. Specialisation replaces the node by these
// nodes and infers, folds and lowers them like any other (onnx/specialize.ts).

import { UnsupportedOpError } from '../errors.js';
import { tensor, type RefTensor } from '../ir/tensor.js';
import type { Attrs } from '../ir/graph.js';
import type { Expansion, ExpansionNode, ExpansionSite, GpuLower } from './types.js';

/** The ai.onnx opset expansions are written in. */
export const EXPANSION_OPSET = 18;

/** Builds an Expansion: `op` appends a node and returns its output's name. */
export class ExpansionBuilder {
  private readonly nodes: ExpansionNode[] = [];
  private readonly constants = new Map<string, RefTensor>();
  private count = 0;

  constructor(readonly site: ExpansionSite) {}

  private fresh(kind: string): string {
    return `${this.site.node}/${kind}_${this.count++}`;
  }

  /** Appends `opType(inputs)`; its single output is `out` when given (an output of the site), else fresh. */
  op(opType: string, inputs: readonly string[], attrs: Attrs = {}, out?: string): string {
    const name = this.fresh(opType);
    const output = out ?? `${name}_output`;
    this.nodes.push({ name, opType, inputs: [...inputs], outputs: [output], attrs, opset: EXPANSION_OPSET });
    return output;
  }

  /** A constant value the expansion reads. */
  constant(t: RefTensor): string {
    const name = this.fresh('Constant');
    this.constants.set(name, t);
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, starts...). */
  ints(values: readonly number[]): string {
    return this.constant(tensor('int64', [values.length], values));
  }

  /** A scalar constant of `dtype`. */
  scalar(value: number, dtype: RefTensor['dtype']): string {
    return this.constant(tensor(dtype, [], [value]));
  }

  /** Copies `value` to the site's output `k` (an Identity, which specialisation turns into an alias). */
  output(value: string, k = 0): void {
    const out = this.site.outputs[k]!;
    if (value !== out) this.op('Identity', [value], {}, out);
  }

  build(): Expansion {
    return { nodes: this.nodes, constants: this.constants };
  }
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
