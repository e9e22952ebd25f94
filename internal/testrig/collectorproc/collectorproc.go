// Package collectorproc runs the built collector distribution as a child process, for the end-to-end
// tests and the reliability scenarios: start with config.example.yaml and an environment, wait for
// health, stop with SIGTERM, kill with SIGKILL, and read its CPU time and peak memory.
package collectorproc

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Env is the environment config.example.yaml reads, on free ports.
type Env struct {
	ESURL, Prefix, StorageDir          string
	GRPC, HTTP, Health, MetricsAddress string
	PProf                              string   // the pprof extension's address
	Extra                              []string // more NAME=value entries; later entries win
}

// NewEnv picks free loopback ports for a collector writing under prefix.
func NewEnv(esURL, prefix, storageDir string) (Env, error) {
	e := Env{ESURL: esURL, Prefix: prefix, StorageDir: storageDir}
	for _, p := range []*string{&e.GRPC, &e.HTTP, &e.Health, &e.MetricsAddress, &e.PProf} {
		addr, err := freePort()
		if err != nil {
			return e, err
		}
		*p = addr
	}
	return e, nil
}

// freePort finds a port no one listens on, below the kernel's ephemeral range: a port picked from
// that range (by listening on :0) may be handed to an outgoing connection of any process before
// the collector binds it ("address already in use" at start-up); one below it can only be taken by
// another listener.
func freePort() (string, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low > 11000 {
		for range 100 {
			addr := fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(low-10000))
			if l, err := net.Listen("tcp", addr); err == nil {
				l.Close()
				return addr, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0") // no room below the range: the kernel's choice
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Layout is the layout the collector writes with: config.example.yaml's, under the run's prefix.
func (e Env) Layout() *layout.Layout {
	lay, err := layout.New(e.Prefix+layout.DefaultPrefix, e.Prefix+layout.DefaultQuarantine, layout.NewDefaultConfig())
	if err != nil {
		panic(err) // the prefixes are the caller's constants
	}
	return lay
}

// List renders the environment of the collector process.
func (e Env) List() []string {
	return append(append(os.Environ(),
		"ES_URL="+e.ESURL,
		"AUDIT_STORAGE_DIR="+e.StorageDir,
		"AUDIT_INDEX_PREFIX="+e.Prefix+layout.DefaultPrefix,
		"AUDIT_QUARANTINE_INDEX="+e.Prefix+layout.DefaultQuarantine,
		"OTLP_GRPC_ENDPOINT="+e.GRPC,
		"OTLP_HTTP_ENDPOINT="+e.HTTP,
		"HEALTH_ENDPOINT="+e.Health,
		"PPROF_ENDPOINT="+e.PProf,
		"METRICS_PORT="+e.MetricsAddress[strings.LastIndex(e.MetricsAddress, ":")+1:],
	), e.Extra...)
}

// Metric sums every series of a metric on the collector's Prometheus endpoint (a counter's _total
// name included); found says whether the collector exposes it at all.
func (e Env) Metric(name string) (sum float64, found bool, err error) {
	port := e.MetricsAddress[strings.LastIndex(e.MetricsAddress, ":")+1:]
	c := http.Client{Timeout: 30 * time.Second}
	res, err := c.Get("http://127.0.0.1:" + port + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		series := line[:max(strings.IndexAny(line, "{ "), 0)]
		if series != name && series != name+"_total" {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum, found = sum+f, true
		}
	}
	return sum, found, sc.Err()
}

// Proc is a running collector.
type Proc struct {
	Cmd     *exec.Cmd
	LogPath string
	done    chan error
}

// Start runs bin with config and env, logging to logPath, and waits up to a minute for health.
func Start(bin string, configs []string, env Env, logPath string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, c := range configs { // later files override earlier ones
		args = append(args, "--config", c)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env.List()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &Proc{Cmd: cmd, LogPath: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("collector exited during start-up (%v); log: %s", err, logPath)
		default:
		}
		if res, err := http.Get("http://" + env.Health + "/"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Kill()
	return nil, fmt.Errorf("collector not healthy after a minute; log: %s", logPath)
}

// Stop sends SIGTERM and waits up to a minute for a clean exit.
func (p *Proc) Stop() error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(time.Minute):
		p.Kill()
		return fmt.Errorf("collector did not stop within a minute of SIGTERM; log: %s", p.LogPath)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	err := <-p.done
	p.done <- err
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// Usage is the CPU time and peak resident memory of a running collector, from /proc.
type Usage struct {
	CPU     time.Duration
	PeakRSS int64 // bytes (VmHWM)
}

// ReadUsage reads the process's usage so far.
func (p *Proc) ReadUsage() (Usage, error) { return ProcessUsage(p.Cmd.Process.Pid) }

// ProcessUsage reads the usage so far of any process of this machine (Linux).
func ProcessUsage(pid int) (Usage, error) {
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	u.CPU = time.Duration(utime+stime) * time.Second / ticks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			u.PeakRSS = kb * 1024
		}
	}
	return u, nil
}
