// Expanding fused ops at load: every node the registry resolves to an ExpandedOpDef (onnxruntime's
// com.microsoft contrib ops) is replaced, in place, by the primitive nodes its `expand` writes
// (through ops/expansion.ts's load entry point; composite standard ops use its other one, at
// specialisation), so everything after decoding — module discovery, IA3 insertion, specialisation,
// autograd, fusion, plans — sees only primitives. The graph records what was expanded (`Graph.expanded`), and
// initializers an expansion marks as module buffers (rotary caches) are flagged `buffer`.
//
// Expansions run before input shapes are known; what they need of a value's dims (a projection's
// width, an input's rank) comes from `StaticDims`: declared input dims, initializer dims, and a
// small table of shape rules over partially known dims for the ops that carry activations between
// projections. A dim that depends on a symbolic input dim is unknown; an expansion that needs one
// says so with an UnsupportedOpError naming the node.

import { UnsupportedOpError } from '../errors.js';
import { initializerToRef, nodeOpset, opsetOf, type Graph, type Initializer, type Node } from '../ir/graph.js';
import { expandAtLoad, takenNames, type Expansion } from '../ops/expansion.js';
import { resolveOp } from '../ops/registry.js';

type Dims = readonly (number | undefined)[];

const SAME_SHAPE = new Set([
  'Cast', 'Relu', 'Gelu', 'Sigmoid', 'Tanh', 'Erf', 'Sqrt', 'Neg', 'Exp', 'Log', 'Abs', 'Reciprocal', 'Floor', 'Ceil',
  'Sin', 'Cos', 'Softplus', 'Not', 'Clip', 'Softmax', 'LogSoftmax', 'Identity', 'Dropout', 'LayerNormalization',
  'SimplifiedLayerNormalization', 'IA3Scale', 'RotaryEmbedding', 'MaskedSoftmax', 'CumSum',
]);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Where', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Max', 'Min', 'Sum', 'Mean']);

/** Numpy broadcasting of partially known dims: a known dim above 1 wins, unknown otherwise unless all are 1. */
function broadcast(all: readonly Dims[]): Dims {
  const rank = Math.max(0, ...all.map((d) => d.length));
  return Array.from({ length: rank }, (_, k) => {
    const vals = all.filter((d) => d.length >= rank - k).map((d) => d[d.length - rank + k]);
    const big = vals.find((v) => v !== undefined && v !== 1);
    if (big !== undefined) return big;
    return vals.every((v) => v === 1) ? 1 : undefined;
  });
}

/** What is known of the dims of every value before input shapes are. */
export class StaticDims {
  private readonly producer = new Map<string, Node>();
  private readonly memo = new Map<string, Dims | undefined>();
  private readonly inputs: Map<string, Dims>;

  constructor(private readonly graph: Graph, private readonly initializer: (name: string) => Initializer | undefined) {
    this.inputs = new Map(graph.inputs.map((d) => [d.name, (d.dims ?? []).map((v) => (typeof v === 'number' ? v : undefined))]));
    if (graph.inputs.some((d) => !d.dims)) for (const d of graph.inputs) if (!d.dims) this.inputs.delete(d.name);
  }

  /** Registers nodes (expansions add theirs as they go). */
  add(nodes: readonly Node[]): void {
    for (const n of nodes) for (const o of n.outputs) if (o) this.producer.set(o, n);
  }

  dims(value: string): Dims | undefined {
    if (this.memo.has(value)) return this.memo.get(value);
    this.memo.set(value, undefined); // a cycle reads as unknown
    const d = this.compute(value);
    this.memo.set(value, d);
    return d;
  }

  private ints(value: string): number[] | undefined {
    const init = this.initializer(value);
    // A weight that streamed to the GPU (no CPU data) is no shape operand: unknown here.
    return init?.data ? Array.from(initializerToRef(init).data) : undefined;
  }

