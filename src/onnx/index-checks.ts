// Index checks: a Gather must never turn an out-of-range index into a quiet wrong answer.
//
// onnxruntime fails a run whose gather index is outside its axis ("indices element out of data
// bounds"); a GPU kernel cannot raise. After specialisation every Gather/GatherElements is sorted:
//   - constant indices: checked now (IndexOutOfRangeError at specialisation);
//   - indices whose range a small interval analysis bounds inside the axis: nothing to do. The
//     analysis follows integer values from constants and shapes through the ops exporters use to
//     derive positions (Cast, Add/Sub/Mul/Neg, CumSum over an axis of known length, Where, Min/Max,
//     comparisons and Not as 0/1, views and copies), so RoBERTa's positions
//     `cumsum(ids != pad) · mask + pad` are proven in range whenever sequence length + pad < table;
//   - otherwise: an IndexCheck node (ops/index-check.ts) before the gather, whose status the plan
//     keeps (`checks`) and the host reads after the step (Model.run, Model.lossAndGradients),
//     raising IndexOutOfRangeError naming the gather. The gather kernel itself writes NaN for float
//     data there, so a path that does not read the status (the Trainer's step) sees a non-finite
//     loss and refuses the step instead of training on garbage.
// What stays unchecked: integer data gathered at an out-of-range index on a path whose status is
// not read (the kernel clamps it); indices fed by the user are checked the same way as computed
// ones here.

import { IndexOutOfRangeError } from '../errors.js';
import { isFloat } from '../ir/dtype.js';
import { normAxis } from '../ir/shape.js';
import type { IndexCheckInfo, SpecNode } from '../ir/static-graph.js';
import type { ValueInfo } from '../ir/tensor.js';
import { decodeIndexStatus } from '../ops/index-check.js';

/** A closed integer interval; undefined when nothing is known. */
type Interval = readonly [number, number] | undefined;

const hull = (a: Interval, b: Interval): Interval => (a && b ? [Math.min(a[0], b[0]), Math.max(a[1], b[1])] : undefined);

function product(a: Interval, b: Interval): Interval {
  if (!a || !b) return undefined;
  const p = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]];
  return [Math.min(...p), Math.max(...p)];
}

/** Ops whose output holds only values of their data inputs (listed by input index). */
const COPIES: Readonly<Record<string, readonly number[]>> = {
  Reshape: [0], Squeeze: [0], Unsqueeze: [0], Flatten: [0], Identity: [0], Expand: [0], Tile: [0],
  Transpose: [0], Slice: [0], Gather: [0], GatherElements: [0], Concat: [], Split: [0],
};

/** The interval of each integer value the nodes produce, from constants (`info` values) and shapes. */
function intervals(nodes: readonly SpecNode[], info: (v: string) => ValueInfo | undefined): Map<string, Interval> {
  const known = new Map<string, Interval>();
  const of = (v: string): Interval => {
    if (known.has(v)) return known.get(v);
    const t = info(v);
    let r: Interval;
    if (t?.dtype === 'bool') r = [0, 1];
    else if (t?.value && t.value.data.length > 0) r = [Math.min(...t.value.data), Math.max(...t.value.data)];
    known.set(v, r);
    return r;
  };
  for (const n of nodes) {
    const out = n.outputs[0];
    if (!out) continue;
    const t = info(out);
    if (!t || isFloat(t.dtype)) continue;
    const ins = n.inputs.map((v) => (v ? of(v) : undefined));
    let r: Interval;
    switch (n.opType) {
      case 'Cast':
        r = isFloat(info(n.inputs[0]!)?.dtype ?? 'float32') ? undefined : ins[0];
        break;
      case 'Add':
        r = ins[0] && ins[1] ? [ins[0][0] + ins[1][0], ins[0][1] + ins[1][1]] : undefined;
        break;
      case 'Sub':
        r = ins[0] && ins[1] ? [ins[0][0] - ins[1][1], ins[0][1] - ins[1][0]] : undefined;
        break;
      case 'Mul':
        r = product(ins[0], ins[1]);
        break;
      case 'Neg':
        r = ins[0] ? [-ins[0][1], -ins[0][0]] : undefined;
        break;
      case 'Where':
        r = hull(ins[1], ins[2]);
        break;
      case 'Min':
      case 'Max': {
        const f = n.opType === 'Min' ? Math.min : Math.max;
        r = ins.every((x) => x) ? [f(...ins.map((x) => x![0])), f(...ins.map((x) => x![1]))] : undefined;
        break;
      }
      case 'CumSum': {
        // A running sum of at most L terms in [lo, hi] (an exclusive one adds the empty sum 0).
        const x = info(n.inputs[0]!);
        const axis = info(n.inputs[1]!)?.value?.data[0];
        if (!ins[0] || !x || axis === undefined) break;
        const L = x.dims[normAxis(axis, x.dims.length, { opType: n.opType, nodeName: n.name })]!;
        const [lo, hi] = ins[0];
        r = [Math.min(lo, L * lo, n.attrs.exclusive ? 0 : lo), Math.max(hi, L * hi, n.attrs.exclusive ? 0 : hi)];
        break;
      }
      case 'Concat':
        r = ins.reduce<Interval>((a, b, i) => (i === 0 ? b : hull(a, b)), undefined);
        break;
      default: {
        const from = COPIES[n.opType];
        if (from) r = ins[from[0]!];
        else if (['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And', 'Or', 'Xor'].includes(n.opType)) r = [0, 1];
      }
    }
    if (n.opType === 'Split') n.outputs.forEach((o) => o && known.set(o, r));
    else known.set(out, r);
  }
  return known;
}

