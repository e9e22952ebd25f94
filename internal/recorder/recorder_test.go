package recorder

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/query"
)

// TestRecorderSharesPassesAmongConcurrentCalls: events recorded at once by many goroutines are each
// stored once with the id Record returned; an invalid one fails alone.
func TestRecorderSharesPassesAmongConcurrentCalls(t *testing.T) {
	c := testClient(t)
	rec, err := New(context.Background(), c, nil)
	require.NoError(t, err)
	defer rec.Close()
	const n = 40
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = rec.Record(context.Background(), audit.Event{Action: audit.ActionJobCreated, TeamID: "71", Actor: auditlog.System(), Metadata: map[string]any{"i": i}})
		}()
	}
	_, badErr := rec.Record(context.Background(), audit.Event{Action: "Not An Action", TeamID: "71", Actor: auditlog.System()})
	wg.Wait()
	assert.Error(t, badErr)
	for i := range errs {
		require.NoError(t, errs[i])
	}
	refresh(t, c)
	docs, _, err := c.Page(context.Background(), query.Filter{Team: "71"}, query.Asc, 1000, nil)
	require.NoError(t, err)
	stored := map[string]int{}
	for _, d := range docs {
		ev, err := document.ToAPI(d)
		require.NoError(t, err)
		stored[ev.ID]++
	}
	assert.Len(t, stored, n)
	for _, id := range ids {
		assert.Equal(t, 1, stored[id], id)
	}
}
