// WebGPU's flag constants, by value.
//
// The library never reads the `GPUBufferUsage` / `GPUMapMode` / `GPUShaderStage` globals: Node's
// `webgpu` package (Dawn) hands out an entry point without installing them, and a worker or test
// realm may lack them too. The values are fixed by the WebGPU spec, so they are spelled out here.

export const BufferUsage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
} as const;

export const MapMode = { READ: 0x0001 } as const;

export const ShaderStage = { COMPUTE: 0x0004 } as const;
