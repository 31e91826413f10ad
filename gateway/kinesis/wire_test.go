package kinesis

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/fxamacker/cbor/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// fill sets every field of m to a value derived from its name, recursing
// into messages, so that no member of an operation goes unchecked.
func fill(m protoreflect.Message, depth int) {
	if m.Descriptor().FullName() == "google.protobuf.Timestamp" {
		fd := m.Descriptor().Fields()
		m.Set(fd.ByName("seconds"), protoreflect.ValueOfInt64(1733526345))
		m.Set(fd.ByName("nanos"), protoreflect.ValueOfInt32(123_000_000))
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k-"+string(fd.Name())).MapKey(), protoreflect.ValueOfString("v"))
		case fd.IsList():
			list := m.Mutable(fd).List()
			for j := range 2 {
				if fd.Kind() == protoreflect.MessageKind {
					el := list.NewElement()
					if depth < 4 {
						fill(el.Message(), depth+1)
					}
					list.Append(el)
					continue
				}
				list.Append(sample(fd, j))
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 4 {
				fill(m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, sample(fd, 0))
		}
	}
}

func sample(fd protoreflect.FieldDescriptor, j int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", fd.Name(), j))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0, byte(j), 0xff, '"'})
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(fd.Enum().Values().Get(fd.Enum().Values().Len() - 1).Number())
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(7 + j))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(int64(1<<40 + j))
	}
	panic("no sample for " + fd.Kind().String())
}

// fxTree is the tree as fxamacker/cbor should encode it, timestamps as the
// AWS Java SDKs do (tag 1, epoch milliseconds).
func fxTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = fxTree(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fxTree(e)
		}
		return out
	case time.Time:
		return cbor.Tag{Number: 1, Content: x.UnixMilli()}
	}
	return v
}

// messages are every request and response message of the operations.
func messages(t *testing.T) map[string]proto.Message {
	out := map[string]proto.Message{"SubscribeToShard event": new(rifflev1.SubscribeToShardEvent)}
	for name, op := range operations {
		if op.request == nil {
			continue
		}
		req := op.request()
		out[name+" request"] = req
		if op.call == nil {
			continue
		}
		respName := protoreflect.FullName(strings.TrimSuffix(string(req.ProtoReflect().Descriptor().FullName()), "Request") + "Response")
		mt, err := protoregistry.GlobalTypes.FindMessageByName(respName)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name+" response"] = mt.New().Interface()
	}
	return out
}

// TestEveryMessageRoundTripsInJSONAndCBOR checks each operation's request
// decoding from both encodings against the same message, the CBOR side
// written by an independent encoder (fxamacker/cbor), and each response
// encoding read back by independent decoders (encoding/json, fxamacker).
func TestEveryMessageRoundTripsInJSONAndCBOR(t *testing.T) {
	for name, msg := range messages(t) {
		fill(msg.ProtoReflect(), 0)
		tree := toTree(msg.ProtoReflect())

		// Requests: JSON and CBOR bodies decode to the same message.
		fromJSON, err := decodeJSON(encodeJSON(tree))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fxBody, err := cbor.Marshal(fxTree(tree))
		if err != nil {
			t.Fatal(err)
		}
		fromCBOR, err := decodeCBOR(fxBody)
		if err != nil {
			t.Fatalf("%s: decoding fxamacker's CBOR: %v", name, err)
		}
		for codecName, got := range map[string]struct {
			tree map[string]any
			c    codec
		}{"JSON": {fromJSON, jsonCodec}, "CBOR": {fromCBOR, cborCodec}} {
			back := msg.ProtoReflect().Type().New()
			if err := fromTree(back, got.tree, "", got.c); err != nil {
				t.Fatalf("%s from %s: %v", name, codecName, err)
			}
			if !proto.Equal(back.Interface(), msg) {
				t.Fatalf("%s from %s:\n got %v\nwant %v", name, codecName, back.Interface(), msg)
			}
		}

		// Responses: what we write, independent decoders read as the tree.
		var viaJSON map[string]any
		if err := json.Unmarshal(encodeJSON(tree), &viaJSON); err != nil {
			t.Fatal(err)
		}
		var viaCBOR any
		dm, _ := cbor.DecOptions{DefaultMapType: reflect.TypeOf(map[string]any{}), TimeTag: cbor.DecTagIgnored}.DecMode()
		if err := dm.Unmarshal(encodeCBOR(tree), &viaCBOR); err != nil {
			t.Fatalf("%s: fxamacker cannot read our CBOR: %v", name, err)
		}
		if want, got := canonical(t, tree, "tree"), canonical(t, viaJSON, "json"); want != got {
			t.Fatalf("%s JSON:\n got %s\nwant %s", name, got, want)
		}
		if want, got := canonical(t, tree, "tree"), canonical(t, viaCBOR, "fxamacker"); want != got {
			t.Fatalf("%s CBOR:\n got %s\nwant %s", name, got, want)
		}
	}
}

