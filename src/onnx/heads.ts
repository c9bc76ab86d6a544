// The language-model head of an imported graph: the product that turns the last hidden states
// into the vocabulary logits, found so that training can fuse it with its loss (autograd/loss.ts)
// and inference can compute it for the positions asked for only (Model.run).
//
// A head is `logits = MatMul(hidden, W)` or `Gemm(hidden, W)` (transB either way, alpha = beta =
// 1, no C), with W a rank-2 initializer, whose output `logits` nothing but the graph's outputs
// reads. Exporters write GPT-2's, Llama's and Qwen's heads so (torch folds a tied head's transpose
// into its own initializer, or keeps the embedding with Gemm transB = 1).

import type { Graph, Node } from '../ir/graph.js';

export interface LmHead {
  /** The node computing the logits. */
  readonly node: Node;
  /** Its input: the last hidden states [..., E]. */
  readonly hidden: string;
  /** The head's weight: [E, V], or [V, E] when `transB`. */
  readonly weight: string;
  readonly transB: boolean;
}

/** The head computing `logits`, or undefined when its producer is not a plain head (see above). */
export function findLmHead(graph: Graph, logits = 'logits'): LmHead | undefined {
  const node = graph.nodes.find((n) => n.outputs.includes(logits));
  if (!node || node.domain !== '' || node.outputs.length !== 1) return undefined;
  if (graph.nodes.some((n) => n.inputs.includes(logits))) return undefined;
  const [hidden, weight, c] = node.inputs;
  if (!hidden || !weight || graph.initializers.get(weight)?.dims.length !== 2) return undefined;
  if (node.opType === 'MatMul') return { node, hidden, weight, transB: false };
  const a = node.attrs;
  if (node.opType === 'Gemm' && !c && (a.transA ?? 0) === 0 && (a.alpha ?? 1) === 1 && (a.beta ?? 1) === 1) {
    return { node, hidden, weight, transB: a.transB === 1 };
  }
  return undefined;
}
