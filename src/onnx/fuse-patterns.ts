// Recognising decomposed ops at specialisation: exporters below opset 17 (torch.onnx at its
// default opsets, optimum's GPT-2 and BERT exports) write LayerNorm and the tanh GELU as chains
// of element-wise ops and reductions. Each chain is replaced, in place, by the one op it computes
// — LayerNormalization and Gelu(approximate = 'tanh'), the rewrites onnxruntime's LayerNormFusion
// and FastGeluFusion make — so the forward runs one row kernel instead of nine dispatches (two of
// them reductions), and the backward gets the fused LayerNormalizationGrad / GeluGrad instead of
// the VJPs of every piece (broadcast sums, divisions, powers: about twice the forward chain's
// dispatches again). Attention's transposed keys are read transposed by the product instead of
// copied (what is left of the permutation keeps the innermost axis; identity: no Transpose).
//
//   LayerNorm: m = ReduceMean(x, [-1]); d = x − m; v = ReduceMean(d², [-1]); n = d / √(v + ε);
//              y = n·γ + β                     ⇒ LayerNormalization(x, γ, β; axis −1, ε)
//   GELU:      y = (x·½)·(1 + tanh(√(2/π)·(x + 0.044715·x³)))  ⇒ Gelu(x; approximate 'tanh')
//   kᵀ:        MatMul(q, Transpose(k, perm)), perm putting k's innermost axis next to last
//              (perm′ = perm with its last two entries swapped)
//                                              ⇒ FusedMatMul(q, Transpose(k, perm′); transB)
//
// A chain is replaced only when it is exactly the pattern: the constants are scalars of the right
// value (ε any positive scalar), γ and β are 1-D initializers, every intermediate value is read
// only inside the chain and is no graph output. The replacement computes the same function (the
// CPU reference runs it too; the model tests compare against PyTorch and onnxruntime), its node
// takes the name of the chain's first node (module scopes are kept) and is written against
// EXPANSION_OPSET, as the nodes of an expansion are.

import { initializerToRef, nodeOpset, type Graph, type Node } from '../ir/graph.js';
import { EXPANSION_OPSET } from '../ops/expansion.js';

// One result per graph object (graphs are never mutated): every specialisation of a graph shares
// one fused graph, so what is keyed by the graph (warnings once per graph) stays once.
const memo = new WeakMap<Graph, Graph>();

/** Returns `graph` with decomposed LayerNorm and tanh-GELU chains and transposed MatMul operands fused (the same graph when none match). */
export function fuseDecomposedOps(graph: Graph): Graph {
  let fused = memo.get(graph);
  if (!fused) memo.set(graph, (fused = fuse(graph)));
  return fused;
}