// canonical renders a decoded tree with blobs as hex and timestamps as
// epoch milliseconds, whichever encoding they came from.
func canonical(t *testing.T, v any, from string) string {
	var b bytes.Buffer
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.WriteString("{")
			for _, k := range keys {
				b.WriteString(k + ":")
				walk(x[k], k)
				b.WriteString(",")
			}
			b.WriteString("}")
		case []any:
			b.WriteString("[")
			for _, e := range x {
				walk(e, key)
				b.WriteString(",")
			}
			b.WriteString("]")
		case []byte:
			fmt.Fprintf(&b, "blob:%x", x)
		case time.Time:
			if from == "fxamacker" {
				// It reads tag 1 as seconds (RFC 8949); the AWS
				// convention puts milliseconds there.
				fmt.Fprintf(&b, "ms:%d", x.Unix())
				return
			}
			fmt.Fprintf(&b, "ms:%d", x.UnixMilli())
		case cbor.Tag:
			fmt.Fprintf(&b, "ms:%v", x.Content)
		case string:
			if from == "json" && key == "Data" {
				raw, err := base64.StdEncoding.DecodeString(x)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "blob:%x", raw)
				return
			}
			b.WriteString(strconv.Quote(x))
		case float64:
			if from == "json" && bytes.HasSuffix(b.Bytes(), []byte("Timestamp:")) {
				fmt.Fprintf(&b, "ms:%d", int64(x*1000+0.5))
				return
			}
			fmt.Fprintf(&b, "%d", int64(x))
		default:
			fmt.Fprintf(&b, "%v", x)
		}
	}
	walk(v, "")
	return b.String()
}

