package auditelasticsearchexporter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/internal/estest"
)

// faultProxy sits in front of the real node. For the n-th bulk request, requestFault may answer 503
// without forwarding or drop the connection; otherwise itemFault may withhold the i-th item from
// Elasticsearch and answer it with a status of its own, as a node under pressure does.
type faultProxy struct {
	target       *url.URL
	rp           *httputil.ReverseProxy
	requestFault func(n int) string                // "503", "drop" or ""
	itemFault    func(n, i int, action []byte) int // an HTTP status, or 0 to forward
	mu           sync.Mutex
	n            int
	stats        map[string]int
}

// newFaultProxy answers every 4th bulk request with 503, drops the connection of every 7th, and in
// the others answers every 5th item 429.
func newFaultProxy(t *testing.T, target string) (*httptest.Server, *faultProxy) {
	u, err := url.Parse(target)
	require.NoError(t, err)
	p := &faultProxy{target: u, rp: httputil.NewSingleHostReverseProxy(u), stats: map[string]int{},
		requestFault: func(n int) string {
			switch {
			case n%4 == 0:
				return "503"
			case n%7 == 0:
				return "drop"
			}
			return ""
		},
		itemFault: func(_, i int, _ []byte) int {
			if i%5 == 4 {
				return http.StatusTooManyRequests
			}
			return 0
		},
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv, p
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/_bulk") {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	switch p.requestFault(n) {
	case "503":
		p.count("503")
		http.Error(w, `{"error":"injected unavailability"}`, http.StatusServiceUnavailable)
		return
	case "drop":
		p.count("dropped connection")
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	// Split the NDJSON into (action, document) pairs and withhold those itemFault picks.
	var lines [][]byte
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	var forward bytes.Buffer
	var withheld []int
	for i := 0; i+1 < len(lines); i += 2 {
		hold := p.itemFault(n, i/2, lines[i])
		withheld = append(withheld, hold)
		if hold == 0 {
			forward.Write(lines[i])
			forward.WriteByte('\n')
			forward.Write(lines[i+1])
			forward.WriteByte('\n')
		}
	}
	var items []json.RawMessage
	if forward.Len() > 0 {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, p.target.String()+r.URL.RequestURI(), &forward)
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		var br struct {
			Items []json.RawMessage `json:"items"`
		}
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || json.Unmarshal(raw, &br) != nil {
			w.WriteHeader(res.StatusCode)
			w.Write(raw)
			return
		}
		items = br.Items
	}
	out := make([]json.RawMessage, 0, len(withheld))
	for _, hold := range withheld {
		if hold != 0 {
			p.count(fmt.Sprintf("%d item", hold))
			out = append(out, json.RawMessage(fmt.Sprintf(`{"create":{"status":%d,"error":{"type":"injected_%d","reason":"injected"}}}`, hold, hold)))
			continue
		}
		out = append(out, items[0])
		items = items[1:]
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"errors": true, "items": out})
}

func (p *faultProxy) count(k string) {
	p.mu.Lock()
	p.stats[k]++
	p.mu.Unlock()
}

