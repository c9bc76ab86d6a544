import type { OpDef } from './types.js';

export const matmulOps = {} satisfies Record<string, OpDef>;