function fuse(graph: Graph): Graph {
  const producer = new Map<string, Node>();
  const readers = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    for (const o of n.outputs) if (o) producer.set(o, n);
    for (const i of n.inputs) {
      if (!i) continue;
      const r = readers.get(i);
      if (r) r.push(n);
      else readers.set(i, [n]);
    }
  }
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const scalar = (v: string | undefined): number | undefined => {
    const init = v ? graph.initializers.get(v) : undefined;
    if (!init?.data || init.dims.reduce((a, d) => a * d, 1) !== 1) return undefined;
    return initializerToRef(init).data[0];
  };
  const near = (v: number | undefined, want: number): boolean => v !== undefined && Math.abs(v - want) <= 1e-6 * Math.abs(want);
  const vector = (v: string): boolean => graph.initializers.get(v)?.dims.length === 1;
  // The node producing `v` when it is an `opType` node read only by `by` (inside the chain).
  const only = (v: string | undefined, opType: string, ...by: Node[]): Node | undefined => {
    const n = v ? producer.get(v) : undefined;
    if (!n || n.opType !== opType || n.domain !== '' || outputs.has(v!)) return undefined;
    const r = readers.get(v!) ?? [];
    return r.length === by.length && r.every((x) => by.includes(x)) ? n : undefined;
  };
  // The other input of a commutative binary node, given one of them.
  const other = (n: Node, one: string): string | undefined => (n.inputs[0] === one ? n.inputs[1] : n.inputs[1] === one ? n.inputs[0] : undefined);
  const lastAxisMean = (n: Node | undefined): boolean => {
    if (!n || (n.attrs.keepdims ?? 1) !== 1) return false;
    // `axes` is an attribute before opset 18, a constant input from then on.
    const init = n.inputs[1] ? graph.initializers.get(n.inputs[1]) : undefined;
    const axes = nodeOpset(graph, n) >= 18 ? (init?.data ? Array.from(initializerToRef(init).data) : undefined) : (n.attrs.axes as readonly number[] | undefined);
    return axes?.length === 1 && axes[0] === -1;
  };

  const replaced = new Map<Node, Node>(); // last node of a chain → the fused node
  const removed = new Set<Node>();
  const fuse = (chain: Node[], fused: Node): void => {
    if (chain.some((n) => removed.has(n))) return;
    chain.forEach((n) => removed.add(n));
    replaced.set(chain[chain.length - 1]!, fused);
  };

  for (const add of graph.nodes) {
    // LayerNorm, matched from its last node (the bias Add) backwards.
    if (add.opType === 'Add' && add.domain === '') {
      for (const beta of add.inputs) {
        if (!vector(beta)) continue;
        const mul = only(other(add, beta), 'Mul', add);
        const gamma = mul?.inputs.find((i) => vector(i));
        const div = gamma ? only(other(mul!, gamma), 'Div', mul!) : undefined;
        const sqrt = div ? only(div.inputs[1], 'Sqrt', div) : undefined;
        const addEps = sqrt ? only(sqrt.inputs[0], 'Add', sqrt) : undefined;
        const eps = addEps ? addEps.inputs.map(scalar).find((e) => e !== undefined && e > 0) : undefined;
        const mean2 = addEps && eps !== undefined ? only(addEps.inputs.find((i) => scalar(i) === undefined), 'ReduceMean', addEps) : undefined;
        const pow = mean2 ? only(mean2.inputs[0], 'Pow', mean2) : undefined;
        if (!pow || !near(scalar(pow.inputs[1]), 2) || !lastAxisMean(mean2)) continue;
        const sub = only(pow.inputs[0], 'Sub', pow, div!);
        if (!sub || div!.inputs[0] !== sub.outputs[0]) continue;
        const mean1 = only(sub.inputs[1], 'ReduceMean', sub);
        const x = sub.inputs[0]!;
        if (!mean1 || mean1.inputs[0] !== x || !lastAxisMean(mean1)) continue;
        const chain = [mean1, sub, pow, mean2!, addEps!, sqrt!, div!, mul!, add];
        fuse(chain, { name: mean1.name, opType: 'LayerNormalization', domain: '', inputs: [x, gamma!, beta], outputs: [add.outputs[0]!], attrs: { axis: -1, epsilon: eps! }, opset: EXPANSION_OPSET });
        break;
      }
    }
    // tanh GELU, matched from its last node (the product of ½x and 1 + tanh(·)).
    if (add.opType === 'Mul' && add.domain === '') {
      const out = add;
      for (const half of out.inputs) {
        const mulHalf = only(half, 'Mul', out);
        const x = mulHalf?.inputs.find((i) => !near(scalar(i), 0.5));
        if (!mulHalf || !x || !near(scalar(other(mulHalf, x)), 0.5)) continue;
        const onePlus = only(other(out, half), 'Add', out);
        const t = onePlus?.inputs.find((i) => !near(scalar(i), 1));
        if (!onePlus || !t || !near(scalar(other(onePlus, t)), 1)) continue;
        const tanh = only(t, 'Tanh', onePlus);
        const scaled = tanh ? only(tanh.inputs[0], 'Mul', tanh) : undefined;
        const inner = scaled?.inputs.find((i) => !near(scalar(i), Math.sqrt(2 / Math.PI)));
        if (!scaled || !inner || !near(scalar(other(scaled, inner)), Math.sqrt(2 / Math.PI))) continue;
        const sum = only(inner, 'Add', scaled);
        const cubicTerm = sum ? only(other(sum, x), 'Mul', sum) : undefined;
        const cube = cubicTerm?.inputs.find((i) => !near(scalar(i), 0.044715));
        if (!cubicTerm || !cube || !near(scalar(other(cubicTerm, cube)), 0.044715)) continue;
        const pow = only(cube, 'Pow', cubicTerm);
        if (!pow || pow.inputs[0] !== x || !near(scalar(pow.inputs[1]), 3)) continue;
        const chain = [mulHalf, pow, cubicTerm!, sum!, scaled, tanh!, onePlus, out];
        fuse(chain, { name: mulHalf.name, opType: 'Gelu', domain: '', inputs: [x], outputs: [out.outputs[0]!], attrs: { approximate: 'tanh' }, opset: EXPANSION_OPSET });
        break;
      }
    }
  }
  // A MatMul operand transposed by a permutation that swaps its last two axes (attention's
  // kᵀ: Transpose(k, [0, 2, 3, 1])): the product reads it transposed instead (FusedMatMul's
  // transA / transB), and what is left of the permutation, if anything, stays a Transpose that
  // keeps the last two axes in place (the cheap strided copy; identity: no node at all). Saves the
  // transposing copy in the forward and its inverse in the backward. Activations only: a
  // transposed weight is the LM head's business (ops/lm-head.ts, compile/legalize.ts).
  for (const mm of graph.nodes) {
    if (mm.opType !== 'MatMul' || mm.domain !== '' || removed.has(mm)) continue;
    const inputs = [...mm.inputs];
    const attrs: Record<string, number> = {};
    mm.inputs.forEach((v, k) => {
      const t = only(v, 'Transpose', mm);
      const perm = t?.attrs.perm as readonly number[] | undefined;
      if (!t || !perm || perm.length < 3 || removed.has(t) || graph.initializers.has(t.inputs[0]!)) return;
      const r = perm.length;
      // Only when the permutation moves the innermost (contiguous) axis next to last: then what
      // is left keeps it innermost, and reading the operand transposed is the cheaper order.
      if (perm[r - 2] !== r - 1) return;
      const rest = [...perm.slice(0, r - 2), perm[r - 1]!, perm[r - 2]!];
      if (rest.every((p, i) => p === i)) {
        inputs[k] = t.inputs[0]!;
        removed.add(t);
      } else {
        // The Transpose keeps its output name: only this product reads it.
        replaced.set(t, { ...t, attrs: { ...t.attrs, perm: rest } });
      }
      attrs[k === 0 ? 'transA' : 'transB'] = 1;
    });
    if (Object.keys(attrs).length > 0) replaced.set(mm, { name: mm.name, opType: 'FusedMatMul', domain: 'ia3', inputs, outputs: mm.outputs, attrs });
  }
  if (replaced.size === 0) return graph;
  const nodes = graph.nodes.flatMap((n) => (replaced.has(n) ? [replaced.get(n)!] : removed.has(n) ? [] : [n]));
  return { ...graph, nodes };
}
