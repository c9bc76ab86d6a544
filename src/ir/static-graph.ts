// Static graphs: what the specialiser produces, the autograd extends and a plan is compiled from.
//
// A PlanGraph is a graph whose every value has a known TensorType: nodes in topological order,
// the runtime inputs, the constants lowerings may read at compile time, and the resident tensors
// (weights, folded constants) a plan uploads once. A SpecializedGraph is a PlanGraph that remembers
// the Graph and input shapes it came from (onnx/specialize.ts builds it; autograd/ appends to it).

import type { Attrs, Graph } from './graph.js';
import type { WeightStorage } from './dtype.js';
import { sizeOf, type RefTensor, type TensorType } from './tensor.js';

/** A node of a plan's graph (after specialisation; topological order). */
export interface PlanNode {
  readonly name: string;
  readonly opType: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Attrs;
  readonly opset: number;
}

/**
 * Resident data the plan uploads once: weights (typed arrays) or folded constants. `data` is absent
 * for a weight that lives only on the GPU (streamed there at load): the plan finds it in `shared`.
 * `storage` when the weight is in a packed form (ir/dtype.ts) that only some lowerings read.
 */
export type ResidentData = { readonly type: TensorType; readonly data?: Float32Array | Int32Array | Uint32Array; readonly storage?: WeightStorage };

/**
 * Bytes a resident value takes in its GPU buffer: its packed words when stored packed (one streamed
 * to the GPU has no CPU data; only halves are streamed packed: two per word, padded to 16 bytes as
 * `packHalves` pads), else 4 per element.
 */
export function residentBytes(r: ResidentData): number {
  if (!r.storage) return 4 * sizeOf(r.type.dims);
  if (r.data) return r.data.byteLength;
  if (r.storage === 'f16x2') return Math.ceil(sizeOf(r.type.dims) / 8) * 16;
  throw new Error(`a resident weight stored ${r.storage} has no data`);
}

/**
 * A namer for values and nodes added to `graph`: `base` when neither a value nor a node has that
 * name yet (nor an earlier call returned it), else `base_1`, `base_2`, ….
 */
export function freshNames(graph: { readonly types: ReadonlyMap<string, unknown>; readonly nodes: readonly { readonly name: string }[] }): (base: string) => string {
  const taken = new Set([...graph.types.keys(), ...graph.nodes.map((n) => n.name)]);
  return (base) => {
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  };
}

/**
 * An index check: the status value of an IndexCheck node guarding a gather (see
 * onnx/index-checks.ts), which the plan keeps to the end of a step for the host to read.
 */
export interface IndexCheckInfo {
  /** The int32 [3] status value. */
  readonly value: string;
  /** The gather it guards, and its op type. */
  readonly node: string;
  readonly opType: string;
  /** The length of the gathered axis. */
  readonly axisDim: number;
}

/** What a plan is compiled from. */
export interface PlanGraph {
  /** Runtime inputs (fed at every execution). */
  readonly inputs: readonly { readonly name: string; readonly type: TensorType }[];
  /** Values the caller may read after execution. */
  readonly outputs: readonly string[];
  readonly nodes: readonly PlanNode[];
  /** Static type of every value produced or consumed by a node. */
  readonly types: ReadonlyMap<string, TensorType>;
  /** Known constant values (small folded tensors) a lowering may read at compile time. */
  readonly constants: ReadonlyMap<string, RefTensor>;
  /** Resident tensors: weights and constants, by value name. */
  readonly resident: ReadonlyMap<string, ResidentData>;
  /**
   * Resident buffers shared with other plans (e.g. the same weights in a forward plan and a
   * training plan of another shape). Looked up before `resident`; the plan never frees them.
   */
  readonly shared?: ReadonlyMap<string, GPUBuffer>;
  /** Index checks whose status values live to the end of a step (readable like outputs). */
  readonly checks?: readonly IndexCheckInfo[];
  /**
   * Outputs too large for one buffer, computed in parts: value → its parts, consecutive row ranges
   * of the value flattened to [rows, last dim] (compile/legalize.ts); reading the value reads them.
   */
  readonly outputParts?: ReadonlyMap<string, readonly string[]>;
}

export interface SpecNode extends PlanNode {
  readonly domain: string;
}

export interface SpecializedGraph extends PlanGraph {
  /** The graph this was specialised from. */
  readonly source: Graph;
  /** Cache key: the input shapes. */
  readonly key: string;
  /** Runtime inputs the remaining nodes read, with their concrete types. */
  readonly inputs: readonly { readonly name: string; readonly type: TensorType }[];
  /** Value names of the graph outputs (the same as `outputNames` unless an output aliases an input or constant). */
  readonly outputs: readonly string[];
  /** The graph's output names, in order. */
  readonly outputNames: readonly string[];
  readonly nodes: readonly SpecNode[];
  /** Type of every value the nodes read or write, and of every output. */
  readonly types: ReadonlyMap<string, TensorType>;
  /** CPU-known values the nodes read (folded results, small initializers) and constant outputs. */
  readonly constants: ReadonlyMap<string, RefTensor>;
  /** Initializers the nodes read (their data stays in `source.initializers`). */
  readonly weights: readonly string[];
  /** GPU-storage copies (views for f32 weights) of every non-runtime value the nodes read. */
  readonly resident: ReadonlyMap<string, ResidentData>;
  /** Size bound to each symbolic dim. */
  readonly symbols: Readonly<Record<string, number>>;
}
