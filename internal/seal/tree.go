package seal

// The tree: a team's RFC 6962 tree as the sealer extends it and the prover reads it, without a
// stored hash per leaf (docs/integrity.md, "Sealing"). The sealer keeps the right edge of the tree
// (one hash per complete subtree of the current size) and the hash of each full tile of TileLeaves
// leaves; the prover recomputes the leaf hashes of the one or two tiles a proof reaches into from
// their events.

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/shared/merkle"
)

// TileHeight is the height of a tile's subtree: a tile holds 1<<TileHeight leaves.
const TileHeight = 8

// TileLeaves is the number of leaves of a full tile.
const TileLeaves = 1 << TileHeight

// edge is the right edge of a tree: the hashes of its complete subtrees, largest (leftmost) first,
// one for each bit set in the tree's size. Appending a leaf merges equal subtrees from the right.
type edge []tlog.Hash

// appendLeaf adds a leaf to a tree of size n, giving the new edge; when the leaf completes a tile,
// full is that tile's hash.
func (e edge) appendLeaf(n int64, h tlog.Hash) (next edge, full *tlog.Hash) {
	next = append(e, h)
	// Each trailing one bit of n is a subtree of the same height as the new one: merge them.
	for level := 0; n&1 == 1; level++ {
		l, r := next[len(next)-2], next[len(next)-1]
		next = append(next[:len(next)-2], merkle.NodeHash(l, r))
		n >>= 1
		if level+1 == TileHeight {
			t := next[len(next)-1]
			full = &t
		}
	}
	if TileHeight == 0 {
		full = &h
	}
	return next, full
}

// root is the tree hash of the edge: the subtrees folded from the right (RFC 6962's hash of a tree
// whose size is not a power of two).
func (e edge) root() tlog.Hash {
	if len(e) == 0 {
		return merkle.Root(nil)
	}
	h := e[len(e)-1]
	for i := len(e) - 2; i >= 0; i-- {
		h = merkle.NodeHash(e[i], h)
	}
	return h
}

// valid tells whether an edge can be the edge of a tree of size n: one hash per bit set.
func (e edge) valid(n int64) bool {
	bits := 0
	for m := n; m > 0; m &= m - 1 {
		bits++
	}
	return len(e) == bits
}

// hashSource gives the prover what the tree is made of: the hashes of full tiles and the leaf
// hashes within a tile.
type hashSource interface {
	// tileHash is the hash of full tile k.
	tileHash(k int64) (tlog.Hash, error)
	// leafHashes are the leaf hashes of tile k: TileLeaves of them for a full tile, fewer for the
	// tree's last, partial one.
	leafHashes(k int64) ([]tlog.Hash, error)
}

// hashReader serves tlog's stored hash indexes, for tlog.ProveRecord and tlog.ProveTree, from a
// hashSource: a subtree at level TileHeight or above from tile hashes, one below from leaf hashes.
type hashReader struct {
	src   hashSource
	tiles map[int64][]tlog.Hash // leafHashes read so far
}

func (r *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		h, err := r.subtree(level, n)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// subtree is the hash of the complete subtree at level over leaves [n<<level, (n+1)<<level).
func (r *hashReader) subtree(level int, n int64) (tlog.Hash, error) {
	if level >= TileHeight {
		if level == TileHeight {
			return r.src.tileHash(n)
		}
		l, err := r.subtree(level-1, 2*n)
		if err != nil {
			return tlog.Hash{}, err
		}
		rt, err := r.subtree(level-1, 2*n+1)
		if err != nil {
			return tlog.Hash{}, err
		}
		return merkle.NodeHash(l, rt), nil
	}
	first := n << level
	k := first / TileLeaves
	leaves, ok := r.tiles[k]
	if !ok {
		var err error
		if leaves, err = r.src.leafHashes(k); err != nil {
			return tlog.Hash{}, err
		}
		if r.tiles == nil {
			r.tiles = map[int64][]tlog.Hash{}
		}
		r.tiles[k] = leaves
	}
	lo, hi := first-k*TileLeaves, first-k*TileLeaves+1<<level
	if hi > int64(len(leaves)) {
		return tlog.Hash{}, fmt.Errorf("seal: tile %d has %d leaves, a proof asked for leaf %d", k, len(leaves), k*TileLeaves+hi-1)
	}
	return merkle.Root(leaves[lo:hi]), nil
}
