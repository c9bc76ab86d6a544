// Task losses appended to a model's graph, as Hugging Face models compute them.
//
//   CAUSAL_LM  loss = CrossEntropy(logits[:, :-1], labels[:, 1:]), ignore_index −100, mean over the
//              tokens not ignored (labels are the input ids with padding set to −100)
//   SEQ_CLS    loss = CrossEntropy(logits [batch, num_labels], labels [batch]); a decoder's
//              per-position scores [batch, sequence, num_labels] are pooled first: at the last real
//              token (Hugging Face's choice, the default) or, at the caller's choice, their mean
//              over the real tokens (`pooling: 'mean'`: the head is linear, so this is the head
//              applied to the mean hidden state — closer to a bag of words)
//
// The loss nodes are ordinary IR nodes, so the same graph runs on the GPU plan and on the float64
// CPU executor, and autograd differentiates it. It is a pure rewrite of the graph IR, the head of
// every backward pass: PeftModel (lossAndGradients) and the Trainer both build on it, so it lives
// below them.
//
// CAUSAL_LM with a plain LM head (onnx/heads.ts) whose weight is not trained fuses the head with
// the loss: LMHeadCrossEntropy(hidden, labels shifted left and padded with −100, W) computes the
// logits in chunks and never holds them whole (ops/lm-head.ts), so training memory does not grow
// with batch × sequence × vocabulary; the logits are then no output of the training graph. Other
// heads, and heads whose weight is not a plain float32 one (kept packed, onnx/precision.ts), take
// Slice + CrossEntropyLoss over the logits.

import { InputError } from '../errors.js';
import type { Graph, Initializer, Node } from '../ir/graph.js';
import { findLmHead } from '../onnx/heads.js';

export type LossTask = 'CAUSAL_LM' | 'SEQ_CLS';

/** How a decoder's per-position class scores are pooled for SEQ_CLS: the last real token (HF's), or their mean over the real tokens. */
export type Pooling = 'last' | 'mean';
export const POOLINGS: readonly Pooling[] = ['last', 'mean'];

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

export interface LossOptions {
  /** The output holding the scores (default: `logitsOutput(graph)`). */
  readonly logits?: string;
  /** Trainable values: a head whose weight is one keeps the unfused loss (its weight needs a gradient). */
  readonly trainable?: ReadonlySet<string>;
  /** Fuse a plain LM head with the causal-LM loss (default true). */
  readonly fuseHead?: boolean;
  /** SEQ_CLS with per-position scores (a decoder's head): how they are pooled (default 'last', as Hugging Face). */
  readonly pooling?: Pooling;
}

