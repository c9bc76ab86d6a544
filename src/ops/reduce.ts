import type { OpDef } from './types.js';

export const reduceOps = {} satisfies Record<string, OpDef>;
