package auditelasticsearchexporter

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
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

	"github.com/auditpipe/auditpipe/internal/testrig/estest"
	"github.com/auditpipe/auditpipe/internal/testrig/faultproxy"
)

// newFaultProxy answers every 4th bulk request with 503, drops the connection of every 7th, forwards
// every 9th and drops its answer after Elasticsearch stored it, and in the others answers every 5th
// item 429.
func newFaultProxy(t *testing.T, target string) (*httptest.Server, *faultproxy.Proxy) {
	p, err := faultproxy.New(target)
	require.NoError(t, err)
	p.RequestFault = func(n int) string {
		switch {
		case n%4 == 0:
			return "503"
		case n%7 == 0:
			return "drop"
		case n%9 == 0:
			return "drop-answer"
		}
		return ""
	}
	p.ItemFault = func(_, i int, _ []byte) int {
		if i%5 == 4 {
			return http.StatusTooManyRequests
		}
		return 0
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv, p
}

// TestFaultsEveryEventIndexedExactlyOnce sends events through the real exporterhelper (retry on
// failure, partial retries) and a faulty proxy: each event must end indexed exactly once, including
// those stored whose answer was lost (redelivered, answered 409, verified as duplicates).
func TestFaultsEveryEventIndexedExactlyOnce(t *testing.T) {
	proxy, faults := newFaultProxy(t, estest.URL(t))
	cfg := testConfig(t, proxy.URL)
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
		want[strconv.Itoa(100+i)] = perTeam
	}
	assert.Equal(t, want, teamCounts(t, cfg), "every event indexed exactly once, nothing quarantined")
	t.Logf("faults injected: %v", faults.Stats())
	for _, k := range []string{"503", "dropped connection", "429 item", "answer dropped after store"} {
		assert.Positive(t, faults.Stats()[k], "the proxy injected no %q", k)
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
	assert.Equal(t, map[string]int{"200": batches * size / 2, "201": batches * size / 2}, teamCounts(t, cfg))
}

// TestRefusedQuarantineDoesNotLoseTheRest: when the quarantine index refuses a document, that record
// goes back to exporterhelper in a retryable error (never a permanent one, which drops data); the
// valid documents of the batch, even ones that needed a retry, are delivered.
func TestRefusedQuarantineDoesNotLoseTheRest(t *testing.T) {
	proxy, faults := newFaultProxy(t, estest.URL(t))
	faults.RequestFault = func(int) string { return "" }
	e, cfg := testExporter(t, proxy.URL, nil)
	quarantine := []byte(`"_index":"` + cfg.QuarantineIndex + `"`)
	refuse := true
	faults.ItemFault = func(n, _ int, action []byte) int {
		switch {
		case bytes.Contains(action, quarantine) && refuse:
			return http.StatusBadRequest
		case n == 1:
			return http.StatusTooManyRequests // every event document fails its first attempt
		}
		return 0
	}
	ld := normalized(t, rawEvent(7, "job_created", ""), rawEvent("*", "job_created", ""), rawEvent(8, "job_created", ""))
	err := e.pushLogs(context.Background(), ld)
	require.Error(t, err)
	assert.False(t, consumererror.IsPermanent(err), "%v", err)
	failed := retried(t, err)
	assert.Equal(t, 1, failed.ItemsCount(), "only the refused quarantine record is handed back")
	assert.Equal(t, map[string]int{"7": 1, "8": 1}, teamCounts(t, cfg))
	assert.Equal(t, 2, faults.Stats()["429 item"])
	assert.Positive(t, faults.Stats()["400 item"])

	// Once the quarantine index takes documents again, exporterhelper's retry stores the record.
	refuse = false
	require.NoError(t, e.push(context.Background(), failed))
	refresh(t, cfg.QuarantineIndex)
	assert.Len(t, search(t, cfg.QuarantineIndex), 1)
}
