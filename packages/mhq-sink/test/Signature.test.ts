import { assert, describe, it } from "@effect/vitest"
import * as Signature from "../src/Signature.ts"

const failure = (f: () => unknown): Signature.SignatureFailure => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, Signature.SignatureError)
    return (e as Signature.SignatureError).reason
  }
  throw new Error("expected a SignatureError")
}

describe("Signature (Standard Webhooks)", () => {
  const secret = "client-secret-123"
  const body = JSON.stringify({ type: "batch", id: "0190b6e4-7a3c-7def-8abc-0123456789ab" })
  const now = 1_764_000_000

  it("matches the Standard Webhooks reference vector for whsec_ secrets", () => {
    const sig = Signature.signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert.strictEqual(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
  })

  it("signs id.timestamp.body with HMAC-SHA256 and verifies it", () => {
    const headers = Signature.sign({ secret, id: "msg-1", body, timestamp: now })
    assert.strictEqual(headers["webhook-id"], "msg-1")
    assert.strictEqual(headers["webhook-timestamp"], String(now))
    assert.match(headers["webhook-signature"], /^v1,[A-Za-z0-9+/]{43}=$/)
    assert.deepStrictEqual(Signature.verify({ secret, headers, body, now }), { id: "msg-1", timestamp: now })
    // Fetch-style Headers work too
    assert.strictEqual(Signature.verify({ secret, headers: new Headers({ ...headers }), body: Buffer.from(body), now }).id, "msg-1")
  })

  it("rejects a flipped byte in the body, the signature, the id or the timestamp", () => {
    const headers = Signature.sign({ secret, id: "msg-1", body, timestamp: now })
    const flipped = Buffer.from(body)
    flipped[10] = flipped[10]! ^ 0x01
    assert.strictEqual(failure(() => Signature.verify({ secret, headers, body: flipped, now })), "no_matching_signature")
    const sigBytes = Buffer.from(headers["webhook-signature"].slice(3), "base64")
    sigBytes[0] = sigBytes[0]! ^ 0x01
    const badSig = { ...headers, "webhook-signature": `v1,${sigBytes.toString("base64")}` }
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: badSig, body, now })), "no_matching_signature")
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: { ...headers, "webhook-id": "msg-2" }, body, now })), "no_matching_signature")
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: { ...headers, "webhook-timestamp": String(now + 1) }, body, now })), "no_matching_signature")
    assert.strictEqual(failure(() => Signature.verify({ secret: "other", headers, body, now })), "no_matching_signature")
  })

  it("refuses timestamps more than 5 minutes away and missing headers", () => {
    const old = Signature.sign({ secret, id: "m", body, timestamp: now - 301 })
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: old, body, now })), "timestamp_too_old")
    const edge = Signature.sign({ secret, id: "m", body, timestamp: now - 300 })
    assert.strictEqual(Signature.verify({ secret, headers: edge, body, now }).id, "m")
    const future = Signature.sign({ secret, id: "m", body, timestamp: now + 301 })
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: future, body, now })), "timestamp_too_new")
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: { "webhook-id": "m" }, body, now })), "missing_header")
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: { ...edge, "webhook-timestamp": "12abc" }, body, now })), "invalid_timestamp")
  })

  it("accepts several space-separated signatures when one matches (key rotation)", () => {
    const headers = Signature.sign({ secret, id: "m", body, timestamp: now })
    const other = Signature.signature("old-secret", "m", now, body)
    const rotated = { ...headers, "webhook-signature": `${other} v2,ignored ${headers["webhook-signature"]}` }
    assert.strictEqual(Signature.verify({ secret, headers: rotated, body, now }).id, "m")
    const none = { ...headers, "webhook-signature": `${other} v1,AAAA` }
    assert.strictEqual(failure(() => Signature.verify({ secret, headers: none, body, now })), "no_matching_signature")
  })
})