  private compute(value: string): Dims | undefined {
    const init = this.initializer(value);
    if (init) return init.dims;
    const declared = this.inputs.get(value);
    if (declared) return declared;
    const n = this.producer.get(value);
    if (!n) return undefined;
    const k = n.outputs.indexOf(value);
    const ins = n.inputs.map((v) => (v ? this.dims(v) : undefined));
    const x = ins[0];
    const opset = nodeOpset(this.graph, n);
    const axes = (at: number, attr: string): number[] | undefined => (opset >= 13 ? (n.inputs[at] ? this.ints(n.inputs[at]!) : undefined) : (n.attrs[attr] as number[] | undefined));
    if (n.domain !== '' && n.domain !== 'ia3') return undefined;
    if (SAME_SHAPE.has(n.opType)) return k === 0 ? x : undefined;
    if (BROADCAST.has(n.opType)) return ins.every((d) => d) ? broadcast(ins as Dims[]) : undefined;
    switch (n.opType) {
      case 'MatMul':
      case 'FusedMatMul': {
        const [a, b] = ins;
        if (!a || !b || a.length < 2 || b.length < 2) return undefined;
        const ta = n.attrs.transA === 1;
        const tb = n.attrs.transB === 1;
        const m = a[a.length - (ta ? 1 : 2)];
        const nn = b[b.length - (tb ? 2 : 1)];
        return [...broadcast([a.slice(0, -2), b.slice(0, -2)]), m, nn];
      }
      case 'Gemm': {
        const [a, b] = ins;
        if (!a || !b) return undefined;
        return [a[n.attrs.transA === 1 ? 1 : 0], b[n.attrs.transB === 1 ? 0 : 1]];
      }
      case 'Transpose': {
        if (!x) return undefined;
        const perm = (n.attrs.perm as number[] | undefined) ?? x.map((_, i) => x.length - 1 - i);
        return perm.map((p) => x[p]);
      }
      case 'Reshape': {
        const shape = this.ints(n.inputs[1] ?? '');
        if (!shape) return undefined;
        const out = shape.map((v, i) => (v === 0 && n.attrs.allowzero !== 1 ? x?.[i] : v === -1 ? undefined : v));
        const minus = shape.indexOf(-1);
        if (minus >= 0 && x && x.every((v) => v !== undefined) && out.every((v, i) => i === minus || v !== undefined)) {
          const total = (x as number[]).reduce((p, v) => p * v, 1);
          out[minus] = total / (out as number[]).reduce((p, v, i) => (i === minus ? p : p * v), 1);
        }
        return out;
      }
      case 'Unsqueeze': {
        const ax = axes(1, 'axes');
        if (!x || !ax) return undefined;
        const rank = x.length + ax.length;
        const set = new Set(ax.map((a) => (a < 0 ? a + rank : a)));
        const rest = [...x];
        return Array.from({ length: rank }, (_, i) => (set.has(i) ? 1 : rest.shift()));
      }
      case 'Squeeze': {
        const ax = axes(1, 'axes');
        if (!x || !ax) return undefined;
        const set = new Set(ax.map((a) => (a < 0 ? a + x.length : a)));
        return x.filter((_, i) => !set.has(i));
      }
      case 'Concat': {
        if (ins.some((d) => !d)) return undefined;
        const axis = Number(n.attrs.axis ?? 0);
        const a = axis < 0 ? axis + x!.length : axis;
        return x!.map((v, i) => (i === a ? ins.reduce<number | undefined>((p, d) => (p === undefined || d![i] === undefined ? undefined : p + d![i]!), 0) : v));
      }
      case 'Split': {
        if (!x) return undefined;
        const axis = Number(n.attrs.axis ?? 0);
        const a = axis < 0 ? axis + x.length : axis;
        const sizes = opset >= 13 ? (n.inputs[1] ? this.ints(n.inputs[1]) : undefined) : (n.attrs.split as number[] | undefined);
        const size = sizes ? sizes[k] : x[a] === undefined ? undefined : x[a]! / n.outputs.length;
        return x.map((v, i) => (i === a ? size : v));
      }
      case 'Gather': {
        const idx = ins[1];
        if (!x || !idx) return undefined;
        const axis = Number(n.attrs.axis ?? 0);
        const a = axis < 0 ? axis + x.length : axis;
        return [...x.slice(0, a), ...idx, ...x.slice(a + 1)];
      }
      case 'Shape':
        return x && opset < 15 ? [x.length] : undefined;
      case 'Range':
        return [undefined];
      case 'Expand': {
        const shape = ins[1]?.[0] !== undefined ? this.ints(n.inputs[1]!) : undefined;
        return x && shape ? broadcast([x, shape.map((v) => (v === 1 ? 1 : v))]) : undefined;
      }
      default:
        return undefined;
    }
  }
}

/**
 * `graph` with every fused node expanded (the same object when there is none). `onError` receives
 * the UnsupportedOpError of a node whose expansion refused it (the node then stays as it was);
 * without it, the error is thrown.
 */
export function expandGraph(graph: Graph, onError?: (node: Node, error: UnsupportedOpError) => void): Graph {
  if (!graph.nodes.some((n) => resolveOp(n.domain, n.opType)?.kind === 'expanded')) return graph;
  const initializers = new Map(graph.initializers);
  const taken = takenNames(graph);
  const dims = new StaticDims(graph, (name) => initializers.get(name));
  dims.add(graph.nodes);
  const nodes: Node[] = [];
  const expanded: NonNullable<Graph['expanded']>[number][] = [...(graph.expanded ?? [])];
  const buffers = new Set<string>();
  const replaced = new Set<string>();
  for (const node of graph.nodes) {
    const op = resolveOp(node.domain, node.opType);
    if (op?.kind !== 'expanded') {
      nodes.push(node);
      continue;
    }
    let result: Expansion;
    try {
      result = expandAtLoad(op.def, node, { taken, initializer: (v) => initializers.get(v), dims: (v) => dims.dims(v), opset: opsetOf(graph, node.domain) });
    } catch (e) {
      if (!(e instanceof UnsupportedOpError) || !onError) throw e;
      onError(node, e);
      nodes.push(node);
      continue;
    }
    for (const init of result.initializers) initializers.set(init.name, init);
    for (const b of result.buffers) buffers.add(b);
    for (const r of result.replaced) replaced.add(r);
    dims.add(result.nodes);
    nodes.push(...result.nodes);
    expanded.push(result.record);
  }
  for (const name of buffers) initializers.set(name, { ...initializers.get(name)!, buffer: true });
  const read = new Set(nodes.flatMap((n) => n.inputs));
  for (const name of replaced) if (!read.has(name) && !graph.outputs.some((o) => o.name === name)) initializers.delete(name);
  return { ...graph, nodes, initializers, expanded };
}
