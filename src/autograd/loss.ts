// Task losses appended to a model's graph, as Hugging Face models compute them.
//
//   CAUSAL_LM  loss = CrossEntropy(logits[:, :-1], labels[:, 1:]), ignore_index −100, mean over the
//              tokens not ignored (labels are the input ids with padding set to −100)
//   SEQ_CLS    loss = CrossEntropy(logits [batch, num_labels], labels [batch])
//
// The loss nodes are ordinary IR nodes (Slice + the fused CrossEntropyLoss kernel), so the same
// graph runs on the GPU plan and on the float64 CPU executor, and autograd differentiates it. It is
// a pure rewrite of the graph IR, the head of every backward pass: PeftModel (lossAndGradients) and
// the Trainer both build on it, so it lives below them.

import { InputError } from '../errors.js';
import type { Graph, Initializer, Node } from '../ir/graph.js';

export type LossTask = 'CAUSAL_LM' | 'SEQ_CLS';

/** Name of the labels input and of the loss output added by `withLoss`. */
export const LABELS = 'labels';
export const LOSS = 'loss';
/** For SEQ_CLS with a decoder: the pooled class scores [batch, classes] (a graph output). */
export const SCORES = 'loss/scores';

const i64 = (name: string, values: bigint[]): Initializer => ({ name, dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values) });

/**
 * The output the loss reads: `logits`, else the graph's first output (TensorFlow exports name it
 * after their last op, e.g. `loss/BiasAdd:0`).
 */
export function logitsOutput(graph: Pick<Graph, 'outputs'>): string {
  return graph.outputs.some((o) => o.name === 'logits') ? 'logits' : (graph.outputs[0]?.name ?? 'logits');
}

/** `graph` with an int64 `labels` input and a scalar float `loss` output for `task`. */
export function withLoss(graph: Graph, task: LossTask, logits = logitsOutput(graph)): Graph {
  if (!graph.outputs.some((o) => o.name === logits)) {
    throw new InputError(`the model has no output '${logits}' to compute the ${task} loss from`);
  }
  if (graph.inputs.some((i) => i.name === LABELS)) throw new InputError(`the model already has an input named '${LABELS}'`);
  const nodes: Node[] = [...graph.nodes];
  const initializers = new Map(graph.initializers);
  let scores = logits;
  let targets = LABELS;
  if (task === 'CAUSAL_LM') {
    // Predict token t+1 from positions ≤ t: drop the last position of the logits, the first label.
    for (const t of [i64('loss/zero', [0n]), i64('loss/one', [1n]), i64('loss/minus_one', [-1n]), i64('loss/end', [2n ** 62n])]) {
      initializers.set(t.name, t);
    }
    nodes.push(
      { name: 'loss/shift_logits', opType: 'Slice', domain: '', inputs: [logits, 'loss/zero', 'loss/minus_one', 'loss/one'], outputs: ['loss/logits'], attrs: {} },
      { name: 'loss/shift_labels', opType: 'Slice', domain: '', inputs: [LABELS, 'loss/one', 'loss/end', 'loss/one'], outputs: ['loss/labels'], attrs: {} },
    );
    scores = 'loss/logits';
    targets = 'loss/labels';
  }
  const logitsRank = graph.outputs.find((o) => o.name === logits)?.dims?.length;
  if (task === 'SEQ_CLS' && logitsRank === 3) {
    // A decoder's classification head scores every position; Hugging Face pools the last real
    // token. Its one-hot weight is relu(mask[t] − mask[t+1]) (right or left padding alike), so
    // the pooled scores Σ_t logits[b, t, :] · w[b, t] stay differentiable with ordinary ops.
    if (!graph.inputs.some((i) => i.name === 'attention_mask')) {
      throw new InputError('sequence classification with a decoder needs an attention_mask input to find the last token');
    }
    if ((graph.opsets.get('') ?? 0) < 13) throw new InputError('sequence classification with a decoder needs an opset ≥ 13 model');
    for (const t of [i64('loss/zero', [0n]), i64('loss/one', [1n]), i64('loss/end', [2n ** 62n]), i64('loss/axis2', [2n])]) initializers.set(t.name, t);
    initializers.set('loss/zero_f', { name: 'loss/zero_f', dtype: 'float32', dims: [], data: new Float32Array([0]) });
    const n = (name: string, opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}): Node => ({ name, opType, domain: '', inputs, outputs, attrs });
    nodes.push(
      n('loss/mask', 'Cast', ['attention_mask'], ['loss/mask_f'], { to: 1 }),
      n('loss/mask_next', 'Slice', ['loss/mask_f', 'loss/one', 'loss/end', 'loss/one'], ['loss/mask_next']),
      n('loss/mask_first', 'Slice', ['loss/mask_f', 'loss/zero', 'loss/one', 'loss/one'], ['loss/mask_first']),
      n('loss/zero_col', 'Mul', ['loss/mask_first', 'loss/zero_f'], ['loss/zero_col']),
      n('loss/mask_shift', 'Concat', ['loss/mask_next', 'loss/zero_col'], ['loss/mask_shift'], { axis: 1 }),
      n('loss/last_diff', 'Sub', ['loss/mask_f', 'loss/mask_shift'], ['loss/last_diff']),
      n('loss/last', 'Relu', ['loss/last_diff'], ['loss/last']),
      n('loss/last_w', 'Unsqueeze', ['loss/last', 'loss/axis2'], ['loss/last_w']),
      n('loss/weighted', 'Mul', [logits, 'loss/last_w'], ['loss/weighted']),
      n('loss/pool', 'ReduceSum', ['loss/weighted', 'loss/one'], [SCORES], { keepdims: 0 }),
    );
    scores = SCORES;
  }
  nodes.push({
    name: 'loss/cross_entropy',
    opType: 'CrossEntropyLoss',
    domain: 'ia3',
    inputs: [scores, targets],
    outputs: [LOSS, 'loss/count'],
    attrs: { ignore_index: -100, reduction: 'mean' },
  });
  // Symbols of their own: the loss's shape rule checks labels against the logits.
  const labelDims = task === 'CAUSAL_LM' ? ['labels_batch', 'labels_sequence'] : ['labels_batch'];
  return {
    ...graph,
    nodes,
    initializers,
    inputs: [...graph.inputs, { name: LABELS, dtype: 'int64', dims: labelDims }],
    outputs: [...graph.outputs, { name: LOSS, dtype: 'float32', dims: [] }, ...(scores === SCORES ? [{ name: SCORES, dtype: 'float32' as const, dims: ['labels_batch', 'classes'] }] : [])],
  };
}
