// The optimizer's GPU programs and their float64 references.
//
// Training keeps every trainable value in ONE flat f32 buffer (params), with its gradient (grads)
// and AdamW moments (m, v) in flat buffers of the same length n. A step is three dispatches with no
// CPU readback between them:
//   1. gradNormPrograms(n, maxNorm).partial   grads → partials           (per-workgroup Σ g²)
//   2. gradNormPrograms(n, maxNorm).finish    partials → normScale       ([norm, scale], 2 floats)
//   3. adamwProgram(n, hyper, step)           grads, normScale → params, m, v (updated in place)
// These are not registry ops: they run over buffers the trainer owns, so they are plain Programs.
// The semantics are torch's: clip_grad_norm_ (scale = min(1, maxNorm / (norm + 1e-6))) then
// torch.optim.AdamW (decoupled weight decay, bias correction). A NaN or infinite norm makes step 3
// leave params, m and v untouched; the norm in normScale tells the trainer to stop.

import text from '../../shaders/optim.wgsl?raw';
import { InputError } from '../errors.js';
import { grid, type Program } from '../gpu/kernel.js';
import { Shader } from '../gpu/wgsl.js';
import { F32_MAX } from '../ir/dtype.js';
import type { LoweringSteps } from './types.js';

const WG = 256;
/** Most partial sums stage 1 produces: stage 2 is one workgroup, 4 partials per thread at most. */
const MAX_GROUPS = 4 * WG;

export const optimShader = new Shader('optim.wgsl', text, {
  prelude: ['grid'],
  structs: {
    Partial: [
      ['n', 'u32'],
      ['chunk', 'u32'],
      ['groups', 'u32'],
    ],
    Finish: [
      ['count', 'u32'],
      ['clip', 'u32'],
      ['maxNorm', 'f32'],
    ],
    AdamW: [
      ['n', 'u32'],
      ['decay', 'f32'], // 1 − lr·wd
      ['beta1Weight', 'f32'], // 1 − β1, the lerp weight of torch's exp_avg.lerp_(grad, 1 − β1)
      ['beta2', 'f32'],
      ['oneMinusBeta2', 'f32'],
      ['stepSize', 'f32'], // lr / (1 − β1^t)
      ['bc2Sqrt', 'f32'], // √(1 − β2^t)
      ['eps', 'f32'],
    ],
  },
});

const sumsqPartialKernel = optimShader.kernel({ name: 'optim_sumsq_partial', entryPoint: 'sumsq_partial', inputs: ['grads'], outputs: ['partials'], uniforms: 'Partial' });
const sumsqFinishKernel = optimShader.kernel({ name: 'optim_sumsq_finish', entryPoint: 'sumsq_finish', inputs: ['partials'], outputs: ['normScale'], uniforms: 'Finish' });
const adamwKernel = optimShader.kernel({ name: 'optim_adamw', entryPoint: 'adamw', inputs: ['grads', 'normScale'], outputs: ['params', 'm', 'v'], uniforms: 'AdamW' });

/** AdamW hyper-parameters; defaults are torch.optim.AdamW's. */
export interface AdamWHyper {
  readonly lr: number;
  /** Default 0.9. */
  readonly beta1?: number;
  /** Default 0.999. */
  readonly beta2?: number;
  /** Default 1e-8. */
  readonly eps?: number;
  /** Decoupled weight decay; default 0.01 (torch.optim.AdamW's). */
  readonly weightDecay?: number;
}

interface ResolvedHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

function resolveHyper(h: AdamWHyper, step: number): ResolvedHyper {
  const r = { lr: h.lr, beta1: h.beta1 ?? 0.9, beta2: h.beta2 ?? 0.999, eps: h.eps ?? 1e-8, weightDecay: h.weightDecay ?? 0.01 };
  // The same checks as torch.optim.AdamW's constructor, plus a 1-based integer step.
  if (!(r.lr >= 0) || !Number.isFinite(r.lr)) throw new InputError(`AdamW: invalid learning rate ${r.lr}`);
  if (!(r.eps >= 0)) throw new InputError(`AdamW: invalid epsilon ${r.eps}`);
  if (!(r.beta1 >= 0 && r.beta1 < 1)) throw new InputError(`AdamW: invalid beta1 ${r.beta1} (needs 0 ≤ β1 < 1)`);
  if (!(r.beta2 >= 0 && r.beta2 < 1)) throw new InputError(`AdamW: invalid beta2 ${r.beta2} (needs 0 ≤ β2 < 1)`);
  if (!(r.weightDecay >= 0)) throw new InputError(`AdamW: invalid weight decay ${r.weightDecay}`);
  if (!Number.isInteger(step) || step < 1) throw new InputError(`AdamW: step must be an integer ≥ 1, got ${step}`);
  return r;
}

function checkLength(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InputError(`${what}: invalid buffer length ${n}`);
}

/**
 * One AdamW step (`step` is 1-based, torch's `state['step']` after its increment) over n values.
 * Bindings: inputs (grads, normScale), outputs (params, m, v), all f32; normScale is the
 * [norm, scale] output of `gradNormPrograms` (upload [0, 1] to run without clipping).
 */
