import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // radosgw (the second real S3 server) starts once per run, in the background.
    globalSetup: ['test/helpers/radosgw-setup.ts'],
    // The pools' worker threads run src/**/*Worker.ts: they inherit this TypeScript loader.
    execArgv: ['--import', new URL('./test/helpers/ts-register.mjs', import.meta.url).href],
    reporters: ['default'],
  },
});
