// Command jobs-service is an example service that records audit events with the auditlog package and
// sends them over OTLP/gRPC to the audit collector.
//
//	go run ./examples/jobs-service                 # serve PUT /teams/{team}/jobs/{job}/access/{user}
//	go run ./examples/jobs-service -demo           # emit the specification's sample record once and
//	                                               # print the document it became in Elasticsearch
//
// A request such as
//
//	curl -X PUT -H 'X-User-Id: 445177' -H 'X-User-Email: ann+oats@gem.com' \
//	  'http://127.0.0.1:8080/teams/191796/jobs/313520/access/506607?level=7349&previous=7347'
//
// emits job_user_access_changed with the actor, the three targets, the request's addresses and user
// agent, and the previous access level, as in the specification's sample.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	neturl "net/url"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

func main() {
	otlp := flag.String("otlp", "127.0.0.1:4317", "the audit collector's OTLP/gRPC endpoint")
	listen := flag.String("listen", "127.0.0.1:8080", "where the example service listens")
	demo := flag.Bool("demo", false, "emit the specification's sample record, show its document, and exit")
	flag.Parse()

	ctx := context.Background()
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(*otlp), otlploggrpc.WithInsecure())
	if err != nil {
		log.Fatal(err)
	}
	res := resource.NewSchemaless(semconv.ServiceName("jobs-service"))
	// A batch processor: emitting never waits for the network; Shutdown flushes.
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	defer func() {
		if err := provider.Shutdown(context.Background()); err != nil {
			log.Printf("flushing audit events: %v", err)
		}
	}()
	al := auditlog.New(provider)

	if *demo {
		if err := runDemo(ctx, al, provider); err != nil {
			log.Fatal(err)
		}
		return
	}
	http.HandleFunc("PUT /teams/{team}/jobs/{job}/access/{user}", func(w http.ResponseWriter, r *http.Request) {
		level, _ := strconv.Atoi(r.URL.Query().Get("level"))
		previous, _ := strconv.Atoi(r.URL.Query().Get("previous"))
		job, user := r.PathValue("job"), r.PathValue("user")
		ev := audit.Event{
			Action: audit.ActionJobUserAccessChanged,
			TeamID: r.PathValue("team"),
			Actor:  auditlog.User(r.Header.Get("X-User-Id"), r.Header.Get("X-User-Email"), r.Header.Get("X-User-Name")),
			Targets: []audit.Target{
				{Type: "job_user_access", ID: job + "-" + user, Metadata: map[string]any{"job_id": job, "user_id": user, "access_level_id": level}},
				{Type: "job", ID: job},
				{Type: "user", ID: user},
			},
			Metadata: map[string]any{"previous_access_level_id": previous},
		}
		auditlog.FromRequest(&ev, r)
		id, err := al.Emit(r.Context(), ev)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "audit event %s\n", id)
	})
	log.Printf("jobs-service on http://%s, audit events to %s", *listen, *otlp)
	log.Fatal(http.ListenAndServe(*listen, nil))
}

// runDemo emits the specification's sample record and polls Elasticsearch until its document appears.
func runDemo(ctx context.Context, al *auditlog.Logger, provider *sdklog.LoggerProvider) error {
	ev := audit.SampleEvent()
	ev.Time = time.Now()
	id, err := al.Emit(ctx, ev)
	if err != nil {
		return err
	}
	if err := provider.ForceFlush(ctx); err != nil {
		return fmt.Errorf("sending to the collector: %w", err)
	}
	es := os.Getenv("ES_URL")
	if es == "" {
		es = "http://127.0.0.1:9200"
	}
	// Where the collector's default layout puts it: the shared partition of its month, routed by team.
	lay, err := layout.New(layout.DefaultPrefix, layout.DefaultQuarantine, layout.NewDefaultConfig())
	if err != nil {
		return err
	}
	url := es + "/" + lay.Index(ev.TeamID, ev.Time) + "/_doc/" + neturl.PathEscape(layout.DocID(ev.TeamID, id)) + "?routing=" + ev.TeamID
	fmt.Fprintf(os.Stderr, "sent event %s; waiting for %s\n", id, url)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				var doc map[string]any
				if err := json.Unmarshal(b, &doc); err != nil {
					return err
				}
				out, _ := json.MarshalIndent(doc, "", "  ")
				fmt.Println(string(out))
				return nil
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("no document at %s after 30s: is `make run` running?", url)
}
