package pjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
)

func TestDecodeEncodeRoundTrip(t *testing.T) {
	docs := []string{
		`{}`,
		`{"action":"job_user_access_changed","team_id":191796,"actor":{"type":"user","id":445177,"metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"}},"targets":[{"type":"job","id":313520,"metadata":null}],"access_route":["::1"],"metadata":{"previous_access_level_id":7347}}`,
		`{"f":1.5,"e":1e-7,"big":1e300,"neg":-0.25,"huge":123456789012345678901234567890,"i":-9223372036854775808,"z":-0.0}`,
		`{"s":"quote\" back\\ nl\n tab\t ctrl\u0001 uni é \u2028 <>&","b":true,"n":null,"a":[1,"x",[],{}]}`,
		`{"dup":1,"dup":{"x":2}}`,
	}
	for _, doc := range docs {
		m := pcommon.NewMap()
		if err := DecodeMap([]byte(doc), m); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		out := AppendMap(nil, m, true)
		var want, got any
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output is not JSON: %s: %v", out, err)
		}
		if !reflect.DeepEqual(want, got) {
			t.Errorf("round trip changed the value:\n in  %s\n out %s", doc, out)
		}
		// Sorted output is canonical: encoding it again gives the same bytes.
		again := pcommon.NewMap()
		if err := DecodeMap(out, again); err != nil {
			t.Fatal(err)
		}
		if out2 := AppendMap(nil, again, true); string(out2) != string(out) {
			t.Errorf("not canonical:\n %s\n %s", out, out2)
		}
	}
}

func TestSortedIsIndependentOfInsertionOrder(t *testing.T) {
	a, b := pcommon.NewMap(), pcommon.NewMap()
	a.PutStr("z", "1")
	a.PutInt("a", 2)
	a.PutEmptyMap("m").PutStr("y", "x")
	b.PutEmptyMap("m").PutStr("y", "x")
	b.PutInt("a", 2)
	b.PutStr("z", "1")
	if x, y := AppendMap(nil, a, true), AppendMap(nil, b, true); string(x) != string(y) {
		t.Fatalf("%s != %s", x, y)
	}
}

func TestDecodeErrors(t *testing.T) {
	for doc, want := range map[string]string{
		``:             "invalid JSON",
		`[1]`:          "not an object",
		`"x"`:          "not an object",
		`{"a":}`:       "invalid JSON",
		`{"a":1} {}`:   "data after",
		`{"a":1`:       "invalid JSON",
		deepJSON(100):  "deeper than",
		`{"a":[1,2}`:   "invalid JSON",
		`{"a":tru}`:    "invalid JSON",
		`{"a":"\x01"}`: "invalid JSON",
		`{"a":1e400}`:  "does not fit",
		`{"a":01}`:     "invalid JSON",
		`{"a":"\q"}`:   "invalid escape",
	} {
		err := DecodeMap([]byte(doc), pcommon.NewMap())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeMap(%.40q) = %v, want %q", doc, err, want)
		}
	}
}

func deepJSON(n int) string {
	return `{"a":` + strings.Repeat(`[`, n) + strings.Repeat(`]`, n) + `}`
}

func TestSpecialValues(t *testing.T) {
	m := pcommon.NewMap()
	m.PutDouble("nan", math.NaN())
	m.PutDouble("inf", math.Inf(1))
	m.PutEmptyBytes("b").FromRaw([]byte{0, 1, 2})
	m.PutEmpty("e")
	m.PutStr("bad", "a\xffb")
	out := AppendMap(nil, m, true)
	want := `{"b":"AAEC","bad":"a\ufffdb","e":null,"inf":"+Inf","nan":"NaN"}`
	if string(out) != want {
		t.Fatalf("%s\nwant %s", out, want)
	}
}

