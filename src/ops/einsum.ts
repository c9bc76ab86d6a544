// Einsum (ai.onnx 12): the equation parser, a float64 reference straight from the definition, and
// an expansion into registry ops, so the GPU plan and the gradients come from those.
//
// The equation is `term,term,...->output` (explicit) or without `->` (implicit: the output is the
// ellipsis dims, then the letters that occur once, in ASCII order). A term is letters and at most
// one `...`, which stands for the leading dims the letters leave; ellipsis dims broadcast across
// operands NumPy-style (right-aligned, 1 against n), letters must agree exactly. A letter repeated
// within a term takes the diagonal; a letter absent from the output is summed.
//
// Expansion, for the equations exporters write (`i,j->ij` rotary tables, `bnqd,bnkd->bnqk`
// attention scores, `bnqk,bnkd->bnqd`, transposes, reductions) and any other:
//   1. per operand: diagonals (Transpose → Reshape → Slice with step n+1), broadcast dims of 1
//      dropped (Reshape; the other operands carry the size), letters nobody else needs summed;
//   2. operands contracted left to right: letters in both that a later operand or the output
//      needs are batch dims, the others are summed by one batched FusedMatMul (transA/transB
//      chosen so that an operand already in [batch, free, summed] or [batch, summed, free] order
//      is not transposed), reshaped back to [batch, freeA, freeB]; with nothing to sum, a
//      broadcasting Mul is the product;
//   3. what remains is summed and transposed into the output order.
// Every step is a registry op with its own VJP, so Einsum's gradient is that of its expansion.

import { ShapeError, UnsupportedOpError } from '../errors.js';
import { isFloat } from '../ir/dtype.js';
import type { Attrs } from '../ir/graph.js';
import { forEachIndex } from '../ir/shape.js';
import { sizeOf, tensor, type RefTensor, type TensorType } from '../ir/tensor.js';
import { expandedOp } from './expansion.js';
import type { Inputs, OpContext, OpDef } from './types.js';
import { attrString } from './util.js';

/** A parsed equation over concrete operand dims. Ellipsis dims get the symbols '.0', '.1', .... */
interface Equation {
  /** Symbols of each operand, one per dim (repeats mark diagonals). */
  readonly terms: readonly (readonly string[])[];
  readonly output: readonly string[];
  /** Size of every symbol (the broadcast size for ellipsis symbols). */
  readonly sizes: ReadonlyMap<string, number>;
}

const err = (ctx: OpContext, detail: string): ShapeError => new ShapeError(ctx.opType, ctx.nodeName, detail);

/** Letters and ellipsis marks of one term; `...` becomes '...'. */
function tokens(term: string, what: string, ctx: OpContext): string[] {
  const out: string[] = [];
  for (let i = 0; i < term.length; ) {
    if (term.startsWith('...', i)) {
      if (out.includes('...')) throw err(ctx, `${what} '${term}' has more than one ellipsis`);
      out.push('...');
      i += 3;
    } else if (/[A-Za-z]/.test(term[i]!)) {
      out.push(term[i++]!);
    } else {
      throw err(ctx, `${what} '${term}' holds '${term[i]}'; terms are letters and at most one '...'`);
    }
  }
  return out;
}

