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
	"unicode/utf16"
)

// oracle is Canonicalize written the slow and obvious way, on encoding/json's tokens: the
// fuzz test holds the fast one to it. It refuses what RFC 8785 leaves
// undefined: invalid JSON, duplicate member names, numbers outside the range of a double, and
// strings that are not valid Unicode.
func oracle(in []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(in))
	d.UseNumber()
	out, err := oValue(d, nil, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("jcs: data after the JSON value")
	}
	return out, nil
}

func oValue(d *json.Decoder, b []byte, depth int) ([]byte, error) {
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
			return oObject(d, b, depth)
		case '[':
			b = append(b, '[')
			for i := 0; d.More(); i++ {
				if i > 0 {
					b = append(b, ',')
				}
				if b, err = oValue(d, b, depth+1); err != nil {
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

type oMember struct {
	name  string
	key   []uint16 // the name in UTF-16 code units: RFC 8785's sort order
	value []byte   // the canonical name and value, "name":value
}

func oObject(d *json.Decoder, b []byte, depth int) ([]byte, error) {
	var members []oMember
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("jcs: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("jcs: member name %v is not a string", tok)
		}
		m := oMember{name: name, key: utf16.Encode([]rune(name))}
		if m.value, err = AppendString(nil, name); err != nil {
			return nil, err
		}
		m.value = append(m.value, ':')
		if m.value, err = oValue(d, m.value, depth+1); err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	if _, err := d.Token(); err != nil {
		return nil, fmt.Errorf("jcs: %w", err)
	}
	slices.SortFunc(members, func(x, y oMember) int { return slices.Compare(x.key, y.key) })
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
