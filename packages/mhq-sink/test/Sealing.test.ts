import { assert, describe, it } from "@effect/vitest"
import { gunzipSync } from "node:zlib"
import * as Keys from "../src/Keys.ts"
import * as Sealing from "../src/Sealing.ts"
import * as Sodium from "../src/Sodium.ts"
import * as WireProtocol from "../src/WireProtocol.ts"
import { everyKind, plaintextMarker } from "./fixtures.ts"

const flipByte = (b64: string, index: number) => {
  const bytes = Buffer.from(b64, "base64")
  bytes[index] = bytes[index]! ^ 0x01
  return bytes.toString("base64")
}

describe("Sealing", () => {
  it("round-trips a record of every kind (async and sync forms)", async () => {
    const kp = Keys.generateKeyPair()
    const sealed = await Sealing.seal(everyKind, kp.publicKey)
    assert.notInclude(sealed.ciphertext, plaintextMarker)
    assert.notInclude(Buffer.from(sealed.ciphertext, "base64").toString("latin1"), plaintextMarker)
    const opened = await Sealing.open(sealed.ciphertext, kp.privateKey)
    assert.deepStrictEqual(opened, everyKind.map(WireProtocol.toWireRecord))
    assert.deepStrictEqual(opened.map((r) => r.kind), ["project", "merge_request", "approval", "diff_stat", "note", "pipeline", "commit", "deployment"])
    assert.deepStrictEqual(opened.map(WireProtocol.fromWireRecord), [...everyKind])

    await Sodium.ready()
    const again = Sealing.sealSync(everyKind, kp.publicKey)
    assert.deepStrictEqual(Sealing.openSync(again.ciphertext, kp.privateKey), opened)
    assert.strictEqual(again.plaintextBytes, sealed.plaintextBytes)
  })

  it("plaintext is gzip of JSON Lines with snake_case fields, sealed (48 bytes overhead), standard base64", async () => {
    const kp = Keys.generateKeyPair()
    const sealed = await Sealing.seal(everyKind, kp.publicKey)
    assert.match(sealed.ciphertext, /^[A-Za-z0-9+/]+={0,2}$/)
    assert.strictEqual(Buffer.from(sealed.ciphertext, "base64").length, sealed.compressedBytes + 48)
    const gz = Sealing.openBytes(sealed.ciphertext, kp.privateKey)
    const lines = gunzipSync(gz).toString("utf8").split("\n")
    assert.strictEqual(lines.length, everyKind.length + 1)
    assert.strictEqual(lines.at(-1), "")
    assert.deepStrictEqual(Object.keys(JSON.parse(lines[0]!)), ["kind", "instance", "project_id", "project_path", "key", "updated_at", "data"])
  })

  it("a flipped byte anywhere in the ciphertext is rejected", async () => {
    const kp = Keys.generateKeyPair()
    const sealed = await Sealing.seal(everyKind, kp.publicKey)
    const length = Buffer.from(sealed.ciphertext, "base64").length
    for (const index of [0, 31, 32, 47, 48, Math.floor(length / 2), length - 1]) {
      try {
        await Sealing.open(flipByte(sealed.ciphertext, index), kp.privateKey)
        assert.fail(`flipped byte ${index} was accepted`)
      } catch (e) {
        assert.instanceOf(e, Sealing.SealingError)
      }
    }
  })

  it("the wrong private key cannot open", async () => {
    const right = Keys.generateKeyPair()
    const wrong = Keys.generateKeyPair()
    const sealed = await Sealing.seal(everyKind, right.publicKey)
    try {
      await Sealing.open(sealed.ciphertext, wrong.privateKey)
      assert.fail("opened with the wrong key")
    } catch (e) {
      assert.instanceOf(e, Sealing.SealingError)
      assert.include((e as Error).message, "wrong private key")
    }
  })

  it("refuses to inflate beyond the plaintext limit (gzip bomb guard)", async () => {
    const kp = Keys.generateKeyPair()
    const sealed = await Sealing.seal(everyKind, kp.publicKey)
    try {
      await Sealing.open(sealed.ciphertext, kp.privateKey, { maxPlaintextBytes: 100 })
      assert.fail("inflated beyond the limit")
    } catch (e) {
      assert.instanceOf(e, Sealing.SealingError)
    }
  })
})
