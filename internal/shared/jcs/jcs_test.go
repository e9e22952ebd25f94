package jcs

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RFC 8785, section 3.2.4: the example of the whole scheme.
func TestRFC8785Example(t *testing.T) {
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	got, err := Canonicalize([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`, string(got))
}

// RFC 8785, section 3.2.3: members sorted by UTF-16 code units, not by UTF-8 bytes or code points
// (the emoji, a surrogate pair, sorts before U+FB33).
func TestRFC8785SortOrder(t *testing.T) {
	in := `{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
	"1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}`
	got, err := Canonicalize([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\","+
		"\"€\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}", string(got))
}

// RFC 8785, appendix B: IEEE 754 doubles and their canonical text.
func TestRFC8785Numbers(t *testing.T) {
	for bits, want := range map[uint64]string{
		0x0000000000000000: "0",
		0x8000000000000000: "0",
		0x0000000000000001: "5e-324",
		0x8000000000000001: "-5e-324",
		0x7fefffffffffffff: "1.7976931348623157e+308",
		0xffefffffffffffff: "-1.7976931348623157e+308",
		0x4340000000000000: "9007199254740992",
		0xc340000000000000: "-9007199254740992",
		0x4430000000000000: "295147905179352830000",
		0x44b52d02c7e14af5: "9.999999999999997e+22",
		0x44b52d02c7e14af6: "1e+23",
		0x44b52d02c7e14af7: "1.0000000000000001e+23",
		0x444b1ae4d6e2ef4e: "999999999999999700000",
		0x444b1ae4d6e2ef4f: "999999999999999900000",
		0x444b1ae4d6e2ef50: "1e+21",
		0x3eb0c6f7a0b5ed8c: "9.999999999999997e-7",
		0x3eb0c6f7a0b5ed8d: "0.000001",
		0x41b3de4355555553: "333333333.3333332",
		0x41b3de4355555554: "333333333.33333325",
		0x41b3de4355555555: "333333333.3333333",
		0x41b3de4355555556: "333333333.3333334",
		0x41b3de4355555557: "333333333.33333343",
		0xbecbf647612f3696: "-0.0000033333333333333333",
		0x43143ff3c1cb0959: "1424953923781206.2",
	} {
		f := math.Float64frombits(bits)
		assert.Equal(t, want, string(AppendNumber(nil, f)), "%016x", bits)
		// The text reads back as the same double, and canonicalizes to itself.
		back, err := strconv.ParseFloat(want, 64)
		require.NoError(t, err)
		assert.Equal(t, math.Abs(f), math.Abs(back))
		got, err := Canonicalize([]byte(want))
		require.NoError(t, err)
		assert.Equal(t, want, string(got))
	}
}

// 3,000 doubles (random bit patterns, decimals as people write them, large and small integers) and
// their text as ECMAScript writes it, from node (testdata/numbers.txt says which version).
func TestNumbersAsECMAScriptWritesThem(t *testing.T) {
	b, err := os.ReadFile("testdata/numbers.txt")
	require.NoError(t, err)
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		h, want, _ := strings.Cut(strings.TrimSpace(line), " ")
		bits, err := strconv.ParseUint(h, 16, 64)
		require.NoError(t, err)
		assert.Equal(t, want, string(AppendNumber(nil, math.Float64frombits(bits))), h)
		n++
	}
	assert.Equal(t, 3000, n)
}

func TestStringsEscapeOnlyWhatJSONStringifyEscapes(t *testing.T) {
	got, err := Canonicalize([]byte(`"\u0000\u0007\b\t\n\u000b\f\r\u001f \u007f/\u2028<script>é"`))
	require.NoError(t, err)
	assert.Equal(t, `"\u0000\u0007\b\t\n\u000b\f\r\u001f `+"\u007f/\u2028<script>é"+`"`, string(got))
}

func TestRefusesWhatRFC8785LeavesUndefined(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"a":2}`,       // duplicate names
		`{"a":{"b":1,"b":1}}`, // nested too
		`1e400`,               // not a double
		`-1e400`,              // nor this
		`{"a":1} {"b":2}`,     // two values
		`[1,]`,                // not JSON
		`{"a" 1}`,             // nor this
		``,                    // nothing
		`"\x"`,                // a bad escape
		`[1`,                  // unfinished
	} {
		_, err := Canonicalize([]byte(in))
		assert.Error(t, err, "%q", in)
	}
}

func TestDeepNestingIsRefusedNotOverflowed(t *testing.T) {
	deep := make([]byte, 0, 20002)
	for range 10001 {
		deep = append(deep, '[')
	}
	_, err := Canonicalize(deep)
	assert.ErrorContains(t, err, "nested too deep")
}

func TestMembersKeepsTheNamedTopLevelMembers(t *testing.T) {
	got, err := Members([]byte(`{"z":{"id":1,"x":2},"id":"a","drop":[1,{"a":"\u0000"}],"b":null}`), []string{"id", "z", "b"})
	require.NoError(t, err)
	assert.Equal(t, `{"b":null,"id":"a","z":{"id":1,"x":2}}`, string(got))
	_, err = Members([]byte(`{"id":"a","drop":[1,}`), []string{"id"})
	assert.Error(t, err, "a member not kept is still checked")
	_, err = Members([]byte(`{"id":"a","id":"b"}`), []string{"id"})
	assert.Error(t, err)
}

// Canonicalizing is idempotent, agrees with the obvious implementation on encoding/json's tokens
// (oracle_test.go), and the canonical form means what the input meant.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":[1,2.5,"x"],"a":null}`, `"\u20ac\ud83d\ude00"`, `1E30`, `-0.0`, `{"":{}}`, `[[],{},true]`, `0.1`, `1e-7`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		slow, slowErr := oracle(in)
		if slowErr != nil && err == nil {
			t.Fatalf("%q: the oracle refuses it (%v), Canonicalize gives %q", in, slowErr, out)
		}
		if err != nil {
			if slowErr == nil && utf8.Valid(in) && !bytes.Contains(in, []byte(`\u`)) {
				t.Fatalf("%q: Canonicalize refuses it (%v), the oracle gives %q", in, err, slow)
			}
			return
		}
		if string(slow) != string(out) {
			t.Fatalf("%q: Canonicalize gives %q, the oracle %q", in, out, slow)
		}
		again, err := Canonicalize(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, out, again, err)
		}
		// The same value through encoding/json first canonicalizes alike.
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("canonical form %q of %q is not JSON: %v", out, in, err)
		}
		viaGo, _ := json.Marshal(v)
		if other, err := Canonicalize(viaGo); err != nil || string(other) != string(out) {
			t.Fatalf("%q -> %q, but through encoding/json %q (%v)", in, out, other, err)
		}
	})
}
