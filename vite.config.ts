// Vite: `vite` serves the demo page (demo/), `vite build` builds it into demo-dist/, and
// `vite build --mode lib` builds the library's ES module (WGSL inlined as strings) into dist/.
import { resolve } from 'node:path';
import { defineConfig, type Connect, type Plugin } from 'vite';

/**
 * Model weights as application/octet-stream. Vite's preview server gzips a file whose type it does
 * not know (.onnx), and a compressed response has no Content-Length of its bytes, so the page's load
 * progress could not show a total; model hosts (the Hugging Face Hub, static hosts) send the size.
 */
const binaryWeights: Connect.NextHandleFunction = (req, res, next) => {
  if (/\.(onnx|onnx_data|data|safetensors|bin)$/.test((req.url ?? '').split('?')[0]!)) res.setHeader('Content-Type', 'application/octet-stream');
  next();
};
const weightsPlugin: Plugin = {
  name: 'binary-weights',
  configureServer: (server) => void server.middlewares.use(binaryWeights),
  configurePreviewServer: (server) => void server.middlewares.use(binaryWeights),
};

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
    plugins: [weightsPlugin],
  };
});
