// Vite: `vite` serves the demo page (demo/), `vite build` builds it into demo-dist/, and
// `vite build --mode lib` builds the library's ES module (WGSL inlined as strings) into dist/.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig(({ mode }) => {
  if (mode === 'lib') {
    return {
      build: {
        outDir: 'dist',
        emptyOutDir: false,
        sourcemap: true,
        target: 'es2022',
        lib: { entry: resolve(import.meta.dirname, 'src/index.ts'), formats: ['es'], fileName: 'ia3-webgpu' },
        rollupOptions: { external: [/^onnxruntime-web/] },
      },
    };
  }
  return {
    root: 'demo',
    base: './',
    // A missing file is a 404, not the page's HTML (the page reports what a model folder lacks).
    appType: 'mpa',
    resolve: { alias: { 'ia3-webgpu': resolve(import.meta.dirname, 'src/index.ts') } },
    server: { fs: { allow: ['..'] } },
    build: { outDir: resolve(import.meta.dirname, 'demo-dist'), emptyOutDir: true, target: 'es2022' },
    worker: { format: 'es' },
  };
});
