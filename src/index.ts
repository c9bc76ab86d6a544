// ia3-webgpu: the public API, in pipeline order.
//
//   const gpu = await createDevice();
//   const model = await loadModel('/models/my-model/', { device: gpu });
//   model.moduleNames();
//   const { logits } = await model.run({ input_ids: [[1, 2, 3]] });
//   const peft = getPeftModel(model, new IA3Config({ taskType: 'CAUSAL_LM' }));
//   peft.printTrainableParameters();
//   await new Trainer(peft, { learningRate: 3e-3, maxSteps: 200 }).train(examples);

export { createDevice, adapterName, GpuContext, type AdapterDescription, type CreateDeviceOptions } from './gpu/device.js';
export { loadModel, Model, type Feed, type LoadModelOptions, type OnnxFile } from './model.js';
export type { TensorData } from './ir/tensor.js';
export type { ModelSource } from './onnx/load.js';
export type { ModuleInfo } from './onnx/modules.js';
export { IA3Config, type IA3ConfigOptions, type TaskType } from './peft/config.js';
export { getPeftModel, loadPeftModel, PeftModel, type MergeOptions, type TrainingLease } from './peft/model.js';
export type { IA3Target } from './peft/adapter.js';
export type { AdapterFiles, AdapterSource } from './io/adapter.js';
export { downloadAdapter, adapterFilesFromFileList, fetchAdapter, type DownloadAdapterOptions, type FetchAdapterOptions } from './io/files.js';
export { MergeError } from './peft/merge.js';
export type { OnnxWithExternalData } from './onnx/export.js';
export { Trainer, NonFiniteError, type TrainingArguments, type TrainerOptions, type StepEvent, type LogEvent, type EvalResult, type EndEvent, type CheckpointEvent } from './train/trainer.js';
export type { Pooling } from './autograd/loss.js';
export type { Recompute } from './autograd/remat.js';
export type { ActivationPrecision } from './ops/half.js';
export { MemoryCheckpointStore, OpfsCheckpointStore, encodeCheckpoint, decodeCheckpoint, type Checkpoint, type CheckpointStore, type CheckpointTensor, type CheckpointFingerprint } from './train/checkpoint.js';
export type { Example } from './train/data.js';
export { IA3Error, WebGPUUnavailableError, DeviceLostError, ShaderCompileError, GpuExecutionError, ShapeError, UnsupportedOpError, FormatError, InputError, IndexOutOfRangeError, SizeLimitError, DisposedError, BusyError } from './errors.js';