func FuzzDecodeMap(f *testing.F) {
	f.Add([]byte(`{"action":"job_created","team_id":1,"actor":{"type":"system"}}`))
	f.Add([]byte(`{"a":[{"b":null}],"c":1.5e10}`))
	f.Add([]byte(`{"a":"\u0000\ud800"}`))
	f.Add([]byte(`{"a":"\ud800\u0041","b":"\udc00","c":-0.0e+1,"d":[true,false,null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := pcommon.NewMap()
		err := DecodeMap(data, m)
		// Differential check against encoding/json: the same texts are accepted, with the same values.
		var ref any
		refErr := json.Unmarshal(data, &ref)
		_, isObject := ref.(map[string]any)
		if err != nil {
			if refErr == nil && isObject && !strings.Contains(err.Error(), "deeper than") {
				t.Fatalf("rejected what encoding/json accepts: %q: %v", data, err)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("accepted what encoding/json rejects: %q (%v)", data, refErr)
		}
		out := AppendMap(nil, m, true)
		var got any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON out of %q: %s", data, out)
		}
		if !reflect.DeepEqual(ref, got) {
			t.Fatalf("value differs from encoding/json's:\n in  %q\n out %s", data, out)
		}
		again := pcommon.NewMap()
		if err := DecodeMap(out, again); err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if out2 := AppendMap(nil, again, true); string(out2) != string(out) {
			t.Fatalf("not stable: %s vs %s", out, out2)
		}
	})
}

// Sorted encoding, which the content hash is defined on: keys in byte order at every depth, large
// maps included, and a key the map holds twice encoded with its first value, as Map.Get reads it.
func TestAppendMapSorted(t *testing.T) {
	m := pcommon.NewMap()
	for i := 29; i >= 0; i-- {
		m.PutInt(fmt.Sprintf("k%02d", i), int64(i))
	}
	m.PutEmptyMap("nested").PutStr("b", "2")
	nested, _ := m.Get("nested")
	nested.Map().PutStr("a", "1")
	var want strings.Builder
	want.WriteString("{")
	for i := range 30 {
		fmt.Fprintf(&want, `"k%02d":%d,`, i, i)
	}
	want.WriteString(`"nested":{"a":"1","b":"2"}}`)
	if got := string(AppendMap(nil, m, true)); got != want.String() {
		t.Fatalf("got  %s\nwant %s", got, want.String())
	}

	// A map holding a key twice comes only from decoded OTLP: rename one key in the protobuf.
	ld := plog.NewLogs()
	attrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Attributes()
	attrs.PutInt("zq", 0)
	attrs.PutInt("aq", 1)
	attrs.PutInt("Xq", 2)
	raw, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	if err != nil {
		t.Fatal(err)
	}
	back, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(bytes.Replace(raw, []byte("Xq"), []byte("aq"), 1))
	if err != nil {
		t.Fatal(err)
	}
	dup := back.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes()
	if dup.Len() != 3 {
		t.Fatalf("want a map with a repeated key, got %d keys", dup.Len())
	}
	if got := string(AppendMap(nil, dup, true)); got != `{"aq":1,"aq":1,"zq":0}` {
		t.Fatalf("repeated key: got %s", got)
	}
}

// plain8 must agree with the byte-by-byte rule for every byte in every position, and for random words.
func TestPlain8(t *testing.T) {
	slow := func(s string) bool {
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf || !safeASCII[s[i]] {
				return false
			}
		}
		return true
	}
	for pos := range 8 {
		for b := range 256 {
			w := []byte("aaaaaaaa")
			w[pos] = byte(b)
			if got, want := plain8(string(w)), slow(string(w)); got != want {
				t.Fatalf("%q: plain8 %v, want %v", w, got, want)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(rng.IntN(256))
			if rng.IntN(4) > 0 {
				w[i] = byte(0x20 + rng.IntN(0x60)) // mostly printable, so plain words occur
			}
		}
		if got, want := plain8(string(w[:])), slow(string(w[:])); got != want {
			t.Fatalf("%q: plain8 %v, want %v", w, got, want)
		}
	}
}
