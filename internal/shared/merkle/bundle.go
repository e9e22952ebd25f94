package merkle

// The bundle: one team's log in one file that anyone verifies offline (docs/integrity.md, "Bundles").

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/auditpipe/auditpipe/internal/shared/jcs"
)

// BundleFormat names version 1 of the bundle in its header.
const BundleFormat = "auditpipe-bundle/1"

// Bundle is a team's log as a verifier needs it: the signed checkpoint, the hashes of its leaves
// [0, size), the events of the leaves [expired, size) in leaf order as the API returns them, and,
// when retention removed the first leaves, the signed statement of that removal.
//
// On disk a bundle is one NDJSON file, no archive around it, so that every byte is content: the
// header line, the RFC 8785 form of {"checkpoint": <note>, "expiry": <note, when there is one>,
// "format": "auditpipe-bundle/1", "hashes": <base64 of the leaf hashes, 32 bytes each, in leaf
// order>}, then one event per line, each exactly its leaf's data (LeafData: the API's event, its
// LeafFields only, in RFC 8785 form).
type Bundle struct {
	Checkpoint []byte      // the signed checkpoint note
	Expiry     []byte      // the signed expiry statement, or nil
	Edge       Edge        // with an expiry: the edge of the tree of the expired leaves [0, expired)
	Hashes     []tlog.Hash // leaf hashes [expired, size): [0, size) without an expiry
	Events     [][]byte    // events of leaves [expired, size), one JSON object each
}

type bundleHeader struct {
	Checkpoint string `json:"checkpoint"`
	Edge       string `json:"edge,omitempty"`
	Expiry     string `json:"expiry,omitempty"`
	Format     string `json:"format"`
	Hashes     string `json:"hashes"`
}

