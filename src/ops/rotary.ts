import type { OpDef } from './types.js';

export const rotaryOps = {} satisfies Record<string, OpDef>;
