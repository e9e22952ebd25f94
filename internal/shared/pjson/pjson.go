// Package pjson encodes pdata values as JSON and decodes JSON into pdata, without going through
// map[string]any. The processor uses it to parse string bodies and to hash the canonical event; the
// exporter uses it to write Elasticsearch documents straight from the log record.
package pjson

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// MaxDepth bounds the nesting of decoded JSON, so a hostile body cannot exhaust the stack.
const MaxDepth = 64

// AppendValue appends v as JSON. With sorted, object keys are written in byte order, which makes the
// encoding canonical (the same value always encodes to the same bytes); without, in map order.
func AppendValue(dst []byte, v pcommon.Value, sorted bool) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return AppendString(dst, v.Str())
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(dst, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		return AppendFloat(dst, v.Double())
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(dst, v.Bool())
	case pcommon.ValueTypeMap:
		return AppendMap(dst, v.Map(), sorted)
	case pcommon.ValueTypeSlice:
		return AppendSlice(dst, v.Slice(), sorted)
	case pcommon.ValueTypeBytes:
		b := v.Bytes().AsRaw()
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"')
	default:
		return append(dst, "null"...)
	}
}

// AppendMap appends m as a JSON object.
func AppendMap(dst []byte, m pcommon.Map, sorted bool) []byte {
	dst = append(dst, '{')
	if !sorted || m.Len() < 2 {
		first := true
		for k, v := range m.All() {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			dst = AppendValue(dst, v, sorted)
		}
		return append(dst, '}')
	}
	// Sort the entries, not the keys: looking each key up again would make a large map quadratic.
	// Most audit maps are small and sort without allocating; many arrive sorted already.
	type entry struct {
		k string
		v pcommon.Value
	}
	var small [16]entry
	entries := small[:0]
	inOrder := true
	for k, v := range m.All() {
		if n := len(entries); n > 0 && entries[n-1].k > k {
			inOrder = false
		}
		entries = append(entries, entry{k, v})
	}
	if !inOrder {
		slices.SortStableFunc(entries, func(a, b entry) int { return strings.Compare(a.k, b.k) })
	}
	for i := range entries {
		e := &entries[i]
		if i > 0 {
			dst = append(dst, ',')
			if e.k == entries[i-1].k {
				e.v = entries[i-1].v // a repeated key encodes the first value, as Map.Get reads it
			}
		}
		dst = AppendString(dst, e.k)
		dst = append(dst, ':')
		dst = AppendValue(dst, e.v, sorted)
	}
	return append(dst, '}')
}

// AppendSlice appends s as a JSON array.
func AppendSlice(dst []byte, s pcommon.Slice, sorted bool) []byte {
	dst = append(dst, '[')
	for i := 0; i < s.Len(); i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendValue(dst, s.At(i), sorted)
	}
	return append(dst, ']')
}

// AppendFloat writes a float as encoding/json does. NaN and infinities, which JSON cannot hold, are
// written as the strings "NaN", "+Inf" and "-Inf" so that nothing is lost and the output stays valid.
func AppendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Inf"`...)
	}
	if f == 0 {
		return append(dst, '0') // also -0, so that the text reads back as the same number
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hex = "0123456789abcdef"

// safeASCII tells the ASCII bytes a JSON string holds as they are.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for b := byte(0x20); b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// plain8 tells whether the 8 bytes of s are all ASCII that a JSON string holds as it is: no control
// byte, quote, backslash or byte of a multi-byte rune. (A byte over 0x7f can make the control-byte
// test answer wrongly, but that byte alone makes the word not plain.)
func plain8(s string) bool {
	w := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote, backslash := w^(ones*'"'), w^(ones*'\\')
	special := (w - ones*0x20) | (quote-ones)&^quote | (backslash-ones)&^backslash | w
	return special&highs == 0
}

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as with encoding/json, and
// <, >, & are not escaped (the output is never embedded in HTML).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs a look: most strings are plain ASCII.
		for i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		if b := s[i]; b < utf8.RuneSelf {
			if safeASCII[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
