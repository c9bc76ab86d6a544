// Lint: typescript-eslint's recommended rules over the sources, tests and demo, and no WebGPU or
// browser globals in the library.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'demo-dist/', 'node_modules/', 'tests/fixtures/**/*.py', 'coverage/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The library runs in Node too (Dawn's `webgpu` package installs no WebGPU globals) and must
    // import without a DOM: flags come from src/gpu/flags.ts, browser objects only behind checks.
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        ...['GPUBufferUsage', 'GPUMapMode', 'GPUShaderStage', 'GPUTextureUsage'].map((name) => ({ name, message: 'use the constants of src/gpu/flags.ts' })),
        ...['window', 'Worker', 'importScripts'].map((name) => ({ name, message: 'browser-only: the library must import and run in Node' })),
      ],
    },
  },
);