// TestFaultsEveryEventIndexedExactlyOnce sends events through the real exporterhelper (retry on
// failure, partial retries) and a faulty proxy: each event must end indexed exactly once.
func TestFaultsEveryEventIndexedExactlyOnce(t *testing.T) {
	proxy, faults := newFaultProxy(t, estest.URL(t))
	cfg := testConfig(t, proxy.URL)
	prefix := strings.TrimSuffix(cfg.IndexPrefix, "audit-")
	cfg.ItemRetry = ItemRetryConfig{MaxAttempts: 2, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond}
	cfg.BackOffConfig.InitialInterval = 10 * time.Millisecond
	cfg.BackOffConfig.MaxInterval = 50 * time.Millisecond
	cfg.BackOffConfig.MaxElapsedTime = 0 // never give up
	cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	require.NoError(t, cfg.Validate())

	f := NewFactory()
	exp, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))

	const teams, perTeam, batch = 5, 60, 50
	var bodies []string
	for i := 0; i < teams*perTeam; i++ {
		bodies = append(bodies, rawEvent(100+i%teams, "job_updated", fmt.Sprintf(`,"metadata":{"seq":%d}`, i)))
	}
	ld := normalized(t, bodies...)
	all := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
	for start := 0; start < all.Len(); start += batch {
		part := plog.NewLogs()
		ld.ResourceLogs().At(0).Resource().CopyTo(part.ResourceLogs().AppendEmpty().Resource())
		lrs := part.ResourceLogs().At(0).ScopeLogs().AppendEmpty().LogRecords()
		for i := start; i < start+batch && i < all.Len(); i++ {
			all.At(i).CopyTo(lrs.AppendEmpty())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		require.NoError(t, exp.ConsumeLogs(ctx, part))
		cancel()
	}
	require.NoError(t, exp.Shutdown(context.Background()))

	want := map[string]int{}
	for i := 0; i < teams; i++ {
		want[fmt.Sprintf("%saudit-%d", prefix, 100+i)] = perTeam
	}
	assert.Equal(t, want, indexCounts(t, cfg), "every event indexed exactly once, nothing quarantined")
	t.Logf("faults injected: %v", faults.stats)
	for _, k := range []string{"503", "dropped connection", "429 item"} {
		assert.Positive(t, faults.stats[k], "the proxy injected no %q", k)
	}
}

// TestShutdownFlushesTheQueue queues batches in exporterhelper's sending queue and shuts down at once:
// everything queued must be in Elasticsearch afterwards.
func TestShutdownFlushesTheQueue(t *testing.T) {
	cfg := testConfig(t, "")
	require.NoError(t, cfg.Validate())
	f := NewFactory()
	exp, err := f.CreateLogs(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	const batches, size = 10, 40
	for i := 0; i < batches; i++ {
		var bodies []string
		for j := 0; j < size; j++ {
			bodies = append(bodies, rawEvent(200+j%2, "job_created", fmt.Sprintf(`,"metadata":{"batch":%d,"seq":%d}`, i, j)))
		}
		require.NoError(t, exp.ConsumeLogs(context.Background(), normalized(t, bodies...)))
	}
	require.NoError(t, exp.Shutdown(context.Background()))
	prefix := cfg.IndexPrefix
	assert.Equal(t, map[string]int{prefix + "200": batches * size / 2, prefix + "201": batches * size / 2}, indexCounts(t, cfg))
}

// TestRefusedQuarantineDoesNotLoseTheRest: when the quarantine index refuses a document, the export
// fails permanently for that document only; the valid documents of the batch, even ones that needed
// a retry, are still delivered.
func TestRefusedQuarantineDoesNotLoseTheRest(t *testing.T) {
	proxy, faults := newFaultProxy(t, estest.URL(t))
	faults.requestFault = func(int) string { return "" }
	e, cfg := testExporter(t, proxy.URL, nil)
	quarantine := []byte(`"_index":"` + cfg.QuarantineIndex + `"`)
	faults.itemFault = func(n, _ int, action []byte) int {
		switch {
		case bytes.Contains(action, quarantine):
			return http.StatusBadRequest
		case n == 1:
			return http.StatusTooManyRequests // every event document fails its first attempt
		}
		return 0
	}
	ld := normalized(t, rawEvent(7, "job_created", ""), rawEvent("*", "job_created", ""), rawEvent(8, "job_created", ""))
	err := e.pushLogs(context.Background(), ld)
	require.Error(t, err)
	assert.True(t, consumererror.IsPermanent(err), "%v", err)
	var failed consumererror.Logs
	require.ErrorAs(t, err, &failed)
	assert.Equal(t, 1, failed.Data().LogRecordCount(), "only the refused quarantine record is handed back")
	assert.Equal(t, map[string]int{cfg.IndexPrefix + "7": 1, cfg.IndexPrefix + "8": 1}, indexCounts(t, cfg))
	assert.Equal(t, 2, faults.stats["429 item"])
	assert.Positive(t, faults.stats["400 item"])
}
