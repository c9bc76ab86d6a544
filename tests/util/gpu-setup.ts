// Setup of every GPU test file: acquire the device first, so a missing adapter fails the file
// loudly with the reason, and name the adapter in the test output.
import { beforeAll } from 'vitest';
import { describeAdapter } from './gpu.js';

let announced = false;
beforeAll(async () => {
  const name = await describeAdapter();
  if (!announced) {
    console.log(`[webgpu] adapter: ${name}`);
    announced = true;
  }
});
