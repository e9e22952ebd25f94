// Package jcs is the JSON Canonicalization Scheme of RFC 8785: the one byte form of a JSON value
// that the per-team Merkle logs hash, so that anyone with an RFC 8785 library in any language
// rebuilds the same bytes from the same event.
//
// The rules (RFC 8785, section 3.2): no white space; object members sorted by their names compared
// as arrays of UTF-16 code units; strings as ECMAScript's JSON.stringify writes them (only '"', '\'
// and the control characters escaped, \b \t \n \f \r where they exist, else \u00xx in lowercase
// hex; everything else as UTF-8); numbers as IEEE 754 doubles written as ECMAScript's
// Number.prototype.toString writes them; literals as they are.
package jcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting, so that no input exhausts the stack.
const maxDepth = 1000

// Canonicalize returns the RFC 8785 form of one JSON value. It refuses what RFC 8785 leaves
// undefined: invalid JSON, duplicate member names, numbers outside the range of a double, and
// strings that are not valid Unicode.
func Canonicalize(in []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(in))
	d.UseNumber()
	out, err := value(d, nil, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("jcs: data after the JSON value")
	}
	return out, nil
}

func value(d *json.Decoder, b []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("jcs: nested too deep")
	}
	tok, err := d.Token()
	if err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return object(d, b, depth)
		case '[':
			b = append(b, '[')
			for i := 0; d.More(); i++ {
				if i > 0 {
					b = append(b, ',')
				}
				if b, err = value(d, b, depth+1); err != nil {
					return nil, err
				}
			}
			if _, err := d.Token(); err != nil {
				return nil, fmt.Errorf("jcs: %w", err)
			}
			return append(b, ']'), nil
		}
		return nil, fmt.Errorf("jcs: unexpected %q", t)
	case string:
		return AppendString(b, t)
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("jcs: number %s is not a finite double", t)
		}
		return AppendNumber(b, f), nil
	case bool:
		return strconv.AppendBool(b, t), nil
	case nil:
		return append(b, "null"...), nil
	}
	return nil, fmt.Errorf("jcs: unexpected token %v", tok)
}

type member struct {
	name  string
	key   []uint16 // the name in UTF-16 code units: RFC 8785's sort order
	value []byte   // the canonical name and value, "name":value
}

func object(d *json.Decoder, b []byte, depth int) ([]byte, error) {
	var members []member
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("jcs: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("jcs: member name %v is not a string", tok)
		}
		m := member{name: name, key: utf16.Encode([]rune(name))}
		if m.value, err = AppendString(nil, name); err != nil {
			return nil, err
		}
		m.value = append(m.value, ':')
		if m.value, err = value(d, m.value, depth+1); err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	if _, err := d.Token(); err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	slices.SortFunc(members, func(x, y member) int { return slices.Compare(x.key, y.key) })
	b = append(b, '{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].name == m.name {
				return nil, fmt.Errorf("jcs: duplicate member name %q", m.name)
			}
			b = append(b, ',')
		}
		b = append(b, m.value...)
	}
	return append(b, '}'), nil
}

// AppendString appends s as RFC 8785 writes a string. It refuses invalid UTF-8 (encoding/json
// decodes invalid input and lone surrogate escapes to U+FFFD, so a decoded string is always valid).
func AppendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("jcs: string %q is not valid UTF-8", s)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		case c == '\b':
			b = append(b, `\b`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\f':
			b = append(b, `\f`...)
		case c == '\r':
			b = append(b, `\r`...)
		default:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		}
	}
	return append(b, '"'), nil
}

// AppendNumber appends f as ECMAScript's Number.prototype.toString writes it (RFC 8785, section
// 3.2.2.3): the shortest decimal digits that read back as f, in plain notation from 1e-6 up to
// 1e21 and in exponent notation outside. f must be finite.
func AppendNumber(b []byte, f float64) []byte {
	if f == 0 { // and -0
		return append(b, '0')
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	// Go's shortest round-trip digits are ECMAScript's: the fewest digits, and of those the closest.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d[.ddd]e±xx
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1 // f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		b = append(b, digits...)
		for range n - k {
			b = append(b, '0')
		}
	case 0 < n && n <= 21:
		b = append(b, digits[:n]...)
		b = append(b, '.')
		b = append(b, digits[n:]...)
	case -6 < n && n <= 0:
		b = append(b, "0."...)
		for range -n {
			b = append(b, '0')
		}
		b = append(b, digits...)
	default:
		b = append(b, digits[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if n-1 > 0 {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(n-1), 10)
	}
	return b
}