/** Parses `equation` for operands of the given dims. */
export function parseEinsum(equation: string, dims: readonly (readonly number[])[], ctx: OpContext): Equation {
  const eq = equation.replace(/\s+/g, '');
  const arrow = eq.indexOf('->');
  if (arrow >= 0 && eq.indexOf('->', arrow + 2) >= 0) throw err(ctx, `equation '${equation}' has more than one '->'`);
  const lhs = (arrow < 0 ? eq : eq.slice(0, arrow)).split(',');
  if (lhs.length !== dims.length) {
    throw err(ctx, `equation '${equation}' has ${lhs.length} input term${lhs.length === 1 ? '' : 's'}, the node has ${dims.length} input${dims.length === 1 ? '' : 's'}`);
  }
  const raw = lhs.map((t, k) => tokens(t, `input term ${k}`, ctx));
  const ellipsisRanks = raw.map((t, k) => {
    const letters = t.filter((s) => s !== '...').length;
    const rank = dims[k]!.length;
    if (t.includes('...') ? letters > rank : letters !== rank) {
      throw err(ctx, `input term ${k} '${lhs[k]}' does not fit input ${k} of rank ${rank}`);
    }
    return rank - letters;
  });
  const E = Math.max(0, ...ellipsisRanks);
  const ell = Array.from({ length: E }, (_, j) => `.${j}`);
  const terms = raw.map((t, k) => t.flatMap((s) => (s === '...' ? ell.slice(E - ellipsisRanks[k]!) : [s])));

  const sizes = new Map<string, number>();
  terms.forEach((t, k) =>
    t.forEach((s, axis) => {
      const d = dims[k]![axis]!;
      const prev = sizes.get(s);
      if (prev === undefined || prev === d) sizes.set(s, d);
      else if (s.startsWith('.') && (prev === 1 || d === 1)) sizes.set(s, prev === 1 ? d : prev);
      else throw err(ctx, `'${s.startsWith('.') ? '...' : s}' is ${prev} in one place and ${d} in input ${k} (dims ${dims.map((x) => `[${x.join(',')}]`).join(', ')})`);
    }),
  );

  let output: string[];
  if (arrow >= 0) {
    const rhs = tokens(eq.slice(arrow + 2), 'output term', ctx);
    output = rhs.flatMap((s) => (s === '...' ? ell : [s]));
    for (const s of output) {
      if (!sizes.has(s)) throw err(ctx, `output letter '${s}' does not occur in any input term`);
    }
    if (new Set(output).size !== output.length) throw err(ctx, `output term '${eq.slice(arrow + 2)}' repeats a letter`);
  } else {
    const counts = new Map<string, number>();
    for (const t of raw) for (const s of t) if (s !== '...') counts.set(s, (counts.get(s) ?? 0) + 1);
    const once = [...counts].filter(([, n]) => n === 1).map(([s]) => s);
    output = [...ell, ...once.sort()];
  }
  return { terms, output, sizes };
}

function equationOf(attrs: Attrs, ctx: OpContext): string {
  const eq = attrString(attrs, 'equation', '');
  if (eq === '') throw err(ctx, "attribute 'equation' is required");
  return eq;
}

function operands<T extends TensorType>(inputs: Inputs<T>, ctx: OpContext): T[] {
  if (inputs.length === 0) throw err(ctx, 'needs at least one input');
  const xs = inputs.map((x, i) => {
    if (x === undefined) throw err(ctx, `input ${i} is missing`);
    return x;
  });
  const dtype = xs[0]!.dtype;
  if (!isFloat(dtype)) {
    throw new UnsupportedOpError(ctx.opType, ctx.nodeName, `${dtype} operands are not supported (float tensors only)`, ctx.opset);
  }
  if (xs.some((x) => x.dtype !== dtype)) throw err(ctx, `inputs must share one dtype, got ${xs.map((x) => x.dtype).join(', ')}`);
  return xs;
}

function plan(inputs: Inputs<TensorType>, attrs: Attrs, ctx: OpContext): { xs: TensorType[]; eq: Equation; outDims: number[] } {
  const xs = operands(inputs, ctx);
  const eq = parseEinsum(equationOf(attrs, ctx), xs.map((x) => x.dims), ctx);
  return { xs, eq, outDims: eq.output.map((s) => eq.sizes.get(s)!) };
}

