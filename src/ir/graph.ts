// The graph IR: what an imported ONNX model is, and what every pass above reads and rewrites.
//
// A Graph is what onnx/decode.ts builds from the protobuf: declared inputs and outputs (symbolic dims
// kept as strings), frozen initializers as typed arrays (views into the file bytes wherever the
// alignment allows, so a large model is not copied), and nodes in topological order with their
// attributes decoded to the `Attrs` type of the op contract. `Constant` nodes are already folded
// into initializers (flagged `constant`), so every node left is an op of the registry (or one the
// specialiser drops: Identity, Dropout).
//
// Invariants: value names are unique (SSA); node names are unique and non-empty; every node input
// is a graph input, an initializer, an earlier node's output, or '' (an omitted optional input).

import { FormatError, InputError } from '../errors.js';
import { int8Storage, int8Value, packHalves, q4Layout, q4Storage, q4Value, type DataType, type WeightStorage } from './dtype.js';
import { sizeOf, type RefTensor } from './tensor.js';

export type AttrValue = number | string | readonly number[] | readonly string[] | RefTensor;
/** Node attributes by ONNX attribute name. */
export type Attrs = Readonly<Record<string, AttrValue>>;

/**
 * Element storage of an initializer. float16 is widened to Float32Array on load; a 4-bit weight
 * (`storage` q4b…) keeps its packed words (Uint32Array).
 */
export type InitializerData = Float32Array | Float64Array | Int32Array | BigInt64Array | Int8Array | Uint8Array | Uint32Array;

/** A dim of a declared input or output: a size, or a symbol such as 'batch'. */
export type Dim = number | string;

/** A declared graph output: dtype and dims as the file states them (either may be absent). */
export interface ValueDecl {
  readonly name: string;
  readonly dtype?: DataType;
  /** Absent when the file does not state the rank. */
  readonly dims?: readonly Dim[];
}

/** A declared graph input: its dtype is always known. */
export interface InputDecl extends ValueDecl {
  readonly dtype: DataType;
}

