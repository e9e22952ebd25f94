// Package jcs is the JSON Canonicalization Scheme of RFC 8785: the one byte form of a JSON value
// that the per-team Merkle logs hash, so that anyone with an RFC 8785 library in any language
// rebuilds the same bytes from the same event.
//
// The rules (RFC 8785, section 3.2): no white space; object members sorted by their names compared
// as arrays of UTF-16 code units; strings as ECMAScript's JSON.stringify writes them (only '"', '\'
// and the control characters escaped, \b \t \n \f \r where they exist, else \u00xx in lowercase
// hex; everything else as UTF-8); numbers as IEEE 754 doubles written as ECMAScript's
// Number.prototype.toString writes them; literals as they are.
//
// It is one pass over the bytes with a few allocations per call: verifying a bundle canonicalizes
// every event (BENCHMARKS.md).
package jcs

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting, so that no input exhausts the stack.
const maxDepth = 1000

// Canonicalize returns the RFC 8785 form of one JSON value. It refuses what RFC 8785 leaves
// undefined or I-JSON forbids: invalid JSON, duplicate member names, numbers outside the range of a
// double, invalid UTF-8 and lone surrogates.
func Canonicalize(in []byte) ([]byte, error) {
	return Members(in, nil)
}

// Members is Canonicalize of a JSON object restricted to the top-level members named in keep (all
// of them when keep is nil); members not kept must still be valid JSON.
func Members(in []byte, keep []string) ([]byte, error) {
	p := parser{in: in, keep: keep}
	p.space()
	out, err := p.value(make([]byte, 0, len(in)), 0)
	if err != nil {
		return nil, err
	}
	if p.space(); p.i != len(in) {
		return nil, p.errorf("data after the JSON value")
	}
	return out, nil
}

