package loadgen

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// sink is an OTLP logs server that keeps what it receives, failing the first request it is sent.
type sink struct {
	plogotlp.UnimplementedGRPCServer
	mu     sync.Mutex
	failed bool
	got    []plogotlp.ExportRequest
}

func (s *sink) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed {
		s.failed = true
		return plogotlp.NewExportResponse(), assert.AnError
	}
	s.got = append(s.got, req)
	return plogotlp.NewExportResponse(), nil
}

func TestPrebuiltSendsDistinctEventsAndCountsWhatWasAcknowledged(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	s := &sink{}
	plogotlp.RegisterGRPCServer(srv, s)
	go srv.Serve(lis)
	defer srv.Stop()

	lay, err := layout.New(layout.DefaultPrefix, layout.DefaultQuarantine, layout.NewDefaultConfig())
	require.NoError(t, err)
	// More requests than templates: the first is sent again, with new ids.
	cfg := Config{Endpoint: lis.Addr().String(), Count: 10, Batch: 5, Teams: 3, Zipf: true, Route: lay}
	cfg.Prebuilt, err = Prebuild(cfg)
	require.NoError(t, err)
	require.Len(t, cfg.Prebuilt.templates, 2)
	cfg.Count = 12
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.EqualValues(t, 15, res.Sent, "whole requests of 5, until 12 are sent")
	assert.EqualValues(t, 1, res.Retries, "the refused request is sent again")
	require.Len(t, res.Acked, 15)

	seen := map[string]bool{}
	for _, req := range s.got {
		rl := req.Logs().ResourceLogs().At(0)
		sl := rl.ScopeLogs().At(0)
		for _, lr := range sl.LogRecords().All() {
			idV, _ := lr.Attributes().Get(audit.AttrID)
			id := idV.Str()
			u, err := uuid.Parse(id)
			require.NoError(t, err, id)
			assert.EqualValues(t, 7, u.Version())
			assert.False(t, seen[id], "id %s sent twice", id)
			seen[id] = true
			body := lr.Body().Map()
			team, _ := body.Get(audit.FieldTeamID)
			assert.Equal(t, res.Acked[id].Team, team.Str())
			docID, _ := lr.Attributes().Get("elasticsearch.document_id")
			assert.Equal(t, layout.DocID(team.Str(), id), docID.Str(), "the routed _id carries the new id too")
			assert.Equal(t, audit.EventNamePrefix, lr.EventName()[:len(audit.EventNamePrefix)])
		}
	}
	assert.Len(t, seen, 15)
}
