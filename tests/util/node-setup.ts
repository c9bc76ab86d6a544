// Setup of every Node GPU test file: acquire the device first, so a missing adapter fails the file
// loudly with the reason (Dawn's own is on stderr), and name the adapter and the Vulkan environment.
import { beforeAll } from 'vitest';
import { describeAdapter } from './node-gpu.js';

let announced = false;
beforeAll(async () => {
  const name = await describeAdapter();
  if (!announced) {
    const vk = ['LD_LIBRARY_PATH', 'VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'VK_ADD_DRIVER_FILES'].filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]}`);
    console.log(`[dawn] adapter: ${name} (${vk.join(' ') || 'system Vulkan'})`);
    announced = true;
  }
});