/** `graph` with an int64 `labels` input and a scalar float `loss` output for `task`. */
export function withLoss(graph: Graph, task: LossTask, options: LossOptions = {}): Graph {
  const logits = options.logits ?? logitsOutput(graph);
  if (!graph.outputs.some((o) => o.name === logits)) {
    throw new InputError(`the model has no output '${logits}' to compute the ${task} loss from`);
  }
  if (graph.inputs.some((i) => i.name === LABELS)) throw new InputError(`the model already has an input named '${LABELS}'`);
  const nodes: Node[] = [...graph.nodes];
  const initializers = new Map(graph.initializers);
  let scores = logits;
  let targets = LABELS;
  const head = task === 'CAUSAL_LM' && options.fuseHead !== false ? findLmHead(graph, logits) : undefined;
  // The fused head's kernel reads a float32 weight: a head kept packed (fp16, 4-bit, 8-bit) or of
  // another dtype (a float16 one read through a dropped Cast) takes the unfused loss.
  const w = head && graph.initializers.get(head.weight);
  if (head && w?.dtype === 'float32' && !w.storage && !options.trainable?.has(head.weight)) return withFusedHead(graph, head, logits);
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
  const pooling = options.pooling ?? 'last';
  if (!POOLINGS.includes(pooling)) throw new InputError(`pooling must be one of ${POOLINGS.join(', ')}, got ${JSON.stringify(pooling)}`);
  if (pooling !== 'last' && !(task === 'SEQ_CLS' && logitsRank === 3)) {
    throw new InputError(`pooling '${pooling}' applies to a decoder's per-position class scores (SEQ_CLS, logits [batch, sequence, classes]); this ${task} model's '${logits}' ${task === 'SEQ_CLS' ? 'is already pooled' : 'is not classified'}`);
  }
  if (task === 'SEQ_CLS' && logitsRank === 3) {
    // A decoder's classification head scores every position, and the pooled scores are
    // Σ_t logits[b, t, :] · w[b, t], differentiable with ordinary ops. Hugging Face pools the last
    // real token: w is one-hot, relu(mask[t] − mask[t+1]) (right or left padding alike). The mean
    // weighs every real token alike: w = mask[t] / Σ_t mask[t].
    if (!graph.inputs.some((i) => i.name === 'attention_mask')) {
      throw new InputError(`sequence classification with a decoder needs an attention_mask input to find the ${pooling === 'last' ? 'last token' : 'real tokens'}`);
    }
    if ((graph.opsets.get('') ?? 0) < 13) throw new InputError('sequence classification with a decoder needs an opset ≥ 13 model');
    for (const t of [i64('loss/zero', [0n]), i64('loss/one', [1n]), i64('loss/end', [2n ** 62n]), i64('loss/axis2', [2n])]) initializers.set(t.name, t);
    initializers.set('loss/zero_f', { name: 'loss/zero_f', dtype: 'float32', dims: [], data: new Float32Array([0]) });
    const n = (name: string, opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}): Node => ({ name, opType, domain: '', inputs, outputs, attrs });
    nodes.push(n('loss/mask', 'Cast', ['attention_mask'], ['loss/mask_f'], { to: 1 }));
    const weights =
      pooling === 'mean'
        ? [
            n('loss/mask_count', 'ReduceSum', ['loss/mask_f', 'loss/one'], ['loss/mask_count'], { keepdims: 1 }),
            n('loss/mean', 'Div', ['loss/mask_f', 'loss/mask_count'], ['loss/pool_w']),
          ]
        : [
            n('loss/mask_next', 'Slice', ['loss/mask_f', 'loss/one', 'loss/end', 'loss/one'], ['loss/mask_next']),
            n('loss/mask_first', 'Slice', ['loss/mask_f', 'loss/zero', 'loss/one', 'loss/one'], ['loss/mask_first']),
            n('loss/zero_col', 'Mul', ['loss/mask_first', 'loss/zero_f'], ['loss/zero_col']),
            n('loss/mask_shift', 'Concat', ['loss/mask_next', 'loss/zero_col'], ['loss/mask_shift'], { axis: 1 }),
            n('loss/last_diff', 'Sub', ['loss/mask_f', 'loss/mask_shift'], ['loss/last_diff']),
            n('loss/last', 'Relu', ['loss/last_diff'], ['loss/pool_w']),
          ];
    nodes.push(
      ...weights,
      n('loss/pool_w3', 'Unsqueeze', ['loss/pool_w', 'loss/axis2'], ['loss/pool_w3']),
      n('loss/weighted', 'Mul', [logits, 'loss/pool_w3'], ['loss/weighted']),
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

/**
 * CAUSAL_LM through the fused head: labels shifted left (position t predicts token t+1) and padded
 * with −100 on the right, so the last position counts for nothing and the hidden states need no
 * slicing. The head's node goes; so does the `logits` output.
 */
function withFusedHead(graph: Graph, head: NonNullable<ReturnType<typeof findLmHead>>, logits: string): Graph {
  const initializers = new Map(graph.initializers);
  for (const t of [i64('loss/one', [1n]), i64('loss/end', [2n ** 62n])]) initializers.set(t.name, t);
  const opset = graph.opsets.get('') ?? 0;
  const n = (name: string, opType: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}, domain = ''): Node => ({ name, opType, domain, inputs, outputs, attrs });
  // Pad-11 reads pads and the fill from inputs; earlier Pad from attributes.
  let pad: Node;
  if (opset >= 11) {
    initializers.set('loss/pads', i64('loss/pads', [0n, 0n, 0n, 1n]));
    initializers.set('loss/ignore', { name: 'loss/ignore', dtype: 'int64', dims: [], data: BigInt64Array.of(-100n) });
    pad = n('loss/pad_labels', 'Pad', ['loss/labels_next', 'loss/pads', 'loss/ignore'], ['loss/labels']);
  } else {
    pad = n('loss/pad_labels', 'Pad', ['loss/labels_next'], ['loss/labels'], { pads: [0, 0, 0, 1], value: -100 });
  }
  const nodes: Node[] = [
    ...graph.nodes.filter((x) => x !== head.node),
    n('loss/shift_labels', 'Slice', [LABELS, 'loss/one', 'loss/end', 'loss/one'], ['loss/labels_next']),
    pad,
    n('loss/lm_head', 'LMHeadCrossEntropy', [head.hidden, 'loss/labels', head.weight], [LOSS, 'loss/count'], { ignore_index: -100, reduction: 'mean', transB: head.transB ? 1 : 0 }, 'ia3'),
  ];
  return {
    ...graph,
    nodes,
    initializers,
    inputs: [...graph.inputs, { name: LABELS, dtype: 'int64', dims: ['labels_batch', 'labels_sequence'] }],
    outputs: [...graph.outputs.filter((o) => o.name !== logits), { name: LOSS, dtype: 'float32', dims: [] }],
  };
}
