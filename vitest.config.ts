import { defineConfig } from "vitest/config"

// Vitest 5's reporter calls Map.groupBy (Node 21+) when it prints failures; on Node 20 that
// crashes the report. Polyfill it in the main process so failures are shown, not swallowed.
if (typeof (Map as { groupBy?: unknown }).groupBy !== "function") {
  Object.defineProperty(Map, "groupBy", {
    value: <K, V>(items: Iterable<V>, key: (item: V, index: number) => K) => {
      const map = new Map<K, Array<V>>()
      let i = 0
      for (const item of items) {
        const k = key(item, i++)
        const list = map.get(k)
        if (list) list.push(item)
        else map.set(k, [item])
      }
      return map
    }
  })
}

export default defineConfig({
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Database-backed suites each start their own Postgres schema / embedded cluster; two cores.
    maxWorkers: 2
  }
})
