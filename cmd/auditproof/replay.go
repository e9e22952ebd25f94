package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
	"github.com/auditpipe/auditpipe/internal/testrig/esinspect"
)

// rawReplay measures what the node takes without the collector: it reads the events a run stored
// and writes them again, pre-encoded, into copies of the run's partitions (same mappings and
// settings, names under toPrefix instead of the run's prefix, same routing and _id), with 2
// connections and 5,000 documents per bulk request. It returns the events per second stored, and
// deletes the copies. It also returns the CPU time Elasticsearch spent meanwhile, read by esCPU.
func rawReplay(esURL string, lay *layout.Layout, toPrefix string, esCPU func() time.Duration) (float64, int, time.Duration, error) {
	bodies, indices, n, err := readForReplay(esURL, lay, toPrefix)
	if err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		for to := range indices {
			esDo(http.MethodDelete, esURL+"/"+to, "", nil)
		}
	}()
	// The copies get the source partitions' mappings, codec and index sort, as the template gave them.
	for to, from := range indices {
		var src map[string]struct {
			Mappings json.RawMessage `json:"mappings"`
		}
		if err := esDo(http.MethodGet, esURL+"/"+from+"/_mapping", "", &src); err != nil {
			return 0, 0, 0, err
		}
		var set map[string]struct {
			Settings map[string]json.RawMessage `json:"settings"`
		}
		if err := esDo(http.MethodGet, esURL+"/"+from+"/_settings/index.codec,index.sort.*?flat_settings=true", "", &set); err != nil {
			return 0, 0, 0, err
		}
		settings := `"number_of_shards":1,"number_of_replicas":0,"refresh_interval":"1s"`
		for k, v := range set[from].Settings {
			settings += fmt.Sprintf(`,%q:%s`, k, v)
		}
		body := fmt.Sprintf(`{"settings":{%s},"mappings":%s}`, settings, src[from].Mappings)
		if err := esPut(esURL+"/"+to, body); err != nil {
			return 0, 0, 0, err
		}
	}
	// The pipeline's partition may still be merging: replay on a quiet node, as the pipeline started.
	if err := esinspect.WaitMerged(esURL, 2*time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, "raw replay: starting anyway:", err)
	}
	work := make(chan []byte)
	errs := make(chan error, len(bodies))
	var wg sync.WaitGroup
	cpuBefore := esCPU()
	began := time.Now()
	for range 2 {
		wg.Go(func() {
			for b := range work {
				errs <- postBulk(esURL, b)
			}
		})
	}
	for _, b := range bodies {
		work <- b
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(began)
	cpu := esCPU() - cpuBefore
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, 0, 0, err
		}
	}
	return float64(n) / elapsed.Seconds(), n, cpu, nil
}

// readForReplay reads every stored event of the layout and encodes bulk bodies of 5,000 create
// actions. indices maps each copy's name to its source partition.
func readForReplay(esURL string, lay *layout.Layout, toPrefix string) (bodies [][]byte, indices map[string]string, n int, err error) {
	indices = map[string]string{}
	var cur bytes.Buffer
	err = esinspect.EachHit(esURL, lay.ReadIndices(), nil, func(h esinspect.Hit) error {
		to, ok := lay.Renamed(h.Index, toPrefix)
		if !ok {
			return fmt.Errorf("%s is not an index of the layout", h.Index)
		}
		indices[to] = h.Index
		action, _ := json.Marshal(map[string]any{"create": map[string]any{"_index": to, "_id": h.ID, "routing": h.Routing}})
		cur.Write(action)
		cur.WriteByte('\n')
		cur.Write(h.Source)
		cur.WriteByte('\n')
		n++
		if n%5000 == 0 {
			bodies = append(bodies, bytes.Clone(cur.Bytes()))
			cur.Reset()
		}
		return nil
	})
	if cur.Len() > 0 {
		bodies = append(bodies, bytes.Clone(cur.Bytes()))
	}
	return bodies, indices, n, err
}

// postBulk sends one bulk body; any item that is not created is an error (the copy must hold
// everything, or the rate means nothing).
func postBulk(esURL string, body []byte) error {
	var res struct {
		Errors bool `json:"errors"`
		Items  []struct {
			Create struct {
				Status int             `json:"status"`
				Error  json.RawMessage `json:"error"`
			} `json:"create"`
		} `json:"items"`
	}
	req, _ := http.NewRequest(http.MethodPost, esURL+"/_bulk?filter_path=errors,items.*.status,items.*.error", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	r, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("raw replay bulk: %s: %.300s", r.Status, b)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	if res.Errors {
		for _, it := range res.Items {
			if it.Create.Status != http.StatusCreated {
				return fmt.Errorf("raw replay bulk: item %d: %s", it.Create.Status, it.Create.Error)
			}
		}
	}
	return nil
}
