package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/auditpipe/auditpipe/internal/document"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
)

// footprint measures, on the default node, what the two ways of giving each team its own name cost
// the cluster: an index per team (the previous layout) and a filtered, routed alias per team over a
// shared partition (the alternative to a data view with a team_id filter). docs/layout.md uses the
// figures.
func footprint(e env) bool {
	prefix := fmt.Sprintf("footprint-%d-", os.Getpid())
	lay, err := layout.New(prefix+layout.DefaultPrefix, prefix+layout.DefaultQuarantine, layout.NewDefaultConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return false
	}
	defer esinspect.DeleteAll(e.esURL, prefix)
	base, err := esinspect.Measure(e.esURL, prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return false
	}
	fmt.Fprintf(e.out, "cluster state before: %d KiB, %d shards\n\n", base.StateBytes>>10, base.AllShards)

	// An index per team, as the previous layout created them: one shard, no replica, the event mapping.
	const indices = 400
	body := `{"settings":{"number_of_shards":1,"number_of_replicas":0},"mappings":` + document.EventMappings + `}`
	began := time.Now()
	for i := 0; i < indices; i++ {
		if err := esPut(e.esURL+"/"+lay.Legacy(fmt.Sprint(100000+i)), body); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
	}
	perIndex := time.Since(began) / indices
	after, err := esinspect.Measure(e.esURL, prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return false
	}
	fmt.Fprintf(e.out, "index per team: %d indices add %d KiB of cluster state (%.1f KiB per team) and %d shards; creating one takes %s\n\n",
		indices, (after.StateBytes-base.StateBytes)>>10, float64(after.StateBytes-base.StateBytes)/indices/1024, after.Shards, perIndex.Round(time.Millisecond))
	esinspect.DeleteAll(e.esURL, prefix)

	// A filtered, routed alias per team over one shared partition.
	partition := lay.Index("1", time.Now())
	if err := esPut(e.esURL+"/"+partition, body); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return false
	}
	start, _ := esinspect.Measure(e.esURL, prefix)
	// GET _cluster/state lists an alias by name only; GET _alias shows what the cluster keeps of it
	// (filter and routing), which every node holds in its cluster state.
	fmt.Fprintf(e.out, "%8s %18s %22s %24s %28s\n", "aliases", "cluster state KiB", "state per alias bytes", "alias metadata per alias", "add one alias (mean of 20)")
	const batch = 500
	total := 0
	for _, upTo := range []int{1000, 2500, 5000, 10000} {
		for total < upTo {
			var actions []any
			for i := 0; i < batch; i++ {
				actions = append(actions, aliasAction(lay, partition, total+i))
			}
			total += batch
			if err := esDo(http.MethodPost, e.esURL+"/_aliases", mustJSON(map[string]any{"actions": actions}), nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return false
			}
		}
		// One more alias at a time, as lazily created aliases would be added.
		began := time.Now()
		for i := 0; i < 20; i++ {
			if err := esDo(http.MethodPost, e.esURL+"/_aliases", mustJSON(map[string]any{"actions": []any{aliasAction(lay, partition, 1_000_000+upTo+i)}}), nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return false
			}
		}
		one := time.Since(began) / 20
		m, err := esinspect.Measure(e.esURL, prefix)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		var aliases json.RawMessage
		if err := esDo(http.MethodGet, e.esURL+"/"+partition+"/_alias", "", &aliases); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		fmt.Fprintf(e.out, "%8d %18d %22d %24d %28s\n", upTo, m.StateBytes>>10, (m.StateBytes-start.StateBytes)/(upTo+20), len(aliases)/(upTo+20), one.Round(time.Millisecond))
	}
	return true
}

// aliasAction adds the alias a team would get: its old index name, filtered and routed to it.
func aliasAction(lay *layout.Layout, index string, i int) map[string]any {
	team := fmt.Sprint(100000 + i)
	return map[string]any{"add": map[string]any{
		"index": index, "alias": lay.Legacy(team), "routing": team,
		"filter": map[string]any{"term": map[string]any{"team_id": team}},
	}}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
