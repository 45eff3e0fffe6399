/** UUIDv7 (RFC 9562): time-ordered, so batch ids sort by creation and index well. */
import { randomBytes } from "node:crypto"

let lastMs = 0
let seq = 0

export const v7 = (now: number = Date.now()): string => {
  const bytes = randomBytes(16)
  // Monotonic within one process: same millisecond -> bump a 12-bit counter in rand_a.
  if (now <= lastMs) {
    seq = (seq + 1) & 0xfff
    if (seq === 0) lastMs += 1
    now = lastMs
  } else {
    lastMs = now
    seq = bytes[6]! & 0x07 // random start leaves room to count up
  }
  bytes.writeUIntBE(now, 0, 6)
  bytes[6] = 0x70 | ((seq >> 8) & 0x0f)
  bytes[7] = seq & 0xff
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  const h = bytes.toString("hex")
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export const isUuid = (s: string): boolean =>
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s)