/** out[o] = Σ over the summed symbols of Π_k input_k, straight from the definition. */
function reference(inputs: Inputs<RefTensor>, attrs: Attrs, ctx: OpContext): RefTensor[] {
  const { xs, eq, outDims } = plan(inputs, attrs, ctx);
  const summed = [...eq.sizes.keys()].filter((s) => !eq.output.includes(s));
  const symbols = [...eq.output, ...summed];
  const at = new Map(symbols.map((s, i) => [s, i]));
  // Per operand and dim: which symbol indexes it, and its stride (0 where the dim broadcasts).
  const reads = xs.map((x, k) => {
    const strides = x.dims.map((_, d) => sizeOf(x.dims.slice(d + 1)));
    return eq.terms[k]!.map((s, d) => ({ sym: at.get(s)!, stride: x.dims[d] === 1 ? 0 : strides[d]! }));
  });
  const sumDims = summed.map((s) => eq.sizes.get(s)!);
  const out = tensor(xs[0]!.dtype, outDims);
  const coords = new Array<number>(symbols.length).fill(0);
  forEachIndex(outDims, (o, oc) => {
    oc.forEach((c, i) => (coords[i] = c));
    let acc = 0;
    forEachIndex(sumDims, (_, sc) => {
      sc.forEach((c, i) => (coords[eq.output.length + i] = c));
      let p = 1;
      reads.forEach((r, k) => {
        let off = 0;
        for (const { sym, stride } of r) off += coords[sym]! * stride;
        p *= (inputs[k] as RefTensor).data[off]!;
      });
      acc += p;
    });
    out.data[o] = acc;
  });
  return [out];
}

/** An operand during expansion: a value, the symbol of each of its dims, and the dims. */
interface Operand {
  value: string;
  syms: string[];
  dims: number[];
}