/** Gathers read an axis through an index input: input 1, along `axis`. */
const GATHERS: ReadonlySet<string> = new Set(['Gather', 'GatherElements']);

/**
 * Checks constant gather indices now, and returns `nodes` with an IndexCheck before every gather
 * whose indices are computed at run time and not provably in range, with the checks' descriptions.
 * `info` gives each value's type (and value when constant); the new status values' types are set
 * through `define`.
 */
export function insertIndexChecks(
  nodes: readonly SpecNode[],
  info: (v: string) => ValueInfo | undefined,
  define: (v: string, t: ValueInfo) => void,
): { nodes: SpecNode[]; checks: IndexCheckInfo[] } {
  const ranges = intervals(nodes, info);
  const out: SpecNode[] = [];
  const checks: IndexCheckInfo[] = [];
  for (const n of nodes) {
    if (n.domain === '' && GATHERS.has(n.opType)) {
      const data = info(n.inputs[0]!)!;
      const idxName = n.inputs[1]!;
      const idx = info(idxName)!;
      const axis = normAxis(Number(n.attrs.axis ?? 0), data.dims.length, { opType: n.opType, nodeName: n.name });
      const axisDim = data.dims[axis]!;
      if (idx.value) {
        for (const j of idx.value.data) if (j < -axisDim || j >= axisDim) throw new IndexOutOfRangeError(n.opType, n.name, j, axisDim, 'a constant index');
      } else {
        const r = ranges.get(idxName) ?? undefined;
        if (!r || r[0] < -axisDim || r[1] >= axisDim) {
          const value = `${n.name}/index_check`;
          define(value, { dtype: 'int32', dims: [3] });
          out.push({ name: `${n.name}/IndexCheck`, opType: 'IndexCheck', domain: 'ia3', inputs: [idxName], outputs: [value], attrs: { axis_dim: axisDim }, opset: 1 });
          checks.push({ value, node: n.name, opType: n.opType, axisDim });
        }
      }
    }
    out.push(n);
  }
  return { nodes: out, checks };
}

/**
 * Raises the IndexOutOfRangeError of the first check (in node order) whose status read back from
 * a step flags an index: the gather, an offending index (the largest above the axis, else the
 * smallest below it) and the axis range, as onnxruntime words it.
 */
export function raiseIndexChecks(checks: readonly IndexCheckInfo[], read: (value: string) => ArrayLike<number> | undefined): void {
  for (const c of checks) {
    const words = read(c.value);
    if (!words) continue;
    const s = decodeIndexStatus(words);
    if (s.count === 0) continue;
    const idx = s.max >= c.axisDim ? s.max : s.min;
    throw new IndexOutOfRangeError(c.opType, c.node, idx, c.axisDim, `${s.count} index${s.count === 1 ? '' : 'es'} out of range, found by the GPU index check`);
  }
}
