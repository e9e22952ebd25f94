// Package faultproxy is an HTTP proxy in front of a real Elasticsearch node that injects the faults
// of a node under pressure into bulk requests: whole requests answered 503, dropped connections,
// items withheld and answered 429 (or any status), and slow answers. Everything else passes through.
package faultproxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Proxy forwards to Target. For the n-th bulk request (from 1), RequestFault may answer "503" without
// forwarding, "drop" the connection without forwarding, or "drop-answer": forward the request, let
// Elasticsearch store it, and drop the connection instead of answering (the client must redeliver,
// and the redelivery must be recognised); otherwise ItemFault may withhold the i-th item from
// Elasticsearch and answer it with a status of its own (0 forwards it). Delay holds every bulk answer
// back, as a slow node does. The fault functions may be changed while no request is in flight.
type Proxy struct {
	RequestFault func(n int) string
	ItemFault    func(n, i int, action []byte) int
	Delay        time.Duration

	target *url.URL
	rp     *httputil.ReverseProxy
	mu     sync.Mutex
	n      int
	stats  map[string]int
}

// New returns a proxy to target that injects nothing until its fault functions are set.
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	return &Proxy{
		target:       u,
		rp:           httputil.NewSingleHostReverseProxy(u),
		stats:        map[string]int{},
		RequestFault: func(int) string { return "" },
		ItemFault:    func(int, int, []byte) int { return 0 },
	}, nil
}

// Stats counts the faults injected so far, by kind ("503", "dropped connection", "429 item", …).
func (p *Proxy) Stats() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.stats)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/_bulk") {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if p.Delay > 0 {
		p.count("delayed")
		time.Sleep(p.Delay)
	}
	switch p.RequestFault(n) {
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
	case "drop-answer":
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, p.target.String()+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			p.count("answer dropped after store")
		}
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
		hold := p.ItemFault(n, i/2, lines[i])
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

func (p *Proxy) count(k string) {
	p.mu.Lock()
	p.stats[k]++
	p.mu.Unlock()
}