const sameList = (a: readonly unknown[], b: readonly unknown[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

const Einsum: OpDef = {
  domain: '',
  sinceVersion: 12,
  doc: 'Einsum (explicit and implicit equations, ellipsis broadcasting, diagonals, summed letters), float operands. Expanded at specialisation into Transpose, Reshape, Slice, ReduceSum, Mul and batched FusedMatMul.',
  shape(inputs, attrs, ctx) {
    const { xs, outDims } = plan(inputs, attrs, ctx);
    return [{ dtype: xs[0]!.dtype, dims: outDims }];
  },
  reference,
  gpu: expandedOp('Einsum'),
  expand(b, attrs) {
    const { eq } = plan(b.inputs, attrs, b.context);
    const size = (s: string): number => eq.sizes.get(s)!;

    const reshape = (x: Operand, dims: number[]): string => (sameList(x.dims, dims) ? x.value : b.op('Reshape', [x.value, b.ints(dims)]));
    const transpose = (x: Operand, syms: readonly string[]): Operand => {
      if (sameList(x.syms, syms)) return x;
      const perm = syms.map((s) => x.syms.indexOf(s));
      return { value: b.op('Transpose', [x.value], { perm }), syms: [...syms], dims: perm.map((p) => x.dims[p]!) };
    };
    const sumOut = (x: Operand, drop: (s: string) => boolean): Operand => {
      const axes = x.syms.flatMap((s, i) => (drop(s) ? [i] : []));
      if (axes.length === 0) return x;
      const value = b.op('ReduceSum', [x.value, b.ints(axes)], { keepdims: 0 });
      return { value, syms: x.syms.filter((_, i) => !axes.includes(i)), dims: x.dims.filter((_, i) => !axes.includes(i)) };
    };

    const ops: Operand[] = eq.terms.map((syms, k) => {
      let x: Operand = { value: b.need(k, `operand ${k}`), syms: [...syms], dims: [...b.inputs[k]!.dims] };
      // Diagonals: move the two dims of a repeated letter last, flatten them, take every (n+1)-th.
      for (let rep = x.syms.find((s, i) => x.syms.indexOf(s) !== i); rep !== undefined; rep = x.syms.find((s, i) => x.syms.indexOf(s) !== i)) {
        const p = x.syms.indexOf(rep);
        const q = x.syms.indexOf(rep, p + 1);
        const others = x.syms.map((_, i) => i).filter((i) => i !== p && i !== q);
        const perm = [...others, p, q];
        const n = x.dims[p]!;
        const moved = b.op('Transpose', [x.value], { perm });
        const flat = b.op('Reshape', [moved, b.ints([...others.map((i) => x.dims[i]!), n * n])]);
        const value = b.op('Slice', [flat, b.ints([0]), b.ints([n * n]), b.ints([-1]), b.ints([n + 1])]);
        x = { value, syms: [...others.map((i) => x.syms[i]!), rep], dims: [...others.map((i) => x.dims[i]!), n] };
      }
      // Dims of 1 that broadcast against a larger size: drop them, the other operands carry it.
      const keep = x.syms.map((s, i) => !(x.dims[i] === 1 && size(s) > 1));
      if (keep.some((k) => !k)) {
        const dims = x.dims.filter((_, i) => keep[i]);
        x = { value: reshape(x, dims), syms: x.syms.filter((_, i) => keep[i]), dims };
      }
      return x;
    });

    const output = new Set(eq.output);
    let acc = ops[0]!;
    if (ops.length === 1) acc = sumOut(acc, (s) => !output.has(s));
    for (let k = 1; k < ops.length; k++) {
      const needed = new Set([...output, ...ops.slice(k + 1).flatMap((o) => o.syms)]);
      let x = ops[k]!;
      acc = sumOut(acc, (s) => !x.syms.includes(s) && !needed.has(s));
      x = sumOut(x, (s) => !acc.syms.includes(s) && !needed.has(s));
      const shared = acc.syms.filter((s) => x.syms.includes(s));
      const batch = shared.filter((s) => needed.has(s));
      const summed = shared.filter((s) => !needed.has(s));
      const freeA = acc.syms.filter((s) => !x.syms.includes(s));
      const freeB = x.syms.filter((s) => !acc.syms.includes(s));
      const batchDims = batch.map(size);
      const dimsA = freeA.map(size);
      const dimsB = freeB.map(size);
      let value: string;
      if (summed.length === 0) {
        // Nothing to sum: the product of [batch, freeA, 1…] and [batch, 1…, freeB] by broadcasting.
        const a = transpose(acc, [...batch, ...freeA]);
        const c = transpose(x, [...batch, ...freeB]);
        const ra = reshape(a, [...batchDims, ...dimsA, ...dimsB.map(() => 1)]);
        const rc = reshape(c, [...batchDims, ...dimsA.map(() => 1), ...dimsB]);
        value = b.op('Mul', [ra, rc]);
      } else {
        const K = sizeOf(summed.map(size));
        // Keep an operand in place when it already is [batch, free, summed] or [batch, summed, free].
        const transA = sameList(acc.syms, [...batch, ...summed, ...freeA]) && !sameList(acc.syms, [...batch, ...freeA, ...summed]);
        const transB = !sameList(x.syms, [...batch, ...summed, ...freeB]) && sameList(x.syms, [...batch, ...freeB, ...summed]);
        const a = transpose(acc, transA ? [...batch, ...summed, ...freeA] : [...batch, ...freeA, ...summed]);
        const c = transpose(x, transB ? [...batch, ...freeB, ...summed] : [...batch, ...summed, ...freeB]);
        const M = sizeOf(dimsA);
        const N = sizeOf(dimsB);
        const ra = reshape(a, [...batchDims, ...(transA ? [K, M] : [M, K])]);
        const rc = reshape(c, [...batchDims, ...(transB ? [N, K] : [K, N])]);
        const prod = b.op('FusedMatMul', [ra, rc], { transA: transA ? 1 : 0, transB: transB ? 1 : 0 });
        value = reshape({ value: prod, syms: [], dims: [...batchDims, M, N] }, [...batchDims, ...dimsA, ...dimsB]);
      }
      acc = { value, syms: [...batch, ...freeA, ...freeB], dims: [...batchDims, ...dimsA, ...dimsB] };
    }
    acc = sumOut(acc, (s) => !output.has(s));
    // Output symbols an operand dropped as broadcast 1s are 1 everywhere: put them back.
    const present = eq.output.filter((s) => acc.syms.includes(s));
    acc = transpose(acc, present);
    b.output(reshape(acc, eq.output.map(size)));
  },
};

export const einsumOps = { Einsum } satisfies Record<string, OpDef>;
