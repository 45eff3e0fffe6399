import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Keys from "../src/Keys.ts"
import * as Sealing from "../src/Sealing.ts"

const messageOf = (f: () => unknown): string => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, Keys.KeyError)
    return (e as Keys.KeyError).message
  }
  throw new Error("expected a KeyError")
}

describe("Keys", () => {
  it("generateKeyPair gives standard base64 X25519 keys that libsodium seals to and opens with", async () => {
    const kp = Keys.generateKeyPair()
    assert.match(kp.publicKey, /^[A-Za-z0-9+/]{43}=$/)
    assert.match(kp.privateKey, /^[A-Za-z0-9+/]{43}=$/)
    assert.notStrictEqual(kp.publicKey, Keys.generateKeyPair().publicKey)
    const sealed = await Sealing.sealJson({ hello: "world" }, kp.publicKey)
    assert.deepStrictEqual(await Sealing.openJson(sealed, kp.privateKey), { hello: "world" })
  })

  it("says which key is wrong and what was expected, without echoing it", () => {
    const short = Buffer.alloc(31, 7).toString("base64")
    const m1 = messageOf(() => Keys.parsePublicKey(short))
    assert.include(m1, "MHQ_PUBLIC_KEY")
    assert.include(m1, "standard base64 of 32 bytes")
    assert.include(m1, "31 bytes")
    assert.notInclude(m1, short)

    const urlSafe = Buffer.alloc(32, 0xfb).toString("base64url")
    assert.include(messageOf(() => Keys.parsePublicKey(urlSafe)), "URL-safe")
    assert.include(messageOf(() => Keys.parsePrivateKey("not base64!!", "MHQ_PRIVATE_KEY")), "MHQ_PRIVATE_KEY")
    assert.include(messageOf(() => Keys.parsePublicKey("")), "empty")
    assert.include(messageOf(() => Keys.parseClientSecret("  ")), "MHQ_CLIENT_SECRET")
  })

  it("keeps private keys and secrets redacted", () =>
    Effect.gen(function*() {
      const kp = Keys.generateKeyPair()
      const sk = yield* Keys.privateKey(kp.privateKey)
      assert.notInclude(String(sk), kp.privateKey)
      assert.strictEqual(Buffer.from(Redacted.value(sk)).toString("base64"), kp.privateKey)
      const error = yield* Effect.flip(Keys.publicKey("abc", "MHQ_PUBLIC_KEY"))
      assert.strictEqual(error.name, "MHQ_PUBLIC_KEY")
      assert.notInclude(String(Keys.parseClientSecret("s3cr3t")), "s3cr3t")
    }).pipe(Effect.runPromise))
})
