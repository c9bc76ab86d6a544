// Test projects: `unit` runs in Node (no GPU); `gpu` runs in headless Chromium with a real WebGPU
// adapter through Playwright. Chromium comes from the system (Debian's package ships SwiftShader,
// a software Vulkan that exposes a WebGPU adapter); CHROME_PATH overrides it, and without either
// Playwright's own Chromium is used. `node` runs the library in Node on Dawn (the `webgpu`
// package), whose test processes get the Vulkan environment of tests/util/dawn-env.ts at start.
import { defineConfig } from 'vitest/config';
import { playwright } from '@vitest/browser-playwright';
import { chromiumLaunchOptions } from './tests/util/chromium.js';
import { dawnEnv } from './tests/util/dawn-env.js';

export default defineConfig({
  test: {
    reporters: ['default', './tests/util/summary-reporter.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['tests/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['tests/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
      {
        test: {
          name: 'node',
          include: ['tests/node/**/*.test.ts'],
          environment: 'node',
          setupFiles: ['tests/util/node-setup.ts'],
          // Passed to the test processes when they start: the Vulkan loader's path cannot be set later.
          env: dawnEnv(),
          // --expose-gc: a test collects garbage to prove the device outlives the user's references.
          execArgv: ['--expose-gc'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          // SwiftShader already uses every core: one file at a time.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'gpu',
          include: ['tests/gpu/**/*.test.ts'],
          setupFiles: ['tests/util/gpu-setup.ts'],
          // SwiftShader runs WGSL on the CPU: a single kernel test can take seconds.
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          browser: {
            enabled: true,
            headless: true,
            screenshotFailures: false,
            provider: playwright({ launchOptions: chromiumLaunchOptions() }),
            instances: [{ browser: 'chromium' }],
          },
        },
      },
    ],
  },
});