type parser struct {
	in   []byte
	i    int
	keep []string // top-level members kept; nil: all
	key  []byte   // scratch: decoded member names
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("jcs: at byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.i < len(p.in) {
		switch p.in[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(b []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested too deep")
	}
	if p.i >= len(p.in) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.in[p.i]; {
	case c == '{':
		return p.object(b, depth)
	case c == '[':
		return p.array(b, depth)
	case c == '"':
		return p.stringValue(b)
	case c == '-' || c >= '0' && c <= '9':
		return p.number(b)
	}
	for _, lit := range literals {
		if bytes.HasPrefix(p.in[p.i:], lit) {
			p.i += len(lit)
			return append(b, lit...), nil
		}
	}
	return nil, p.errorf("unexpected %q", p.in[p.i])
}

func (p *parser) array(b []byte, depth int) ([]byte, error) {
	p.i++ // [
	b = append(b, '[')
	p.space()
	if p.i < len(p.in) && p.in[p.i] == ']' {
		p.i++
		return append(b, ']'), nil
	}
	for {
		var err error
		p.space()
		if b, err = p.value(b, depth+1); err != nil {
			return nil, err
		}
		p.space()
		if p.i >= len(p.in) {
			return nil, p.errorf("unfinished array")
		}
		switch p.in[p.i] {
		case ',':
			p.i++
			b = append(b, ',')
		case ']':
			p.i++
			return append(b, ']'), nil
		default:
			return nil, p.errorf("expected , or ] in an array")
		}
	}
}

// span is one member written to the output: its decoded name in p.key, its "name":value in b.
type span struct{ keyFrom, keyTo, from, to int }

func (p *parser) object(b []byte, depth int) ([]byte, error) {
	p.i++ // {
	start := len(b)
	b = append(b, '{')
	var spans []span
	keyBase := len(p.key)
	defer func() { p.key = p.key[:keyBase] }()
	p.space()
	if p.i < len(p.in) && p.in[p.i] == '}' {
		p.i++
		return append(b, '}'), nil
	}
	for {
		p.space()
		if p.i >= len(p.in) || p.in[p.i] != '"' {
			return nil, p.errorf("expected a member name")
		}
		at := len(b)
		if len(spans) > 0 {
			b = append(b, ',')
		}
		from, k0 := len(b), len(p.key)
		key, err := p.str(p.key)
		if err != nil {
			return nil, err
		}
		p.key = key
		b = appendEscaped(b, p.key[k0:])
		p.space()
		if p.i >= len(p.in) || p.in[p.i] != ':' {
			return nil, p.errorf("expected : after a member name")
		}
		p.i++
		b = append(b, ':')
		p.space()
		if b, err = p.value(b, depth+1); err != nil {
			return nil, err
		}
		if depth == 0 && p.keep != nil && !slices.Contains(p.keep, string(p.key[k0:])) {
			b, p.key = b[:at], p.key[:k0]
		} else {
			spans = append(spans, span{k0, len(p.key), from, len(b)})
		}
		p.space()
		if p.i >= len(p.in) {
			return nil, p.errorf("unfinished object")
		}
		if p.in[p.i] == '}' {
			p.i++
			break
		}
		if p.in[p.i] != ',' {
			return nil, p.errorf("expected , or } in an object")
		}
		p.i++
	}
	name := func(s span) []byte { return p.key[s.keyFrom:s.keyTo] }
	order := func(x, y span) int { return compareUTF16(name(x), name(y)) }
	if !slices.IsSortedFunc(spans, order) {
		slices.SortFunc(spans, order)
		sorted := make([]byte, 0, len(b)-start)
		for j, s := range spans {
			if j > 0 {
				sorted = append(sorted, ',')
			}
			sorted = append(sorted, b[s.from:s.to]...)
		}
		b = append(b[:start+1], sorted...)
	}
	for j := 1; j < len(spans); j++ {
		if string(name(spans[j-1])) == string(name(spans[j])) {
			return nil, p.errorf("duplicate member name %q", name(spans[j]))
		}
	}
	return append(b, '}'), nil
}

// compareUTF16 orders member names as RFC 8785 does: by their UTF-16 code units.
func compareUTF16(a, b []byte) int {
	for len(a) > 0 && len(b) > 0 {
		ra, na := utf8.DecodeRune(a)
		rb, nb := utf8.DecodeRune(b)
		if ra != rb {
			ua, ub := units(ra), units(rb)
			if c := slices.Compare(ua[:], ub[:]); c != 0 {
				return c
			}
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

// units is a rune's UTF-16 code units; the second is 0 for the basic plane.
func units(r rune) [2]uint16 {
	if r < 0x10000 {
		return [2]uint16{uint16(r), 0}
	}
	hi, lo := utf16.EncodeRune(r)
	return [2]uint16{uint16(hi), uint16(lo)}
}

var literals = [][]byte{[]byte("true"), []byte("false"), []byte("null")}

// stringValue appends the string at p.i in its RFC 8785 form. A string without escapes is already
// in it, once its bytes are checked.
func (p *parser) stringValue(b []byte) ([]byte, error) {
	for j := p.i + 1; j < len(p.in); j++ {
		c := p.in[j]
		if c == '\\' || c < 0x20 {
			break
		}
		if c == '"' {
			raw := p.in[p.i : j+1]
			if !utf8.Valid(raw) {
				return nil, p.errorf("invalid UTF-8")
			}
			p.i = j + 1
			return append(b, raw...), nil
		}
	}
	k0 := len(p.key)
	key, err := p.str(p.key)
	if err != nil {
		return nil, err
	}
	b = appendEscaped(b, key[k0:])
	p.key = key[:k0]
	return b, nil
}

// str decodes the string at p.i and appends its bytes to b.
func (p *parser) str(b []byte) ([]byte, error) {
	p.i++ // "
	for {
		if p.i >= len(p.in) {
			return nil, p.errorf("unfinished string")
		}
		c := p.in[p.i]
		switch {
		case c == '"':
			p.i++
			return b, nil
		case c == '\\':
			if p.i+1 >= len(p.in) {
				return nil, p.errorf("unfinished escape")
			}
			e := p.in[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return nil, err
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 || p.i+1 >= len(p.in) || p.in[p.i] != '\\' || p.in[p.i+1] != 'u' {
						return nil, p.errorf("a lone surrogate")
					}
					p.i += 2
					lo, err := p.hex4()
					if err != nil {
						return nil, err
					}
					if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
						return nil, p.errorf("a lone surrogate")
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return nil, p.errorf("bad escape \\%c", e)
			}
		case c < 0x20:
			return nil, p.errorf("a control character in a string")
		case c < utf8.RuneSelf:
			b = append(b, c)
			p.i++
		default:
			r, n := utf8.DecodeRune(p.in[p.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, p.errorf("invalid UTF-8")
			}
			b = append(b, p.in[p.i:p.i+n]...)
			p.i += n
		}
	}
}

func (p *parser) hex4() (rune, error) {
	if p.i+4 > len(p.in) {
		return 0, p.errorf("unfinished \\u escape")
	}
	v, err := strconv.ParseUint(string(p.in[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, p.errorf("bad \\u escape")
	}
	p.i += 4
	return rune(v), nil
}

// number reads a JSON number (RFC 8259's grammar) and appends it as a double in RFC 8785's form.
func (p *parser) number(b []byte) ([]byte, error) {
	start := p.i
	if p.in[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.in) && p.in[p.i] >= '0' && p.in[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	switch {
	case p.i < len(p.in) && p.in[p.i] == '0':
		p.i++
	case digits() == 0:
		return nil, p.errorf("a number without digits")
	}
	if p.i < len(p.in) && p.in[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return nil, p.errorf("a number without digits after its point")
		}
	}
	if p.i < len(p.in) && (p.in[p.i] == 'e' || p.in[p.i] == 'E') {
		p.i++
		if p.i < len(p.in) && (p.in[p.i] == '+' || p.in[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, p.errorf("a number without digits in its exponent")
		}
	}
	f, err := strconv.ParseFloat(string(p.in[start:p.i]), 64)
	if err != nil { // only a range error is left: outside a double
		return nil, errors.New("jcs: number " + string(p.in[start:p.i]) + " is not a finite double")
	}
	return AppendNumber(b, f), nil
}

// AppendString appends s as RFC 8785 writes a string. It refuses invalid UTF-8.
func AppendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("jcs: string %q is not valid UTF-8", s)
	}
	return appendEscaped(b, s), nil
}

// appendEscaped appends valid UTF-8 s as a JSON string, escaped as RFC 8785 says.
func appendEscaped[T string | []byte](b []byte, s T) []byte {
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
	return append(b, '"')
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
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // d[.ddd]e±xx
	at := slices.Index(e, 'e')
	mant, exp := e[:at], e[at+1:]
	digits := mant
	if len(mant) > 1 {
		digits = append(mant[:1:1], mant[2:]...)
	}
	x, _ := strconv.Atoi(string(exp))
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
