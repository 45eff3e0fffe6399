import { assert, describe, it } from "@effect/vitest"
import { Commit } from "../src/index.ts"

describe("Commit", () => {
  it("applies the privacy setting to names and emails; never keeps the message", () => {
    const scope = { instance: "https://h", projectId: 1, projectPath: "g/p" }
    const c = { id: "abc", created_at: "2024-01-01T00:00:00.000Z", author_name: "Ada L", author_email: "Ada@Example.com" }
    const keep = Commit.toRecord(scope, 7, "2024-01-02T00:00:00.000Z", { emails: "keep", names: "keep" }, c)
    assert.strictEqual((keep.data as any).author_email, "Ada@Example.com")
    assert.strictEqual((keep.data as any).author_name, "Ada L")
    assert.strictEqual(keep.key, "7:abc")
    assert.notProperty(keep.data as object, "message")
    const hashed = Commit.toRecord(scope, 7, "2024-01-02T00:00:00.000Z", { emails: "hash", names: "drop" }, c)
    assert.match((hashed.data as any).author_email, /^sha256:[0-9a-f]{64}$/)
    assert.strictEqual((hashed.data as any).author_email, Commit.applyPrivacy("hash", " ada@example.com"))
    assert.strictEqual((hashed.data as any).author_name, null)
  })
})
