package pjson

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// ErrNotObject is returned by DecodeMap when the JSON text is valid but not an object.
var ErrNotObject = errors.New("JSON is not an object")

// DecodeMap parses a JSON object into dst, replacing its content. Integers that fit int64 become Int
// values, other numbers Double (a number beyond float64's range is an error, as in encoding/json); null becomes an empty value; a repeated key keeps its last value.
// It accepts exactly what encoding/json accepts (RFC 8259), except that invalid UTF-8 in strings is
// replaced by U+FFFD as encoding/json does, and nesting is limited to MaxDepth.
func DecodeMap(data []byte, dst pcommon.Map) error {
	d := decoder{data: data}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errorf("unexpected end of input")
	}
	if d.data[d.pos] != '{' {
		if err := d.value(pcommon.NewValueEmpty(), 1); err != nil {
			return err
		}
		return ErrNotObject
	}
	dst.Clear()
	d.pos++
	if err := d.object(dst, 1); err != nil {
		return err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return d.errorf("data after the top-level object")
	}
	return nil
}

// DecodeValue parses any JSON value into dst, with DecodeMap's rules.
func DecodeValue(data []byte, dst pcommon.Value) error {
	d := decoder{data: data}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errorf("unexpected end of input")
	}
	if err := d.value(dst, 1); err != nil {
		return err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return d.errorf("data after the top-level value")
	}
	return nil
}

type decoder struct {
	data []byte
	pos  int
	buf  []byte // scratch for unescaping strings
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// object parses the members after '{' into m.
func (d *decoder) object(m pcommon.Map, depth int) error {
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return d.errorf("want an object key")
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return d.errorf("want ':' after an object key")
		}
		d.pos++
		v, found := m.Get(key)
		if !found {
			v = m.PutEmpty(key)
		}
		if err := d.value(v, depth); err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return d.errorf("unexpected end of input in an object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.errorf("want ',' or '}' in an object")
		}
	}
}

func (d *decoder) value(v pcommon.Value, depth int) error {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return d.errorf("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		if depth >= MaxDepth {
			return fmt.Errorf("JSON nests deeper than %d levels", MaxDepth)
		}
		d.pos++
		return d.object(v.SetEmptyMap(), depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return fmt.Errorf("JSON nests deeper than %d levels", MaxDepth)
		}
		d.pos++
		s := v.SetEmptySlice()
		d.skipSpace()
		if d.pos < len(d.data) && d.data[d.pos] == ']' {
			d.pos++
			return nil
		}
		for {
			if err := d.value(s.AppendEmpty(), depth+1); err != nil {
				return err
			}
			d.skipSpace()
			if d.pos >= len(d.data) {
				return d.errorf("unexpected end of input in an array")
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
			case ']':
				d.pos++
				return nil
			default:
				return d.errorf("want ',' or ']' in an array")
			}
		}
	case c == '"':
		s, err := d.str()
		if err != nil {
			return err
		}
		v.SetStr(s)
		return nil
	case c == 't':
		return d.literal("true", func() { v.SetBool(true) })
	case c == 'f':
		return d.literal("false", func() { v.SetBool(false) })
	case c == 'n':
		return d.literal("null", func() { pcommon.NewValueEmpty().MoveTo(v) })
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number(v)
	default:
		return d.errorf("unexpected character %q", c)
	}
}

func (d *decoder) literal(word string, set func()) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return d.errorf("invalid literal")
	}
	d.pos += len(word)
	set()
	return nil
}

// number parses an RFC 8259 number.
func (d *decoder) number(v pcommon.Value) error {
	start := d.pos
	isInt := true
	if d.data[d.pos] == '-' {
		d.pos++
	}
	digits := func() int {
		n := 0
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.pos < len(d.data) && d.data[d.pos] == '0' {
		d.pos++
	} else if digits() == 0 {
		return d.errorf("invalid number")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		isInt = false
		d.pos++
		if digits() == 0 {
			return d.errorf("invalid number")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		isInt = false
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			return d.errorf("invalid number")
		}
	}
	text := string(d.data[start:d.pos])
	if isInt {
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			v.SetInt(i)
			return nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return d.errorf("number %s does not fit a 64-bit float", text)
	}
	v.SetDouble(f)
	return nil
}

// str parses a string starting at the opening quote.
func (d *decoder) str() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	// Fast path: no escapes, valid UTF-8.
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			s := d.data[start:d.pos]
			d.pos++
			if utf8.Valid(s) {
				return string(s), nil
			}
			d.pos = start
			break
		}
		if c == '\\' || c < 0x20 {
			d.pos = start
			break
		}
		d.pos++
	}
	if d.pos >= len(d.data) {
		return "", d.errorf("unterminated string")
	}
	b := d.buf[:0]
	for {
		if d.pos >= len(d.data) {
			return "", d.errorf("unterminated string")
		}
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			d.buf = b
			return string(b), nil
		case c < 0x20:
			return "", d.errorf("control character in a string")
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return "", d.errorf("unterminated string")
			}
			e := d.data[d.pos+1]
			d.pos += 2
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
				r, ok := d.hex4()
				if !ok {
					return "", d.errorf("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by a low one is one rune; anything else is U+FFFD.
					r2 := utf8.RuneError
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						if lo, ok := d.hex4(); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
							r2 = utf16.DecodeRune(r, lo)
						} else {
							d.pos = save
						}
					}
					r = r2
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", d.errorf("invalid escape \\%c", e)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			b = utf8.AppendRune(b, r) // invalid bytes become U+FFFD
			d.pos += size
		}
	}
}

func (d *decoder) hex4() (rune, bool) {
	if d.pos+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}
