// The op registry: every op type of the IR, each with its shape rule, float64 reference and GPU
// lowering (see types.ts). `OpType` is derived from this table, and the autograd's VJP table is a
// mapped type over OpType, so adding an op here without its gradient rule does not compile.

import { blockOps } from './blocks.js';
import { elementwiseOps } from './elementwise.js';
import { ia3Ops } from './ia3.js';
import { layoutOps } from './layout.js';
import { lmHeadOps } from './lm-head.js';
import { lossOps } from './loss.js';
import { matmulOps } from './matmul.js';
import { normalizationOps } from './normalization.js';
import { reduceOps } from './reduce.js';
import { rotaryOps } from './rotary.js';
import type { OpDef } from './types.js';

export const OPS = {
  ...blockOps,
  ...elementwiseOps,
  ...ia3Ops,
  ...layoutOps,
  ...lmHeadOps,
  ...lossOps,
  ...matmulOps,
  ...normalizationOps,
  ...reduceOps,
  ...rotaryOps,
} satisfies Record<string, OpDef>;

export type OpType = keyof typeof OPS;

export function isOpType(name: string): name is OpType {
  return Object.prototype.hasOwnProperty.call(OPS, name);
}
