/**
 * Conversation placement by rendezvous (highest-random-weight) hashing: the owner of C is the
 * live node with the highest hash(node, C). Every node computes the same owner from the same
 * live set, and when a node leaves only its own conversations move.
 */
import { fnv1a } from '../core/hash.ts';

/** A 32-bit mix of the two hashes (murmur3 finalizer) so nearby ids do not rank alike. */
function weight(node: string, key: string): number {
  let h = (fnv1a(key) ^ Math.imul(fnv1a(node), 0x9e3779b1)) >>> 0;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export function ownerOf(key: string, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestW = -1;
  for (const n of nodes) {
    const w = weight(n, key);
    // Ties broken by name so every node agrees.
    if (w > bestW || (w === bestW && best !== undefined && n < best)) { best = n; bestW = w; }
  }
  return best;
}
