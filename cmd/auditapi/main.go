// Command auditapi serves the audit log API: customers read and export their own team's log with a
// key an operator minted with `auditctl keys create`. See /v1/openapi.json.
//
//	auditapi [--listen 127.0.0.1:8090] [--es-url URL] [--config collector.yaml] [--rate-limit 10]
//	         [--tls-cert FILE --tls-key FILE] [--verifier-keys FILE] [--seal-key FILE] [--seal-index auditseal]
//
// It reads where the collector writes: with --config (AUDIT_COLLECTOR_CONFIG) the index names, the
// layout and the catalog come from the collector's configuration; without, the exporter's defaults
// and the embedded catalog.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/internal/recorder"
	"github.com/auditpipe/auditpipe/internal/seal"
	"github.com/auditpipe/auditpipe/internal/shared/merkle"
	"github.com/auditpipe/auditpipe/internal/tenantapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "auditapi:", err)
		}
		os.Exit(1)
	}
}

// run serves until ctx ends. ready, if set, is told the address once it listens.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("auditapi", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", recorder.Env("AUDITAPI_LISTEN", "127.0.0.1:8090"), "address to listen on (AUDITAPI_LISTEN)")
	rate := fs.Float64("rate-limit", 10, "requests a second per key; bursts of twice that")
	cert := fs.String("tls-cert", "", "PEM certificate file: serve HTTPS (with --tls-key)")
	key := fs.String("tls-key", "", "PEM private key file of --tls-cert")
	verifierKeys := fs.String("verifier-keys", recorder.Env("AUDITAPI_VERIFIER_KEYS", ""), "file of the verifier keys that sign the teams' Merkle logs, one per line, served at GET /v1/verifier-keys (AUDITAPI_VERIFIER_KEYS)")
	keysIndex := tenantapi.KeysIndexFlag(fs)
	sealIndex := seal.IndexFlag(fs)
	sealer := seal.RegisterSealerFlags(fs, "the signer key file (auditctl seal keygen): this server also seals every team's log")
	connect := recorder.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *rate <= 0 {
		return fmt.Errorf("--rate-limit: %g, must be above 0", *rate)
	}
	if (*cert == "") != (*key == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	var vkeys []string
	if *verifierKeys != "" {
		b, err := os.ReadFile(*verifierKeys)
		if err != nil {
			return fmt.Errorf("--verifier-keys: %w", err)
		}
		if vkeys = merkle.VerifierKeys(b); len(vkeys) == 0 {
			return fmt.Errorf("--verifier-keys: %s holds no key", *verifierKeys)
		}
		if _, err := merkle.Verifiers(vkeys); err != nil {
			return fmt.Errorf("--verifier-keys: %w", err)
		}
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	c, err := connect.Client()
	if err != nil {
		return err
	}
	keys, err := tenantapi.NewKeys(c, *keysIndex)
	if err != nil {
		return err
	}
	pcfg, err := connect.ProcessorConfig(ctx)
	if err != nil {
		return err
	}
	store, err := seal.NewStore(c, *sealIndex)
	if err != nil {
		return fmt.Errorf("--seal-index: %w", err)
	}
	if sealer.Enabled() {
		sl, err := sealer.Sealer(store)
		if err != nil {
			return err
		}
		sl.SetLogger(log)
		go sl.Run(ctx)
		log.Info("sealing every team's log", "index", store.Index(), "interval", sealer.Interval.String())
	}
	rec, err := recorder.New(ctx, c, pcfg)
	if err != nil {
		return fmt.Errorf("starting the recorder of access events: %w", err)
	}
	defer rec.Close()

	srv := &http.Server{
		Handler:           tenantapi.New(tenantapi.Config{Client: c, Keys: keys, Recorder: rec, RateLimit: *rate, Logger: log, VerifierKeys: vkeys, Seal: seal.NewLog(store)}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// No WriteTimeout: an export streams for as long as the log takes; each write has its own.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	scheme := "http"
	if *cert != "" {
		scheme = "https"
	}
	log.Info("audit log API listening", "url", scheme+"://"+ln.Addr().String(), "elasticsearch", c.Conn().URLs, "index_prefix", c.Layout().Prefix(), "keys_index", *keysIndex, "rate_limit", *rate)
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() {
		if *cert != "" {
			errc <- srv.ServeTLS(ln, *cert, *key)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
