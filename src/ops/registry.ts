// The op registry: every op type of the IR, each with its shape rule, float64 reference and GPU
// lowering (see types.ts). `OpType` is derived from this table, and the autograd's VJP table is a
// mapped type over OpType, so adding an op here without its gradient rule does not compile.
//
// Fused ops of other tools are a second table, `EXPANDED_OPS`: each has a shape rule, a reference
// and an expansion into ops of the first table, and (by type) no lowering. An op of a model file is
// resolved by its (domain, op type) pair: `Gelu` is a primitive in ai.onnx and an expansion in
// com.microsoft, `RotaryEmbedding` the internal kernel in 'ia3' and onnxruntime's op in
// com.microsoft. So every op a file may name either runs as a primitive with its own kernel and
// gradient, or expands into primitives; nothing else type-checks.

import { attentionMaskOps } from './attention-mask.js';
import { blockOps } from './blocks.js';
import { contribActivationOps } from './contrib-activation.js';
import { contribAttentionOps } from './contrib-attention.js';
import { contribNormOps } from './contrib-norm.js';
import { contribQuantOps } from './contrib-quant.js';
import { contribRotaryOps } from './contrib-rotary.js';
import { controlOps } from './control.js';
import { einsumOps } from './einsum.js';
import { elementwiseOps } from './elementwise.js';
import { halfOps } from './half.js';
import { ia3Ops } from './ia3.js';
import { indexCheckOps } from './index-check.js';
import { layoutOps } from './layout.js';
import { lmHeadOps } from './lm-head.js';
import { lossOps } from './loss.js';
import { matmulOps } from './matmul.js';
import { normalizationOps } from './normalization.js';
import { oneHotOps } from './onehot.js';
import { quantizeOps } from './quantize.js';
import { reduceOps } from './reduce.js';
import { rotaryOps } from './rotary.js';
import type { ExpandedOpDef, OpDef } from './types.js';

export const OPS = {
  ...attentionMaskOps,
  ...blockOps,
  ...controlOps,
  ...einsumOps,
  ...elementwiseOps,
  ...halfOps,
  ...ia3Ops,
  ...indexCheckOps,
  ...layoutOps,
  ...lmHeadOps,
  ...lossOps,
  ...matmulOps,
  ...normalizationOps,
  ...oneHotOps,
  ...quantizeOps,
  ...reduceOps,
  ...rotaryOps,
} satisfies Record<string, OpDef>;

export type OpType = keyof typeof OPS;

export function isOpType(name: string): name is OpType {
  return Object.prototype.hasOwnProperty.call(OPS, name);
}

/** Fused ops (onnxruntime's com.microsoft contrib ops) that loading expands into primitives. */
export const EXPANDED_OPS = {
  ...contribActivationOps,
  ...contribAttentionOps,
  ...contribNormOps,
  ...contribQuantOps,
  ...contribRotaryOps,
} satisfies Record<string, ExpandedOpDef>;

export type ExpandedOpType = keyof typeof EXPANDED_OPS;

/** An op of a model file, resolved by domain and op type. */
export type ResolvedOp =
  | { readonly kind: 'primitive'; readonly opType: OpType; readonly def: OpDef }
  | { readonly kind: 'expanded'; readonly opType: ExpandedOpType; readonly def: ExpandedOpDef };

const own = (table: object, key: string): boolean => Object.prototype.hasOwnProperty.call(table, key);

/** The definition of `opType` in `domain` ('' or 'ai.onnx' for ONNX's), or undefined. */
export function resolveOp(domain: string, opType: string): ResolvedOp | undefined {
  const d = domain === 'ai.onnx' ? '' : domain;
  if (own(EXPANDED_OPS, opType)) {
    const def: ExpandedOpDef = EXPANDED_OPS[opType as ExpandedOpType];
    if (def.domain === d) return { kind: 'expanded', opType: opType as ExpandedOpType, def };
  }
  if (isOpType(opType)) {
    const def: OpDef = OPS[opType];
    if (def.domain === d) return { kind: 'primitive', opType, def };
  }
  return undefined;
}