/** Where an external initializer's bytes live (ONNX `external_data`). */
export interface ExternalRef {
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

/** A frozen tensor of the model: a weight, or the value of a folded `Constant` node. */
export interface Initializer {
  readonly name: string;
  /** The ONNX dtype; a float16 tensor keeps 'float16' while its data is widened to float32. */
  readonly dtype: DataType;
  readonly dims: readonly number[];
  /**
   * The values; absent for a large weight whose data went to the GPU as the file streamed in
   * (loadModel): the model's weight store holds it, and CPU readers (the reference executor,
   * folding, merging) read it back or refuse (see `initializerData`).
   */
  readonly data?: InitializerData;
  /**
   * For a weight without `data`: order-independent statistics of its values, taken as they
   * streamed (parameter counting recognises a transposed copy of a tied weight by them).
   */
  readonly stats?: ValueStats;
  /** True when the value came from a `Constant` node rather than the initializer list. */
  readonly constant?: boolean;
  /** Set when the bytes came from an external data file. */
  readonly external?: ExternalRef;
  /**
   * The file stored it as ONNX's 4-bit `INT4` / `UINT4` type: `dtype` is then 'uint8' holding the
   * element pairs as the file packs them (element 2j in the low nibble, dims with the last one
   * halved), INT4's codes offset by 8 into 0..15 (so code − 8 is the signed value, MatMulNBits'
   * convention); only GatherBlockQuantized reads such a tensor (onnx/precision.ts).
   */
  readonly int4?: 'int4' | 'uint4';
  /**
   * A buffer of the PyTorch module rather than a parameter (the rotary cos/sin caches a fused
   * attention reads): PyTorch does not count it, so parameter counts leave it out.
   */
  readonly buffer?: boolean;
  /**
   * How the GPU stores it when not widened to f32 (set at load: onnx/precision.ts for float16
   * weights whose every reader dequantises in its kernel; MatMulNBits' expansion for 4-bit blocks):
   * the file's precision kept on the GPU. A q4 weight's `data` is its packed words.
   */
  readonly storage?: WeightStorage;
}

export interface Node {
  /** The ONNX node name, or a generated unique `${opType}_${index}` when the file has none. */
  readonly name: string;
  readonly opType: string;
  /** '' for the default ONNX domain ('ai.onnx' is normalised to ''). */
  readonly domain: string;
  /** Value names; '' marks an omitted optional input. */
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Attrs;
  /**
   * The opset whose semantics the node follows, when it is not the graph's opset of its domain:
   * the nodes an expansion of a fused op emits are written against one fixed ai.onnx opset.
   */
  readonly opset?: number;
}

/**
 * A fused op of the file (onnxruntime's `com.microsoft` contrib ops) that loading replaced by
 * primitive nodes (onnx/expand.ts). Module discovery reads the roles to name the projections the
 * fused op consumed; `describe()` lists what was expanded.
 */
export interface ExpandedOp {
  /** The node as the file has it. */
  readonly node: Node;
  /** Names of the nodes the expansion emitted. */
  readonly nodes: readonly string[];
  /** Names of the constants it added (shapes, axes; flagged `constant`). */
  readonly constants: readonly string[];
  /**
   * For attention ops: the values holding the query, key and value projections (after their biases,
   * before heads are split), and the attention output before any output projection.
   */
  readonly attention?: {
    readonly query?: string;
    readonly key?: string;
    readonly value?: string;
    readonly output: string;
  };
}

export interface Graph {
  readonly name: string;
  /** Opset version per domain ('' is ai.onnx). */
  readonly opsets: ReadonlyMap<string, number>;
  readonly irVersion: number;
  readonly producer: string;
  /** Runtime inputs (initializers that old IR versions also list as inputs are excluded). */
  readonly inputs: readonly InputDecl[];
  readonly outputs: readonly ValueDecl[];
  readonly initializers: ReadonlyMap<string, Initializer>;
  /** Topologically sorted. */
  readonly nodes: readonly Node[];
  /** The fused ops loading expanded into `nodes` (absent when there were none). */
  readonly expanded?: readonly ExpandedOp[];
}

/** Sum, sum of squares, minimum and maximum of a tensor's values (float64 accumulations). */
export interface ValueStats {
  readonly sum: number;
  readonly sumSquares: number;
  readonly min: number;
  readonly max: number;
}

/**
 * An initializer's values; an InputError naming the weight and `use` when they live on the GPU
 * only (streamed there at load).
 */
export function initializerData(init: Initializer, use: string): InitializerData {
  if (!init.data) {
    throw new InputError(`weight '${init.name}' lives on the GPU only (its data went there as the model loaded); ${use} needs it on the CPU: load the model with { keepWeightsOnCpu: true }`);
  }
  return init.data;
}

/** Normalises an ONNX domain name: 'ai.onnx' and '' are the same domain. */
export function normDomain(domain: string | null | undefined): string {
  return !domain || domain === 'ai.onnx' ? '' : domain;
}

/** Opset version of a domain in a graph (ONNX's default of 1 for an undeclared non-default domain). */
export function opsetOf(graph: Pick<Graph, 'opsets'>, domain: string): number {
  return graph.opsets.get(normDomain(domain)) ?? 1;
}

/** The opset a node's semantics follow: its own when it names one, else the graph's for its domain. */
export function nodeOpset(graph: Pick<Graph, 'opsets'>, node: Pick<Node, 'domain' | 'opset'>): number {
  return node.opset ?? opsetOf(graph, node.domain);
}

/** The float64 reference tensor of an initializer (a copy; integer types are exact). */
export function initializerToRef(init: Initializer, use = 'the CPU reference'): RefTensor {
  const n = sizeOf(init.dims);
  const out = new Float64Array(n);
  const d = initializerData(init, use);
  const q4 = q4Storage(init.storage);
  if (q4) {
    // Dequantised for the CPU executor (the oracle on the same IR); the GPU keeps the packed words.
    const [K, N] = init.dims as [number, number];
    const l = q4Layout(K, N, q4.blockSize);
    for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) out[k * N + j] = q4Value(d as Uint32Array, l, q4.zeroPoints, k, j);
    return { dtype: init.dtype, dims: [...init.dims], data: out };
  }
  const i8 = int8Storage(init.storage);
  if (i8) {
    const [R, C] = init.dims as [number, number];
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * C + c] = int8Value(d as Uint32Array, init.dims, i8.signed, i8.axis, r, c);
    return { dtype: init.dtype, dims: [...init.dims], data: out };
  }
  if (d instanceof BigInt64Array) for (let i = 0; i < n; i++) out[i] = Number(d[i]!);
  else out.set(d as ArrayLike<number>);
  return { dtype: init.dtype, dims: [...init.dims], data: out };
}

