// The reverse pass: a specialised forward graph → the same graph plus its backward.
//
// `buildBackward(spec, loss, wrt)` differentiates a scalar `loss` with respect to trainable values
// (graph inputs, weights, or any intermediate value) and returns a SpecializedGraph that computes
// the forward outputs and one gradient output per trainable value. As in micrograd, it is a
// topological walk in reverse that asks each op's VJP rule (vjp.ts) for the gradients of its
// inputs; unlike micrograd it only writes IR, which the compiler plans and the CPU executor runs.
//
// Only nodes on a path from a trainable value to the loss are differentiated: a value is *active*
// when it is trainable or a float output of a node with an active input, and a node is visited
// when it has an active input and an output the loss depends on. Gradients flow only into active
// inputs, so the pass stops at the earliest trainable values and frozen weights never get a
// gradient. Gradients of a value read by several nodes are summed with Add, in the order the
// consumers appear in reverse. Forward nodes come first in the result, backward nodes after them;
// a forward node whose backward needs an output it does not declare (LayerNormalization's Mean and
// InvStdDev) gets that output added.
//
// Last, the backward is rewritten to recompute the forward activations that are cheap to compute
// again instead of keeping them alive until their gradient (remat.ts; `BackwardOptions.recompute`),
// and, when asked, to keep the activations it still saves in half precision (half.ts;
// `BackwardOptions.activationPrecision`).
//
// A trainable value the loss does not depend on gets a zero gradient (an Expand of 0), not an
// error: a frozen branch or a padded-away position is a legitimate training state.

import { InputError } from '../errors.js';
import { FLOAT_TYPES } from '../ir/dtype.js';
import type { SpecNode, SpecializedGraph } from '../ir/static-graph.js';
import { sizeOf, type TensorType, type ValueInfo } from '../ir/tensor.js';
import type { ActivationPrecision } from '../ops/half.js';
import { OPS, isOpType } from '../ops/registry.js';
import type { Inputs, OpContext } from '../ops/types.js';
import { GraphBuilder } from './builder.js';
import { keepInHalf } from './half.js';
import { rematerialize, type Recompute } from './remat.js';
import { VJP, unsupportedError, type VjpContext } from './vjp.js';

export interface BackwardSummary {
  /** Forward nodes whose VJP rule ran (those on a path from a trainable value to the loss). */
  readonly differentiated: readonly string[];
  /** Forward activations the backward reads (node outputs and runtime inputs): what training keeps alive. */
  readonly savedActivations: readonly string[];
  /** Weights, trainable values and constants of the forward graph the backward reads. */
  readonly savedParameters: readonly string[];
  /** Forward values that received a gradient (trainable values and everything between them and the loss). */
  readonly gradientsOf: readonly string[];
  /** Backward nodes by op type. */
  readonly nodeCounts: Readonly<Record<string, number>>;
}

export interface BackwardGraph {
  /**
   * Forward and backward nodes in topological order. Its outputs are the forward graph's, then
   * one per trainable value, named `grad/<value>` (outputNames; `outputs` holds the value names).
   */
  readonly graph: SpecializedGraph;
  /** Trainable value → the value holding its gradient (an output of `graph`). */
  readonly gradients: ReadonlyMap<string, string>;
  readonly summary: BackwardSummary;
}

export interface BackwardOptions {
  /**
   * Which forward activations the backward recomputes instead of keeping (remat.ts): 'cheap'
   * (default: element-wise, layout and attention-score ops), 'layers' (each layer's forward again
   * from its input: least memory, about one more forward of time), 'none'.
   */
  readonly recompute?: Recompute;
  /**
   * How the backward keeps the forward activations it reads (half.ts): 'f32' (default, as
   * computed), or rounded to 'f16' / 'bf16', half the bytes; the forward and the loss stay f32.
   */
  readonly activationPrecision?: ActivationPrecision;
}

/** The options' part of a plan's cache key ('' for the defaults). */
export function backwardKey({ recompute = 'cheap', activationPrecision = 'f32' }: BackwardOptions): string {
  return `${recompute === 'cheap' ? '' : `;recompute:${recompute}`}${activationPrecision === 'f32' ? '' : `;activations:${activationPrecision}`}`;
}

/** The output name under which the gradient of `value` appears. */
export function gradName(value: string): string {
  return `grad/${value}`;
}

