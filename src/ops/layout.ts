import type { OpDef } from './types.js';

export const layoutOps = {} satisfies Record<string, OpDef>;