const PACKED = new WeakMap<Initializer, Uint32Array>();

/**
 * The initializer's values in GPU storage (f32 for float types, i32 otherwise, packed halves for
 * `storage` 'f16x2'), without a copy when the data already is f32 or i32. Returns undefined when an integer value does not fit 32
 * bits (such tensors are only ever read on the CPU, e.g. Slice's INT64_MAX ends).
 */
export function initializerGpuData(init: Initializer): Float32Array | Int32Array | Uint32Array | undefined {
  const d = init.data;
  if (!d) return undefined; // already on the GPU: the weight store holds it
  if (q4Storage(init.storage) || int8Storage(init.storage)) return d as Uint32Array;
  if (init.storage === 'f16x2') {
    // One packed copy per weight, however many specialisations upload it.
    let packed = PACKED.get(init);
    if (!packed) PACKED.set(init, (packed = packHalves(d as Float32Array)));
    return packed;
  }
  if (d instanceof Float32Array || d instanceof Int32Array) return d;
  if (d instanceof Float64Array) return Float32Array.from(d);
  const out = new Int32Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const v = Number(d[i]!);
    if (v < -0x80000000 || v > 0x7fffffff) return undefined;
    out[i] = v;
  }
  return out;
}

/**
 * Sorts nodes so that every node follows the producers of its inputs. Already-sorted input keeps
 * its order (depth-first from each node in file order), so module order stays the file's order.
 * `available` holds the values that exist before any node runs (graph inputs, initializers).
 * Throws FormatError on a cycle, a value produced twice, or an input nothing produces.
 */
export function topoSort(nodes: readonly Node[], available: ReadonlySet<string>, file: string): Node[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => {
    for (const o of n.outputs) {
      if (o === '') continue;
      if (producer.has(o) || available.has(o)) {
        throw new FormatError(file, `value '${o}' is produced twice (node '${n.name}')`);
      }
      producer.set(o, i);
    }
  });
  for (const n of nodes) {
    for (const v of n.inputs) {
      if (v !== '' && !producer.has(v) && !available.has(v)) {
        throw new FormatError(file, `node '${n.name}' (${n.opType}) reads '${v}', which is not a graph input, an initializer or a node output`);
      }
    }
  }
  // Iterative DFS: 0 = unvisited, 1 = on the stack, 2 = emitted.
  const state = new Uint8Array(nodes.length);
  const order: Node[] = [];
  for (let root = 0; root < nodes.length; root++) {
    if (state[root] !== 0) continue;
    const stack: [node: number, nextInput: number][] = [[root, 0]];
    state[root] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const node = nodes[top[0]]!;
      if (top[1] < node.inputs.length) {
        const p = producer.get(node.inputs[top[1]++]!);
        if (p === undefined || state[p] === 2) continue;
        if (state[p] === 1) {
          const cycle = stack.slice(stack.findIndex((s) => s[0] === p)).map((s) => `'${nodes[s[0]]!.name}'`);
          throw new FormatError(file, `the graph has a cycle through nodes ${cycle.join(' → ')}`);
        }
        state[p] = 1;
        stack.push([p, 0]);
      } else {
        state[top[0]] = 2;
        order.push(node);
        stack.pop();
      }
    }
  }
  return order;
}

/** Names every node: keeps unique file names, generates `${opType}_${index}` otherwise. */
export function uniqueNodeNames(names: readonly string[], opTypes: readonly string[]): string[] {
  const taken = new Set(names.filter((n) => n !== ''));
  const seen = new Set<string>();
  return names.map((name, i) => {
    let candidate = name !== '' && !seen.has(name) ? name : `${opTypes[i]}_${i}`;
    // A generated name could collide with a name in the file: add suffixes until free.
    for (let k = 1; (candidate !== name && taken.has(candidate)) || seen.has(candidate); k++) {
      candidate = `${opTypes[i]}_${i}_${k}`;
    }
    seen.add(candidate);
    return candidate;
  });
}