func joinHashes(hs []tlog.Hash) string {
	raw := make([]byte, 0, len(hs)*len(tlog.Hash{}))
	for _, h := range hs {
		raw = append(raw, h[:]...)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func splitHashes(s string) ([]tlog.Hash, bool) {
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(raw)%len(tlog.Hash{}) != 0 {
		return nil, false
	}
	hs := make([]tlog.Hash, len(raw)/len(tlog.Hash{}))
	for i := range hs {
		copy(hs[i][:], raw[i*len(tlog.Hash{}):])
	}
	return hs, true
}

// WriteBundle writes b in the bundle's file format. Each event is written as its leaf's data.
func WriteBundle(w io.Writer, b Bundle) error {
	bw, err := NewBundleWriter(w, b.Checkpoint, b.Expiry, b.Edge, b.Hashes)
	if err != nil {
		return err
	}
	for _, ev := range b.Events {
		if err := bw.Event(ev); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// BundleWriter writes a bundle whose events come one at a time: the header first, then each event
// as its leaf's data.
type BundleWriter struct{ w *bufio.Writer }

// NewBundleWriter writes the header of a bundle: its checkpoint, and, when retention removed the
// first leaves, the expiry statement and the edge of those leaves; the hashes of the leaves after.
func NewBundleWriter(w io.Writer, checkpoint, expiry []byte, edge Edge, hashes []tlog.Hash) (*BundleWriter, error) {
	head, err := Bundle{Checkpoint: checkpoint, Expiry: expiry, Edge: edge, Hashes: hashes}.header()
	if err != nil {
		return nil, err
	}
	bw := &BundleWriter{w: bufio.NewWriterSize(w, 1<<16)}
	bw.w.Write(head)
	bw.w.WriteByte('\n')
	return bw, nil
}

// Event writes the next leaf's event (the API's JSON of it).
func (bw *BundleWriter) Event(apiEvent []byte) error {
	line, err := LeafData(apiEvent)
	if err != nil {
		return fmt.Errorf("merkle: an event of the bundle: %w", err)
	}
	bw.w.Write(line)
	return bw.w.WriteByte('\n')
}

// Flush writes what is buffered.
func (bw *BundleWriter) Flush() error { return bw.w.Flush() }

// header is the bundle's first line, without its newline.
func (b Bundle) header() ([]byte, error) {
	h := bundleHeader{Checkpoint: string(b.Checkpoint), Expiry: string(b.Expiry), Format: BundleFormat, Hashes: joinHashes(b.Hashes)}
	if b.Expiry != nil {
		h.Edge = joinHashes(b.Edge)
	}
	head, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return jcs.Canonicalize(head)
}

// ReadBundle reads a bundle file. It checks the form only: that the header is exactly what
// WriteBundle writes for what it holds, and that every line ends with a newline. The events are
// returned as they are, to be verified one by one.
func ReadBundle(r io.Reader) (Bundle, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	line, err := readLine(br)
	if err == io.EOF {
		return Bundle{}, errors.New("merkle: the bundle is empty")
	}
	if err != nil {
		return Bundle{}, err
	}
	var h bundleHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return Bundle{}, fmt.Errorf("merkle: the bundle's header: %w", err)
	}
	if h.Format != BundleFormat {
		return Bundle{}, fmt.Errorf("merkle: the bundle's format is %q, this reads %q", h.Format, BundleFormat)
	}
	b := Bundle{Checkpoint: []byte(h.Checkpoint)}
	var ok bool
	if b.Hashes, ok = splitHashes(h.Hashes); !ok {
		return Bundle{}, errors.New("merkle: the bundle's hashes are not base64 of 32-byte hashes")
	}
	if h.Expiry != "" {
		b.Expiry = []byte(h.Expiry)
		if b.Edge, ok = splitHashes(h.Edge); !ok {
			return Bundle{}, errors.New("merkle: the bundle's edge is not base64 of 32-byte hashes")
		}
	}
	if want, err := b.header(); err != nil || !bytes.Equal(want, line) {
		return Bundle{}, errors.New("merkle: the bundle's header is not as written: its members, their RFC 8785 form")
	}
	for {
		line, err := readLine(br)
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return Bundle{}, err
		}
		b.Events = append(b.Events, line)
	}
}

// readLine returns the next line without its newline; io.EOF at the end, and an error for a last
// line without one.
func readLine(br *bufio.Reader) ([]byte, error) {
	l, err := br.ReadBytes('\n')
	switch {
	case err == io.EOF && len(l) == 0:
		return nil, io.EOF
	case err == io.EOF:
		return nil, errors.New("merkle: the bundle's last line does not end with a newline")
	case err != nil:
		return nil, fmt.Errorf("merkle: reading the bundle: %w", err)
	}
	return l[:len(l)-1], nil
}

// Expiry is the signed statement that retention removed a team's first leaves: the events of
// leaves [0, Size) are gone; their hashes, and so the tree, are not. Its note text:
//
//	<origin>/<team id>
//	expired
//	<size>
//	<base64 root of the tree of the first size leaves>
//	<time of the removal, RFC 3339 UTC>
//
// The root binds the statement to those leaves: it excuses their absence and nothing else.
type Expiry struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	At     time.Time
}

// Body is the statement's note text.
func (e Expiry) Body() string {
	return e.Origin + "\nexpired\n" + strconv.FormatInt(e.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(e.Root[:]) + "\n" +
		e.At.UTC().Format(time.RFC3339) + "\n"
}

// SignExpiry signs an expiry statement.
func SignExpiry(e Expiry, signers ...note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: e.Body()}, signers...)
}

// OpenExpiry verifies a signed expiry statement against the verifier keys and reads it.
func OpenExpiry(msg []byte, verifierKeys []string) (Expiry, error) {
	vs, err := Verifiers(verifierKeys)
	if err != nil {
		return Expiry{}, err
	}
	n, err := openNote(msg, vs)
	if err != nil {
		return Expiry{}, fmt.Errorf("merkle: expiry statement signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 6 || lines[1] != "expired" || lines[5] != "" {
		return Expiry{}, errors.New("merkle: not an expiry statement")
	}
	e := Expiry{Origin: lines[0]}
	if e.Size, err = strconv.ParseInt(lines[2], 10, 64); err != nil || e.Size < 0 || strconv.FormatInt(e.Size, 10) != lines[2] {
		return Expiry{}, fmt.Errorf("merkle: expiry size %q", lines[2])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[3])
	if err != nil || len(root) != len(e.Root) {
		return Expiry{}, fmt.Errorf("merkle: expiry root %q", lines[3])
	}
	copy(e.Root[:], root)
	if e.At, err = time.Parse(time.RFC3339, lines[4]); err != nil {
		return Expiry{}, fmt.Errorf("merkle: expiry time %q", lines[4])
	}
	return e, nil
}
