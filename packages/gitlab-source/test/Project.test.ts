import { assert, describe, it } from "@effect/vitest"
import { SimGitlab } from "@mhq-sync/testkit"
import { Effect } from "effect"
import { GitlabClient, Project } from "../src/index.ts"
import { configOf, fast } from "./helpers.ts"

const parse = (instance: string, ref: string | number, what: "project" | "group" = "project") =>
  Project.parseReference(instance, ref, what)

describe("Project", () => {
  it.effect("parses links, .git, trailing slashes, /-/ tails, ids and paths; relative roots", () =>
    Effect.gen(function*() {
      const i = "https://git.example.com/gitlab"
      const want = { _tag: "path", path: "group/sub/project" } as const
      assert.deepStrictEqual(yield* parse(i, "https://git.example.com/gitlab/group/sub/project"), want)
      assert.deepStrictEqual(yield* parse(i, "https://git.example.com/gitlab/group/sub/project.git"), want)
      assert.deepStrictEqual(yield* parse(i, "https://git.example.com/gitlab/group/sub/project/"), want)
      assert.deepStrictEqual(yield* parse(i, "https://GIT.example.com/gitlab/group/sub/project/-/tree/main/src"), want)
      assert.deepStrictEqual(yield* parse(i, "https://git.example.com/gitlab/group/sub/project/-/merge_requests/3"), want)
      assert.deepStrictEqual(yield* parse(i, "group/sub/project"), want)
      assert.deepStrictEqual(yield* parse(i, 42), { _tag: "id", id: 42 })
      assert.deepStrictEqual(yield* parse(i, "42"), { _tag: "id", id: 42 })
      assert.deepStrictEqual(yield* parse(i, "https://git.example.com/gitlab/groups/platform/backend", "group"), { _tag: "path", path: "platform/backend" })
    }))

  it.effect("a link on another host (or outside the root) is a config error", () =>
    Effect.gen(function*() {
      const e = yield* Effect.flip(parse("https://git.example.com", "https://github.com/group/project"))
      assert.strictEqual(e._tag, "InvalidReference")
      assert.include(e.message, "https://git.example.com")
      const e2 = yield* Effect.flip(parse("https://git.example.com/gitlab", "https://git.example.com/other/group/project"))
      assert.include(e2.message, "outside the instance root")
      const e3 = yield* Effect.flip(parse("https://git.example.com:8443", "https://git.example.com/group/project"))
      assert.strictEqual(e3._tag, "InvalidReference")
    }))

  it.live("group links expand to all projects incl. subgroups, archived excluded unless configured; links + ids dedupe", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 14, mrsPerProject: 1, groups: 2, subgroupsPerGroup: 1, archivedEvery: 7 })
      const top = sim.groups().find((g) => g.parentId === null)!
      const inTree = sim.projects().filter((p) => p.groupIds.includes(top.id))
      assert.isTrue(inTree.some((p) => p.namespaceId !== top.id), "the sim puts projects in subgroups")
      const client = yield* GitlabClient.make(configOf(sim, {
        groups: [`${sim.url}/groups/${top.fullPath}`],
        projects: [`${sim.url}/${inTree[0]!.pathWithNamespace}.git`, inTree[0]!.id]
      }), fast)
      const r = yield* Project.resolve(client)
      assert.deepStrictEqual(r.errors, [])
      const expected = inTree.filter((p) => !p.flags.archived || p.id === inTree[0]!.id).map((p) => p.id).sort((a, b) => a - b)
      assert.deepStrictEqual(r.projects.map((p) => p.id), expected)
      assert.isTrue(inTree.some((p) => p.flags.archived), "the sim archives some project of the tree")

      const withArchived = yield* GitlabClient.make(configOf(sim, { groups: [top.fullPath], includeArchived: true }), fast)
      const r2 = yield* Project.resolve(withArchived)
      assert.deepStrictEqual(r2.projects.map((p) => p.id), inTree.map((p) => p.id).sort((a, b) => a - b))
    }))

  it.live("an unknown project is a per-reference error; the others still resolve", () =>
    Effect.gen(function*() {
      const sim = yield* SimGitlab.make({ projects: 2, mrsPerProject: 1 })
      const client = yield* GitlabClient.make(configOf(sim, { projects: ["nope/missing", SimGitlab.projectIdOf(1)] }), fast)
      const r = yield* Project.resolve(client)
      assert.deepStrictEqual(r.projects.map((p) => p.id), [SimGitlab.projectIdOf(1)])
      assert.strictEqual(r.errors.length, 1)
      assert.include(r.errors[0]!, "nope/missing")
    }))
})
