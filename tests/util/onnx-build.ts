// Builds small ONNX models in memory with onnx-proto's encoder (tests and benchmarks only).
import { onnx } from 'onnx-proto';

export interface TinyInput {
  name: string;
  dims: number[];
  elemType?: number;
}

/** A one-node model: `opType(inputs) -> output`, float32 unless given, opset 17. */
export function singleOpModel(
  opType: string,
  inputs: TinyInput[],
  output: TinyInput,
  attrs: onnx.IAttributeProto[] = [],
  initializers: onnx.ITensorProto[] = [],
  opset = 17,
): Uint8Array {
  const vi = (t: TinyInput): onnx.IValueInfoProto => ({
    name: t.name,
    type: {
      tensorType: {
        elemType: t.elemType ?? onnx.TensorProto.DataType.FLOAT,
        shape: { dim: t.dims.map((d) => ({ dimValue: d })) },
      },
    },
  });
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    producerName: 'ia3-webgpu-tests',
    graph: {
      name: opType,
      node: [{ opType, name: `${opType}_0`, input: inputs.map((i) => i.name), output: [output.name], attribute: attrs }],
      input: inputs.filter((i) => !initializers.some((t) => t.name === i.name)).map(vi),
      output: [vi(output)],
      initializer: initializers,
    },
  };
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

/** A decoded ModelProto, typed as protobufjs fills it: every repeated field an array, scalars defaulted. */
export interface PNode extends onnx.INodeProto {
  name: string;
  opType: string;
  domain: string;
  input: string[];
  output: string[];
}
export interface PTensor extends onnx.ITensorProto {
  name: string;
  dataType: number;
  rawData: Uint8Array;
}
export interface PModel extends onnx.ModelProto {
  graph: Omit<onnx.GraphProto, 'node' | 'initializer'> & { node: PNode[]; initializer: PTensor[] };
}

/**
 * `model` with the initializers `move` picks (default: those of at least 1 KiB of raw data) moved
 * to one external file named `location`, as torch.onnx.export writes large models, each after
 * `misalign` bytes of padding (0: packed, 4-aligned as the tensors are); `moved` names the tensors
 * moved, `first` the first of them.
 */
export function withExternalData(
  model: Uint8Array,
  location: string,
  move: (t: PTensor) => boolean = (t) => t.rawData.length >= 1024,
  misalign = 0,
): { model: Uint8Array<ArrayBuffer>; data: Uint8Array<ArrayBuffer>; first: string; moved: string[] } {
  const p = onnx.ModelProto.decode(model) as PModel;
  const parts: Uint8Array[] = [];
  let offset = 0;
  const moved: string[] = [];
  for (const t of p.graph!.initializer) {
    if (!move(t)) continue;
    if (misalign) {
      parts.push(new Uint8Array(misalign));
      offset += misalign;
    }
    moved.push(t.name);
    parts.push(t.rawData.slice());
    t.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(t.rawData.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    offset += t.rawData.length;
    delete (t as { rawData?: Uint8Array }).rawData;
  }
  const data = new Uint8Array(offset);
  parts.reduce((at, c) => (data.set(c, at), at + c.length), 0);
  return { model: new Uint8Array(onnx.ModelProto.encode(p).finish()), data, first: moved[0] ?? '', moved };
}

export interface ValueSpec {
  name: string;
  dims?: (number | string)[];
  elemType?: number;
}

/** A value_info of a tensor (float32 unless `elemType`; symbolic dims as strings). */
export function valueInfo(v: ValueSpec): onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: v.elemType ?? onnx.TensorProto.DataType.FLOAT,
        ...(v.dims ? { shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } : {}),
      },
    },
  };
}

/** A model of the given nodes (subgraphs allowed), inputs, outputs and initializers. */
export function graphModel(
  nodes: onnx.INodeProto[],
  inputs: ValueSpec[],
  outputs: ValueSpec[],
  initializers: onnx.ITensorProto[] = [],
  opset = 17,
  irVersion = 8,
): Uint8Array {
  return onnx.ModelProto.encode({
    irVersion,
    opsetImport: [{ domain: '', version: opset }],
    graph: { name: 'g', node: nodes, input: inputs.map(valueInfo), output: outputs.map(valueInfo), initializer: initializers },
  }).finish();
}
