// Small deterministic PRNG: every generated record is derived from a hash of (seed, kind, ids…),
// so any MR can be rebuilt on demand without materialising the others.

/** 32-bit avalanche hash of a list of integers. */
export const hash = (...xs: ReadonlyArray<number>): number => {
  let h = 0x811c9dc5
  for (const x of xs) {
    h = Math.imul(h ^ (x | 0), 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h ^ Math.floor(x / 0x100000000), 0xc2b2ae35)
    h ^= h >>> 16
  }
  return h >>> 0
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** mulberry32 */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }
  static of(...xs: ReadonlyArray<number>): Rng {
    return new Rng(hash(...xs))
  }
  /** uniform in [0, 1) */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<A>(xs: ReadonlyArray<A>): A {
    return xs[Math.floor(this.next() * xs.length)] as A
  }
  hex(chars: number): string {
    let s = ""
    while (s.length < chars) {
      const x = (this.next() * 0x100000000) >>> 0
      s += (HEX[x >>> 24] as string) + HEX[(x >>> 16) & 255] + HEX[(x >>> 8) & 255] + HEX[x & 255]
    }
    return s.length === chars ? s : s.slice(0, chars)
  }
}

/** A git-like 40 hex sha, stable for the given key. */
export const sha = (...xs: ReadonlyArray<number>): string => Rng.of(...xs).hex(40)
