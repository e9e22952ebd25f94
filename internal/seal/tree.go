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

// hashSource gives the prover what the tree is made of: the hashes of full tiles and the leaf
// hashes within a tile.
type hashSource interface {
	// tileHash is the hash of full tile k.
	tileHash(k int64) (tlog.Hash, error)
	// leafHashesFrom are the leaf hashes of tile k from leaf from (its first, or the first that
	// did not expire) to its end: the tile's last leaf, or the tree's.
	leafHashesFrom(k, from int64) ([]tlog.Hash, error)
}

// hashReader serves tlog's stored hash indexes, for tlog.ProveRecord and tlog.ProveTree, from a
// hashSource: a subtree at level TileHeight or above from tile hashes, one below from leaf hashes.
type hashReader struct {
	src     hashSource
	tiles   map[int64][]tlog.Hash // leafHashes read so far
	expired int64                 // leaves [0, expired) have no events: edge holds their subtrees
	edge    merkle.Edge
}

// edgePiece is the subtree [lo, hi) of the expired leaves, when it is one of their edge's.
func (r *hashReader) edgePiece(lo, hi int64) (tlog.Hash, error) {
	start := int64(0)
	for i, bit := 0, int64(1)<<62; bit > 0; bit >>= 1 {
		if r.expired&bit == 0 {
			continue
		}
		if start == lo && start+bit == hi {
			return r.edge[i], nil
		}
		start += bit
		i++
	}
	return tlog.Hash{}, fmt.Errorf("seal: the leaves [%d, %d) expired: a proof that needs them cannot be made", lo, hi)
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
// Below a log's expired leaves only the subtrees of their edge are known.
func (r *hashReader) subtree(level int, n int64) (tlog.Hash, error) {
	lo, hi := n<<level, (n+1)<<level
	if e := r.expired; lo < e && level != TileHeight {
		if hi <= e {
			return r.edgePiece(lo, hi)
		}
		if level < TileHeight { // straddles the expired range: from its halves
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
	}
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
	k := lo / TileLeaves
	// The tile's leaves from the first that has its event: all of them unless some expired.
	from := max(k*TileLeaves, r.expired)
	leaves, ok := r.tiles[k]
	if !ok {
		var err error
		if leaves, err = r.src.leafHashesFrom(k, from); err != nil {
			return tlog.Hash{}, err
		}
		if r.tiles == nil {
			r.tiles = map[int64][]tlog.Hash{}
		}
		r.tiles[k] = leaves
	}
	a, b := lo-from, hi-from
	if b > int64(len(leaves)) {
		return tlog.Hash{}, fmt.Errorf("seal: tile %d has %d leaves from %d, a proof asked for leaf %d", k, len(leaves), from, hi-1)
	}
	return merkle.Root(leaves[a:b]), nil
}
