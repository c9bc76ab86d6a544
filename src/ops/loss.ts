import type { OpDef } from './types.js';

export const lossOps = {} satisfies Record<string, OpDef>;