const isFloat = (t: TensorType | undefined): boolean => t !== undefined && FLOAT_TYPES.has(t.dtype);

/**
 * Builds the backward of `spec` for d`loss`/d`wrt`. `loss` (a value or a graph output name) must be
 * a float value of one element; each `wrt` a float value of the graph (a runtime input, a weight, a
 * constant or a node output). Throws InputError for bad arguments and UnsupportedOpError when a
 * path to the loss crosses an op whose gradient is not implemented.
 */
export function buildBackward(spec: SpecializedGraph, lossName: string, wrt: readonly string[], options: BackwardOptions = {}): BackwardGraph {
  const { recompute = 'cheap', activationPrecision = 'f32' } = options;
  // A graph output name (which may differ from its value name) is accepted for the loss.
  const outputIndex = spec.outputNames.indexOf(lossName);
  const loss = !spec.types.has(lossName) && outputIndex >= 0 ? spec.outputs[outputIndex]! : lossName;
  const lossType = spec.types.get(loss);
  if (!lossType) throw new InputError(`loss '${lossName}' is not a value or output of this graph`);
  if (!isFloat(lossType) || sizeOf(lossType.dims) !== 1) {
    throw new InputError(`loss '${loss}' must be a float scalar, it is ${lossType.dtype} [${lossType.dims.join(', ')}]`);
  }
  if (new Set(wrt).size !== wrt.length) throw new InputError(`wrt lists a value twice: ${wrt.join(', ')}`);
  for (const w of wrt) {
    const t = spec.types.get(w);
    if (!t) throw new InputError(`trainable value '${w}' is not a value of this graph (folded away at specialisation, or misspelt)`);
    if (!isFloat(t)) throw new InputError(`trainable value '${w}' has dtype ${t.dtype}; only float values have gradients`);
  }

  // Active values: trainable, or float outputs of nodes reading an active value.
  const active = new Set<string>(wrt);
  for (const n of spec.nodes) {
    if (!n.inputs.some((v) => v && active.has(v))) continue;
    for (const o of n.outputs) if (o && isFloat(spec.types.get(o)) && !wrt.includes(o)) active.add(o);
  }
  // Nodes the loss depends on.
  const needed = new Set<string>([loss]);
  const live = new Set<SpecNode>();
  for (let i = spec.nodes.length - 1; i >= 0; i--) {
    const n = spec.nodes[i]!;
    if (!n.outputs.some((o) => o && needed.has(o))) continue;
    live.add(n);
    for (const v of n.inputs) if (v) needed.add(v);
  }
  const path = spec.nodes.filter((n) => live.has(n) && n.inputs.some((v) => v && active.has(v)));

  const b = new GraphBuilder(spec);
  b.reserve(...wrt.map(gradName));
  const forward: SpecNode[] = [...spec.nodes];
  const indexOf = new Map(spec.nodes.map((n, i) => [n, i]));

  // Gradient contributions per value, summed on first read.
  const grads = new Map<string, string[]>();
  const contribute = (v: string, g: string): void => {
    const list = grads.get(v);
    if (list) list.push(g);
    else grads.set(v, [g]);
  };
  const total = (v: string): string | undefined => {
    const list = grads.get(v);
    if (!list) return undefined;
    if (list.length > 1) {
      b.scope = `${v}/grad`;
      let acc = list[0]!;
      for (const g of list.slice(1)) acc = b.add(acc, g);
      grads.set(v, [acc]);
    }
    return grads.get(v)![0];
  };
  b.scope = 'grad';
  contribute(loss, b.constant({ dtype: lossType.dtype, dims: [...lossType.dims], data: Float64Array.of(1) }));

  const differentiated: string[] = [];
  for (let p = path.length - 1; p >= 0; p--) {
    const node = path[p]!;
    const dy = node.outputs.map((o) => (o ? total(o) : undefined));
    if (dy.every((g) => g === undefined)) continue;
    if (!isOpType(node.opType)) throw unsupportedError(node, `'${node.opType}' is not an op of the registry`);
    const entry = VJP[node.opType];
    if (entry === null) continue;
    if (typeof entry !== 'function') throw unsupportedError(node, entry.unsupported);
    const ctx: OpContext = { opType: node.opType, nodeName: node.name, opset: node.opset, numOutputs: node.outputs.length };
    const inputs: Inputs<ValueInfo> = node.inputs.map((v) => (v ? b.info(v) : undefined));
    const needs = (i: number): boolean => {
      const v = node.inputs[i];
      return v !== undefined && v !== '' && active.has(v);
    };
    const fi = indexOf.get(node)!;
    const c: VjpContext = {
      node,
      inputs,
      dy,
      needs,
      ctx,
      b,
      output: (k) => exposeOutput(b, forward, fi, k, inputs, ctx),
      unsupported: (detail) => {
        throw unsupportedError(node, detail);
      },
    };
    b.scope = `${node.name}/grad`;
    const dx = entry(c);
    differentiated.push(node.name);
    node.inputs.forEach((v, i) => {
      const g = dx[i];
      if (!needs(i) || g === undefined) return;
      const want = spec.types.get(v)!;
      const got = b.type(g);
      if (got.dims.length !== want.dims.length || got.dims.some((d, j) => d !== want.dims[j])) {
        throw new Error(
          `autograd: the ${node.opType} rule gave input ${i} of '${node.name}' a gradient of shape [${got.dims.join(', ')}], ` +
            `the input is [${want.dims.join(', ')}]`,
        );
      }
      contribute(v, g);
    });
  }

  // One output per trainable value; a constant (the seed, when wrt holds the loss) or a missing
  // gradient becomes a node output so that the compiler gives it a buffer.
  b.scope = 'grad';
  const gradients = new Map<string, string>();
  for (const w of wrt) {
    const t = spec.types.get(w)!;
    const g = total(w);
    gradients.set(w, g === undefined ? b.zeros(t) : b.constants.has(g) ? b.op('Expand', [g, b.ints(t.dims)]) : g);
  }

  const graph = rematerialize(
    {
      ...spec,
      key: `${spec.key};grad:${loss}→${wrt.join(',')}${backwardKey(options)}`,
      nodes: [...forward, ...b.nodes],
      types: b.types,
      constants: b.constants,
      resident: b.resident,
      outputs: [...spec.outputs, ...wrt.map((w) => gradients.get(w)!)],
      outputNames: [...spec.outputNames, ...wrt.map(gradName)],
    },
    forward.length,
    recompute,
  );
  const backwardNodes = graph.nodes.slice(forward.length);
  const producedForward = new Set(forward.flatMap((n) => n.outputs));
  const runtime = new Set(spec.inputs.map((x) => x.name));
  const backwardMade = new Set(backwardNodes.flatMap((n) => n.outputs));
  const savedActivations = new Set<string>();
  const savedParameters = new Set<string>();
  const nodeCounts: Record<string, number> = {};
  for (const n of backwardNodes) {
    nodeCounts[n.opType] = (nodeCounts[n.opType] ?? 0) + 1;
    for (const v of n.inputs) {
      if (!v || backwardMade.has(v)) continue;
      if (producedForward.has(v) || runtime.has(v)) savedActivations.add(v);
      else if (spec.types.has(v)) savedParameters.add(v);
    }
  }

  return {
    graph: keepInHalf(graph, forward.length, activationPrecision),
    gradients,
    summary: {
      differentiated,
      savedActivations: [...savedActivations],
      savedParameters: [...savedParameters],
      gradientsOf: [...grads.keys()].filter((v) => v !== loss || wrt.includes(loss)),
      nodeCounts,
    },
  };
}

/**
 * The name of output k of forward node `forward[i]`, adding it (with its type from the op's shape
 * rule) when the node does not declare it; the node is replaced in `forward` by its extended copy.
 */
function exposeOutput(b: GraphBuilder, forward: SpecNode[], i: number, k: number, inputs: Inputs<ValueInfo>, ctx: OpContext): string {
  const node = forward[i]!;
  const have = node.outputs[k];
  if (have) return have;
  const types = OPS[node.opType as keyof typeof OPS].shape(inputs, node.attrs, ctx);
  const t = types[k];
  if (!t) throw new Error(`autograd: ${node.opType} node '${node.name}' has no output ${k}`);
  const outputs = [...node.outputs];
  while (outputs.length <= k) outputs.push('');
  const name = b.fresh(`${node.name}/output_${k}`);
  outputs[k] = name;
  b.types.set(name, { dtype: t.dtype, dims: [...t.dims] });
  forward[i] = { ...node, outputs };
  return name;
}
