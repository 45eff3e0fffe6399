// Runs the simulated GitLab as its own process (benchmarks keep its memory out of the agent's):
//   npx tsx test/support/src/sim-gitlab-main.ts --projects 20 --mrs 500 --latency 20 --seed 1 [--port N]
//     [--graphql enabled|disabled|legacy]
// Prints one JSON line {"url","token"} on stdout once listening; stops on SIGTERM/SIGINT.
// Request counters are available at GET <url>/__sim/stats (not counted themselves).
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { start } from "./SimGitlab.ts"

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    groups: { type: "string" },
    subgroups: { type: "string" },
    projects: { type: "string" },
    mrs: { type: "string" }, // per project
    pipelines: { type: "string" },
    deployments: { type: "string" },
    "span-days": { type: "string" },
    latency: { type: "string" },
    "error-rate": { type: "string" },
    rpm: { type: "string" },
    port: { type: "string" },
    token: { type: "string" },
    "relative-root": { type: "string" },
    "log-limit": { type: "string" },
    "tls-key": { type: "string" },
    "tls-cert": { type: "string" },
    graphql: { type: "string" } // enabled (default) | disabled | legacy
  },
  strict: true
})

const num = (v: string | undefined): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n)) throw new Error(`not a number: ${v}`)
  return n
}
// Omit absent flags so SimGitlab's defaults apply (exactOptionalPropertyTypes).
const opt = <K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } => (v === undefined ? {} : { [key]: v } as { [P in K]: V })

const graphqlModes = ["enabled", "disabled", "legacy"] as const
const graphql = values.graphql
if (graphql !== undefined && !(graphqlModes as ReadonlyArray<string>).includes(graphql)) {
  throw new Error(`--graphql must be one of ${graphqlModes.join(", ")}: ${graphql}`)
}

const rpm = num(values.rpm)
const handle = await start({
  ...opt("seed", num(values.seed)),
  ...opt("groups", num(values.groups)),
  ...opt("subgroupsPerGroup", num(values.subgroups)),
  ...opt("projects", num(values.projects)),
  ...opt("mrsPerProject", num(values.mrs)),
  ...opt("pipelinesPerProject", num(values.pipelines)),
  ...opt("deploymentsPerProject", num(values.deployments)),
  ...opt("spanDays", num(values["span-days"])),
  ...opt("port", num(values.port)),
  ...opt("token", values.token),
  ...opt("relativeRoot", values["relative-root"]),
  ...opt("logLimit", num(values["log-limit"]) ?? 0),
  ...opt("graphql", graphql as (typeof graphqlModes)[number] | undefined),
  ...opt("rateLimit", rpm === undefined ? undefined : { requestsPerMinute: rpm }),
  ...opt(
    "tls",
    values["tls-key"] && values["tls-cert"]
      ? { key: readFileSync(values["tls-key"]), cert: readFileSync(values["tls-cert"]) }
      : undefined
  ),
  faults: { latencyMs: num(values.latency) ?? 0, errorRate: num(values["error-rate"]) ?? 0 }
})

process.stdout.write(`${JSON.stringify({ url: handle.url, token: handle.token })}\n`)

const shutdown = () => {
  handle.stop().then(() => process.exit(0), () => process.exit(1))
}
process.once("SIGTERM", shutdown)
process.once("SIGINT", shutdown)
