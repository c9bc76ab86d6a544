import type { OpDef } from './types.js';

export const ia3Ops = {} satisfies Record<string, OpDef>;