export function adamwProgram(n: number, hyper: AdamWHyper, step: number): Program {
  checkLength(n, 'adamwProgram');
  const h = resolveHyper(hyper, step);
  // Scalar factors in float64, as torch computes them in Python before the f32 tensor ops.
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  return {
    kernel: adamwKernel,
    overrides: { WG },
    uniforms: {
      n,
      decay: 1 - h.lr * h.weightDecay,
      beta1Weight: 1 - h.beta1,
      beta2: h.beta2,
      oneMinusBeta2: 1 - h.beta2,
      stepSize: h.lr / bc1,
      bc2Sqrt: Math.sqrt(bc2),
      eps: h.eps,
    },
    workgroups: grid(Math.ceil(n / WG)),
  };
}

/** The two dispatches of the global gradient norm, and the scratch buffer between them. */
export interface GradNormPrograms {
  /** Bytes of the partials buffer (one f32 per stage-1 workgroup). */
  readonly tempBytes: number;
  /** Stage 1: inputs (grads), outputs (partials). */
  readonly partial: Program;
  /** Stage 2: inputs (partials), outputs (normScale: 2 f32, [norm, scale]). */
  readonly finish: Program;
  /** Both stages as lowering steps: input 0 = grads, output 0 = normScale, temp 0 = partials. */
  readonly lowering: LoweringSteps;
}

/**
 * Global L2 norm of n gradient values and the clip factor `min(1, maxNorm / (norm + 1e-6))`
 * (torch.nn.utils.clip_grad_norm_). `maxNorm` ≤ 0 or infinite turns clipping off (scale 1); the
 * norm is computed either way, NaN or infinite when a gradient is.
 */
export function gradNormPrograms(n: number, maxNorm: number): GradNormPrograms {
  checkLength(n, 'gradNormPrograms');
  if (Number.isNaN(maxNorm)) throw new InputError('gradNormPrograms: maxNorm is NaN');
  // Each stage-1 workgroup takes a whole number of block strides, and there are at most MAX_GROUPS.
  const perThread = Math.max(1, Math.ceil(n / (WG * MAX_GROUPS)));
  const chunk = WG * perThread;
  const groups = Math.ceil(n / chunk);
  const clip = maxNorm > 0 && Number.isFinite(maxNorm);
  const partial: Program = {
    kernel: sumsqPartialKernel,
    overrides: { WG },
    uniforms: { n, chunk, groups },
    workgroups: grid(groups),
  };
  const finish: Program = {
    kernel: sumsqFinishKernel,
    overrides: { WG },
    uniforms: { count: groups, clip: clip ? 1 : 0, maxNorm: clip ? Math.min(maxNorm, F32_MAX) : 0 }, // WGSL may assume uniforms are finite
    workgroups: [1, 1, 1],
  };
  return {
    tempBytes: 4 * groups,
    partial,
    finish,
    lowering: {
      temps: [4 * groups],
      steps: [
        { program: partial, bindings: [{ in: 0 }, { tmp: 0 }] },
        { program: finish, bindings: [{ tmp: 0 }, { out: 0 }] },
      ],
    },
  };
}

// ---------------------------------------------------------------------------------------------
// float64 references

/** AdamW state: flat params and moments. */
export interface AdamWState {
  readonly params: Float64Array;
  readonly m: Float64Array;
  readonly v: Float64Array;
}

/** The result of clipping: the global norm, the factor applied to the gradients, and whether the norm is finite. */
export interface ClipResult {
  readonly norm: number;
  readonly scale: number;
  readonly finite: boolean;
}

/** float64 clip_grad_norm_: norm = ‖g‖₂, scale = min(1, maxNorm / (norm + 1e-6)), or 1 when off. */
export function clipReference(grads: ArrayLike<number>, maxNorm: number): ClipResult {
  let s = 0;
  for (let i = 0; i < grads.length; i++) s += grads[i]! * grads[i]!;
  const norm = Math.sqrt(s);
  const finite = Number.isFinite(norm);
  const clip = maxNorm > 0 && Number.isFinite(maxNorm) && finite;
  return { norm, scale: clip ? Math.min(1, maxNorm / (norm + 1e-6)) : 1, finite };
}

/**
 * float64 torch.optim.AdamW step: returns the new state (the input is not modified). Gradients are
 * multiplied by `clip.scale`; a non-finite `clip.norm` returns the state unchanged, as the kernel does.
 */
export function adamwReference(
  state: AdamWState,
  grads: ArrayLike<number>,
  hyper: AdamWHyper,
  step: number,
  clip: Pick<ClipResult, 'norm' | 'scale'> = { norm: 0, scale: 1 },
): AdamWState {
  const h = resolveHyper(hyper, step);
  const n = state.params.length;
  if (state.m.length !== n || state.v.length !== n || grads.length !== n) {
    throw new InputError(`adamwReference: params, m, v and grads must have one length (${n})`);
  }
  const params = state.params.slice();
  const m = state.m.slice();
  const v = state.v.slice();
  if (!Number.isFinite(clip.norm)) return { params, m, v };
  const bc1 = 1 - h.beta1 ** step;
  const bc2 = 1 - h.beta2 ** step;
  const stepSize = h.lr / bc1;
  const bc2Sqrt = Math.sqrt(bc2);
  for (let i = 0; i < n; i++) {
    const g = grads[i]! * clip.scale;
    params[i]! *= 1 - h.lr * h.weightDecay;
    m[i] = m[i]! + (1 - h.beta1) * (g - m[i]!);
    v[i] = v[i]! * h.beta2 + (1 - h.beta2) * g * g;
    const denom = Math.sqrt(v[i]!) / bc2Sqrt + h.eps;
    params[i]! -= stepSize * (m[i]! / denom);
  }
  return { params, m, v };
}
