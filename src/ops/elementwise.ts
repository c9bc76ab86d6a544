import type { OpDef } from './types.js';

export const elementwiseOps = {} satisfies Record<string, OpDef>;
