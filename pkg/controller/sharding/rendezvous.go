package sharding

import (
	"hash/fnv"
	"io"
)

// owner returns the member that drives namespace ns: the one with the highest
// rendezvous score (ties, which need a 64-bit collision, go to the greater
// name). Every replica that sees the same members picks the same owner;
// removing a member moves only the namespaces it owned, and adding one moves
// only those it now wins, about 1/N of them. "" if there are no members.
func owner(ns string, members []string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		sc := score(ns, m)
		if best == "" || sc > bestScore || (sc == bestScore && m > best) {
			best, bestScore = m, sc
		}
	}
	return best
}

// score hashes ns and member with FNV-64a, then mixes the result (MurmurHash3's
// finalizer): FNV alone spreads the last bytes it reads, which is where member
// names differ, poorly into the high bits that decide the comparison.
func score(ns, member string) uint64 {
	h := fnv.New64a()
	_, _ = io.WriteString(h, ns)
	_, _ = io.WriteString(h, "/")
	_, _ = io.WriteString(h, member)
	k := h.Sum64()
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