// TestCBORDecodesWhatJavaSDKsSend: indefinite lengths, chunked strings,
// every integer width, half floats, tag 1 as milliseconds or seconds.
func TestCBORDecodesWhatJavaSDKsSend(t *testing.T) {
	body := []byte{0xbf, // indefinite map
		0x6a, 'S', 't', 'r', 'e', 'a', 'm', 'N', 'a', 'm', 'e', 0x7f, 0x62, 'a', 'b', 0x61, 'c', 0xff, // chunked text "abc"
		0x64, 'D', 'a', 't', 'a', 0x5f, 0x41, 1, 0x42, 2, 3, 0xff, // chunked bytes
		0x65, 'L', 'i', 'm', 'i', 't', 0x19, 0x27, 0x10, // 10000 as uint16
		0x61, 'N', 0x3a, 0x00, 0x01, 0x00, 0x00, // -65537
		0x61, 'T', 0xc1, 0x1b, 0, 0, 0x01, 0x93, 0x9e, 0x38, 0xdc, 0x33, // tag 1, 1733526346803 ms
		0x61, 'S', 0xc1, 0xf9, 0x3c, 0x00, // tag 1, half float 1.0 s
		0x61, 'L', 0x9f, 0xf5, 0xf4, 0xf6, 0xff, // indefinite array
		0xff}
	got, err := decodeCBOR(body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"StreamName": "abc", "Data": []byte{1, 2, 3}, "Limit": int64(10000), "N": int64(-65537),
		"T": time.UnixMilli(1733526346803).UTC(), "S": time.Unix(1, 0).UTC(), "L": []any{true, false, nil}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	for what, bad := range map[string][]byte{
		"truncated":          {0xa1, 0x61, 'a'},
		"a non-text key":     {0xa1, 0x01, 0x02},
		"a duplicate key":    {0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02},
		"an unknown tag":     {0xa1, 0x61, 'a', 0xd8, 0x20, 0x01},
		"invalid UTF-8":      {0xa1, 0x61, 0xff, 0x01},
		"a stray break":      {0xa1, 0x61, 'a', 0xff},
		"a huge length":      {0xa1, 0x61, 'a', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"a huge array":       {0xa1, 0x61, 'a', 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"trailing bytes":     {0xa0, 0x00},
		"not a map":          {0x01},
		"deep nesting":       append(bytes.Repeat([]byte{0x81}, 40), 0x01),
		"reserved info":      {0xa1, 0x61, 'a', 0x1c},
		"an indefinite int":  {0xa1, 0x61, 'a', 0x1f},
		"a mixed chunk type": {0xa1, 0x61, 'a', 0x5f, 0x61, 'x', 0xff},
	} {
		if _, err := decodeCBOR(bad); err == nil {
			t.Errorf("%s: decoded", what)
		}
	}
}

func TestEpochSecondsAsKinesisWritesThem(t *testing.T) {
	for ms, want := range map[int64]string{1733526345123: "1733526345.123", 1733526345100: "1733526345.1", 1733526345000: "1733526345", -1500: "-2.5"} {
		if got := epochSeconds(time.UnixMilli(ms)); got != want {
			t.Errorf("%d ms: %s, want %s", ms, got, want)
		}
	}
}

// TestEventStreamMessagesDecodeWithTheSDK reads our messages with
// aws-sdk-go-v2's own event-stream decoder, CRCs and all.
func TestEventStreamMessagesDecodeWithTheSDK(t *testing.T) {
	checkEventStream(t, eventHeaders("SubscribeToShardEvent", ContentTypeJSON), []byte(`{"Records":[]}`))
	checkEventStream(t, exceptionHeaders("ResourceInUseException", ContentTypeCBOR), nil)
}

func checkEventStream(t *testing.T, headers []header, payload []byte) {
	t.Helper()
	msg, err := eventstream.NewDecoder().Decode(bytes.NewReader(appendMessage(nil, headers, payload)), nil)
	if err != nil {
		t.Fatalf("the SDK cannot decode the message: %v", err)
	}
	if !bytes.Equal(msg.Payload, payload) {
		t.Fatalf("payload %q, want %q", msg.Payload, payload)
	}
	if len(msg.Headers) != len(headers) {
		t.Fatalf("headers %v, want %v", msg.Headers, headers)
	}
	for _, h := range headers {
		if v := msg.Headers.Get(h.name); v == nil || v.String() != h.value {
			t.Fatalf("header %s = %v, want %q", h.name, v, h.value)
		}
	}
}

func FuzzEventStream(f *testing.F) {
	f.Add(":event-type", "SubscribeToShardEvent", []byte(`{}`))
	f.Fuzz(func(t *testing.T, name, value string, payload []byte) {
		if len(name) == 0 || len(name) > 255 || len(value) > 32767 || len(payload) > 1<<20 {
			return
		}
		checkEventStream(t, []header{{name, value}}, payload)
	})
}

// FuzzDecodeCBOR: no body panics the decoder, and what decodes re-encodes
// to the same tree.
func FuzzDecodeCBOR(f *testing.F) {
	f.Add([]byte{0xbf, 0x61, 'a', 0x01, 0xff})
	f.Add(encodeCBOR(map[string]any{"StreamName": "s", "Data": []byte{1}, "T": time.UnixMilli(5)}))
	f.Fuzz(func(t *testing.T, body []byte) {
		tree, err := decodeCBOR(body)
		if err != nil {
			return
		}
		again, err := decodeCBOR(encodeCBOR(tree))
		if err != nil {
			t.Fatalf("our own encoding of %#v: %v", tree, err)
		}
		if canonical(t, again, "cbor") != canonical(t, tree, "cbor") {
			t.Fatalf("round trip changed %#v into %#v", tree, again)
		}
		for _, m := range []proto.Message{new(rifflev1.PutRecordsRequest), new(rifflev1.ListShardsRequest), new(rifflev1.CreateStreamRequest)} {
			fromTree(m.ProtoReflect(), tree, "", cborCodec)
		}
	})
}

// FuzzDecodeJSON: no body panics the decoder or the mapping onto requests.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"StreamName":"s","Records":[{"Data":"eA==","PartitionKey":"k"}]}`))
	f.Add([]byte(`{"ShardFilter":{"Type":"AT_TIMESTAMP","Timestamp":1.5e9}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tree, err := decodeJSON(body)
		if err != nil {
			return
		}
		for _, m := range []proto.Message{new(rifflev1.PutRecordsRequest), new(rifflev1.ListShardsRequest), new(rifflev1.CreateStreamRequest)} {
			fromTree(m.ProtoReflect(), tree, "", jsonCodec)
		}
	})
}

// FuzzJSONMatchesEncodingJSON: on UTF-8 input nested less than
// maxJSONDepth, parseJSON accepts what encoding/json accepts and decodes
// it to the same value.
func FuzzJSONMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,true,null,"x\u00e9\ud83d\ude00\n"]}`, `{"a":"\ud800"}`, `[]`, `{"a":1,"a":2}`, `01`, `"\/"`, `1e`, `{"a" 1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) || bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) >= maxJSONDepth {
			return
		}
		ours, err := parseJSON(b)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var theirs any
		theirErr := dec.Decode(&theirs)
		if theirErr == nil {
			if _, terr := dec.Token(); terr != io.EOF {
				theirErr = errors.New("trailing data")
			}
		}
		if (err == nil) != (theirErr == nil) {
			t.Fatalf("%q: ours %v, encoding/json %v", b, err, theirErr)
		}
		if err == nil && !reflect.DeepEqual(ours, theirs) {
			t.Fatalf("%q: ours %#v, encoding/json %#v", b, ours, theirs)
		}
	})
}

// TestJSONStringsRoundTrip: what encodeJSON quotes, encoding/json reads
// back as written (invalid UTF-8 as U+FFFD, as encoding/json writes it).
func TestJSONStringsRoundTrip(t *testing.T) {
	for _, s := range []string{"", `quote " and \ backslash`, "tab\tnl\n\x00\x1f", "é 日本 😀", "\u2028", "bad \xff utf8"} {
		var back map[string]string
		if err := json.Unmarshal(encodeJSON(map[string]any{"k": s}), &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back["k"] != wantBack {
			t.Errorf("%q came back as %q, encoding/json gives %q", s, back["k"], wantBack)
		}
	}
}
