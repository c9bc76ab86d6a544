// ia3-webgpu: the public API, in pipeline order.
//
//   const gpu = await createDevice();
//   const model = await loadModel('/models/my-model/', { device: gpu });
//   model.moduleNames();
//   const { logits } = await model.run({ input_ids: [[1, 2, 3]] });

export { createDevice, adapterName, GpuContext } from './gpu/device.js';
export type { AdapterDescription, CreateDeviceOptions } from './gpu/device.js';
export { loadModel, Model } from './model.js';
export type { Feed, LoadModelOptions, TensorData } from './model.js';
export type { ModelSource } from './onnx/load.js';
export type { ModuleInfo } from './onnx/modules.js';
export {
  IA3Error,
  WebGPUUnavailableError,
  DeviceLostError,
  ShaderCompileError,
  GpuExecutionError,
  ShapeError,
  UnsupportedOpError,
  FormatError,
  InputError,
} from './errors.js';
