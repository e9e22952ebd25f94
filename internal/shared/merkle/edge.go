package merkle

import "golang.org/x/mod/sumdb/tlog"

// Edge is the right edge of a tree of n leaves: the hashes of its complete subtrees, largest
// (leftmost) first, one for each bit set in n. It is all a writer needs to append to a tree and
// compute its root, and all a reader needs of leaves it no longer has: a bundle whose first leaves
// expired carries the edge of those leaves instead of their hashes.
type Edge []tlog.Hash

// Append adds leaf n (the tree has n leaves) and returns the new edge; node, if set, is told each
// interior node made, with its level (a leaf is level 0): the node completes the subtree of the
// new leaf at that level.
func (e Edge) Append(n int64, h tlog.Hash, node func(level int, h tlog.Hash)) Edge {
	next := append(e, h)
	// Each trailing one bit of n is a subtree of the same height as the new one: merge them.
	for level := 1; n&1 == 1; level++ {
		l, r := next[len(next)-2], next[len(next)-1]
		next = append(next[:len(next)-2], NodeHash(l, r))
		n >>= 1
		if node != nil {
			node(level, next[len(next)-1])
		}
	}
	return next
}

// Valid tells whether the edge can be that of a tree of n leaves.
func (e Edge) Valid(n int64) bool {
	bits := 0
	for m := n; m > 0; m &= m - 1 {
		bits++
	}
	return n >= 0 && len(e) == bits
}

// Root is the tree hash: the subtrees folded from the right (RFC 6962); the root of no leaves is
// SHA-256 of nothing.
func (e Edge) Root() tlog.Hash {
	if len(e) == 0 {
		return Root(nil)
	}
	h := e[len(e)-1]
	for i := len(e) - 2; i >= 0; i-- {
		h = NodeHash(e[i], h)
	}
	return h
}

// EdgeOf is the edge of the tree of these leaves.
func EdgeOf(leaves []tlog.Hash) Edge {
	var e Edge
	for i, h := range leaves {
		e = e.Append(int64(i), h, nil)
	}
	return e
}
