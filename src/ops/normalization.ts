import type { OpDef } from './types.js';

export const normalizationOps = {} satisfies Record<string, OpDef>;
