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
