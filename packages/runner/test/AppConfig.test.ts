import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Redacted } from "effect"
import * as AppConfig from "../src/AppConfig.ts"
import * as DotEnv from "../src/DotEnv.ts"

const dir = (files: Record<string, string>) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "mhq-config-"))
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(d, name)), { recursive: true })
    fs.writeFileSync(path.join(d, name), content)
  }
  return d
}

const pem = "-----BEGIN SECRET-----\nline-one\nline-two\n-----END SECRET-----"

describe("DotEnv", () => {
  it("parses the older agent's .env: quotes, multi-line single-quoted secrets, comments, export", () => {
    const env = DotEnv.parse([
      "# MHQ agent",
      "GITLAB_DOMAIN_URL=https://gitlab.acme.internal",
      "GITLAB_ACCESS_TOKEN='glpat-abc#not-a-comment'",
      `MHQ_CLIENT_SECRET='${pem}'`,
      "export MHQ_CLIENT_ID=acme-42   # trailing comment",
      "QUOTED=\"a\\nb\"",
      ""
    ].join("\n"))
    assert.deepStrictEqual(env, {
      GITLAB_DOMAIN_URL: "https://gitlab.acme.internal",
      GITLAB_ACCESS_TOKEN: "glpat-abc#not-a-comment",
      MHQ_CLIENT_SECRET: pem,
      MHQ_CLIENT_ID: "acme-42",
      QUOTED: "a\nb"
    })
    assert.throws(() => DotEnv.parse("A='never closed\nB=1", ".env"), /\.env:1: A has an opening ' but no closing one/)
  })
})

describe("AppConfig", () => {
  it.effect("the older agent's .env + config.json load unchanged", () =>
    Effect.gen(function*() {
      const cwd = dir({
        ".env": `GITLAB_DOMAIN_URL='https://gitlab.acme.internal/'\nGITLAB_ACCESS_TOKEN='glpat-secret'\nMHQ_CLIENT_ID='acme'\nMHQ_CLIENT_SECRET='${pem}'\nMHQ_WEBHOOK_URL=https://hooks.middlewarehq.com/acme?sig=query-secret\nMHQ_PUBLIC_KEY=AAAA\n`,
        "config.json": JSON.stringify({ integrations: { gitlab: { repositories: ["https://gitlab.acme.internal/platform/api", "https://gitlab.acme.internal/web/app.git"] } } })
      })
      const { config, sources } = yield* AppConfig.load({ cwd, env: {} })
      assert.strictEqual(config.gitlab.length, 1)
      assert.strictEqual(config.gitlab[0]!.url, "https://gitlab.acme.internal")
      assert.strictEqual(Redacted.value(config.gitlab[0]!.token), "glpat-secret")
      assert.deepStrictEqual(config.gitlab[0]!.projects, ["https://gitlab.acme.internal/platform/api", "https://gitlab.acme.internal/web/app.git"])
      assert.strictEqual(Redacted.value(config.mhq.clientSecret!), pem)
      assert.deepStrictEqual(AppConfig.requireDelivery(config), [])
      assert.strictEqual(Duration.toHours(config.sync.fetchInterval), 6)
      assert.strictEqual(Duration.toMinutes(config.mhq.heartbeatInterval), 5)
      assert.strictEqual(sources.get("gitlab[0].token"), ".env GITLAB_ACCESS_TOKEN")
      assert.strictEqual(sources.get("gitlab[0].projects"), "config.json (older agent's format)")
      assert.strictEqual(sources.get("sync.fetchInterval"), "default")
      // Secrets never show in the display form.
      const shown = JSON.stringify(AppConfig.toDisplay(config))
      assert.notInclude(shown, "glpat-secret")
      assert.notInclude(shown, "line-one")
      assert.include(shown, "<redacted>")
      assert.notInclude(shown, "query-secret")
      assert.include(shown, "https://hooks.middlewarehq.com/acme")
    }))

  it.effect("our own file, env overrides and *File secrets, with provenance", () =>
    Effect.gen(function*() {
      const cwd = dir({
        "secrets/token": "glpat-from-file\n",
        "mhq-sync.json": JSON.stringify({
          gitlab: [{ url: "https://a.example", tokenFile: "secrets/token", groups: ["platform"], requestsPerMinute: 120 },
            { url: "https://b.example", token: "glpat-b", projects: [42] }],
          sync: { backfillDays: 90, fetchInterval: "1h" },
          http: { listen: false }
        })
      })
      const { config, sources } = yield* AppConfig.load({ cwd, env: { MHQ_SEND_INTERVAL: "30 minutes", GITLAB_CONCURRENCY: "2" } })
      assert.strictEqual(Redacted.value(config.gitlab[0]!.token), "glpat-from-file")
      assert.strictEqual(sources.get("gitlab[0].token"), "file secrets/token")
      assert.strictEqual(config.gitlab[0]!.concurrency, 2)
      assert.strictEqual(sources.get("gitlab[0].concurrency"), "env GITLAB_CONCURRENCY")
      assert.deepStrictEqual(config.gitlab[1]!.projects, ["42"])
      assert.strictEqual(config.sync.backfillDays, 90)
      assert.strictEqual(sources.get("sync.backfillDays"), "mhq-sync.json")
      assert.strictEqual(Duration.toMinutes(config.sync.sendInterval), 30)
      assert.strictEqual(Duration.toHours(config.sync.fetchInterval), 1)
      assert.isUndefined(config.http.listen)
    }))

  it.effect("every problem is reported at once, each with its path and a hint", () =>
    Effect.gen(function*() {
      const cwd = dir({
        "mhq-sync.json": JSON.stringify({
          gitlab: [{ url: "gitlab.acme.internal", projects: [] }, { url: "https://ok.example", tokenFile: "/nonexistent/token", projects: ["a/b"], concurrency: 0 }],
          mhq: { webhookUrl: "http://hooks.example.com/x" },
          sync: { fetchInterval: "often" },
          batch: { maxRecords: 0 }
        })
      })
      const error = yield* Effect.flip(AppConfig.load({ cwd, env: {} }))
      const byPath = Object.fromEntries(error.problems.map((p) => [p.path, p.message]))
      assert.match(byPath["gitlab[0].url"]!, /not a valid URL/)
      assert.match(byPath["gitlab[0].token"]!, /^missing — set GITLAB_ACCESS_TOKEN or gitlab\[0\]\.tokenFile/)
      assert.match(byPath["gitlab[0].projects"]!, /no projects or groups/)
      assert.match(byPath["gitlab[1].tokenFile"]!, /cannot read \/nonexistent\/token: ENOENT/)
      assert.match(byPath["gitlab[1].concurrency"]!, /out of range/)
      assert.match(byPath["mhq.webhookUrl"]!, /must be https:\/\//)
      assert.match(byPath["sync.fetchInterval"]!, /"often" is not a duration/)
      assert.match(byPath["batch.maxRecords"]!, /out of range/)
      assert.strictEqual(error.problems.length, 8)
      assert.match(error.message, /^invalid configuration \(8 problems\):\n  gitlab\[0\]\.url: /)
    }))

  it.effect("GraphQL settings: on with batches of 50 by default; GITLAB_GRAPHQL turns it off; the batch size is checked", () =>
    Effect.gen(function*() {
      const cwd = dir({ "mhq-sync.json": JSON.stringify({ gitlab: [{ url: "https://a.example", token: "t", projects: ["a/b"] }] }) })
      const on = yield* AppConfig.load({ cwd, env: {} })
      assert.strictEqual(on.config.gitlab[0]!.graphql, true)
      assert.strictEqual(on.config.gitlab[0]!.graphqlBatchSize, 50)
      const off = yield* AppConfig.load({ cwd, env: { GITLAB_GRAPHQL: "false", GITLAB_GRAPHQL_BATCH_SIZE: "20" } })
      assert.strictEqual(off.config.gitlab[0]!.graphql, false)
      assert.strictEqual(off.config.gitlab[0]!.graphqlBatchSize, 20)
      assert.strictEqual(off.sources.get("gitlab[0].graphql"), "env GITLAB_GRAPHQL")
      const error = yield* Effect.flip(AppConfig.load({ cwd, env: { GITLAB_GRAPHQL_BATCH_SIZE: "500" } }))
      assert.match(error.message, /gitlab\[0\]\.graphqlBatchSize: 500 is out of range — an integer from 1 to 100/)
    }))

  it.effect("type errors and unknown keys (typos) name their paths; env-sourced ones name the variable", () =>
    Effect.gen(function*() {
      const cwd = dir({ "mhq-sync.json": JSON.stringify({ gitlab: [{ url: "https://a", tokne: "x", concurrency: "four" }], syncc: {} }) })
      const error = yield* Effect.flip(AppConfig.load({ cwd, env: { MHQ_BACKFILL_DAYS: "lots" } }))
      const byPath = Object.fromEntries(error.problems.map((p) => [p.path, p.message]))
      assert.match(byPath["gitlab[0].tokne"]!, /unknown key/)
      assert.match(byPath["syncc"]!, /unknown key/)
      assert.match(byPath["gitlab[0].concurrency"]!, /Expected number/)
      assert.match(byPath["sync.backfillDays"]!, /Expected number.*\(from env MHQ_BACKFILL_DAYS\)/)
    }))

  it.effect("plain http webhooks are allowed for loopback only; a missing --config file is an error", () =>
    Effect.gen(function*() {
      const cwd = dir({})
      const ok = yield* AppConfig.load({ cwd, env: { MHQ_WEBHOOK_URL: "http://127.0.0.1:8080/hook" } })
      assert.strictEqual(ok.config.mhq.webhookUrl!.port, "8080")
      const missing = yield* Effect.flip(AppConfig.load({ cwd, env: {}, configFile: "nope.json" }))
      assert.match(missing.problems[0]!.message, /file not found — check --config/)
      const delivery = AppConfig.requireDelivery(ok.config)
      assert.deepStrictEqual(delivery.map((p) => p.path), ["mhq.clientId", "mhq.clientSecret", "mhq.publicKey"])
    }))
})
