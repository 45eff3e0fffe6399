import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Database-backed suites each start their own Postgres schema / embedded cluster; two cores.
    maxWorkers: 2
  }
})
