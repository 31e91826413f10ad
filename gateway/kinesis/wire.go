package kinesis

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/gateway"
)

// The request and response bodies are decoded into, and encoded from, one
// tree of plain values whatever the content type:
//
//	map[string]any, []any, string, []byte, bool, nil,
//	json.Number (JSON), int64, uint64, float64 (CBOR and responses),
//	time.Time (a CBOR timestamp tag, and every timestamp of a response).
//
// The tree maps onto riffle.v1 messages field by field: Kinesis's member
// names are the proto field names in PascalCase ("stream_arn" is
// "StreamARN"), enum values drop their type's prefix
// (SHARD_ITERATOR_TYPE_LATEST is "LATEST"), blobs are base64 in JSON and byte
// strings in CBOR, timestamps are epoch seconds in JSON and a CBOR tag 1 of
// epoch milliseconds in CBOR. So the riffle.v1 messages are the one schema of
// both front ends, and no operation has a hand-written mapping.

// codec says how blobs and timestamps were encoded in a request.
type codec int

const (
	jsonCodec codec = iota
	cborCodec
)

// memberName is a field's Kinesis member name.
func memberName(fd protoreflect.FieldDescriptor) string {
	var b strings.Builder
	for _, part := range strings.Split(string(fd.Name()), "_") {
		if part == "arn" {
			b.WriteString("ARN")
			continue
		}
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// enumPrefix is what an enum's value names start with: STREAM_STATUS_ for
// StreamStatus.
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	name := string(ed.Name())
	var b strings.Builder
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String()) + "_"
}

var members sync.Map // protoreflect.FullName -> map[string]protoreflect.FieldDescriptor

func membersOf(md protoreflect.MessageDescriptor) map[string]protoreflect.FieldDescriptor {
	if m, ok := members.Load(md.FullName()); ok {
		return m.(map[string]protoreflect.FieldDescriptor)
	}
	m := make(map[string]protoreflect.FieldDescriptor, md.Fields().Len())
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		m[memberName(fd)] = fd
	}
	members.Store(md.FullName(), m)
	return m
}

// ignoredMembers are Kinesis members that Riffle accepts and that change
// nothing by their definition: StreamId is reserved by Kinesis for internal
// use and documented as "do not set".
var ignoredMembers = map[string]bool{"StreamId": true}

// serialization is a body that does not have the shape the operation
// takes; nothing is done.
func serialization(format string, args ...any) *gateway.Error {
	return &gateway.Error{Exception: SerializationException, Message: fmt.Sprintf(format, args...), Outcome: gateway.NotApplied}
}

// fromTree fills m from the decoded request object v.
func fromTree(m protoreflect.Message, v map[string]any, path string, c codec) error {
	fields := membersOf(m.Descriptor())
	for name, val := range v {
		fd, ok := fields[name]
		if !ok {
			if ignoredMembers[name] {
				continue
			}
			return &gateway.Error{Exception: gateway.Validation, Outcome: gateway.NotApplied,
				Message: fmt.Sprintf("%s is not a member Riffle supports here", join(path, name))}
		}
		if val == nil {
			continue // an explicit null is an absent member
		}
		if err := setField(m, fd, val, join(path, name), c); err != nil {
			return err
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func setField(m protoreflect.Message, fd protoreflect.FieldDescriptor, val any, path string, c codec) error {
	switch {
	case fd.IsMap():
		obj, ok := val.(map[string]any)
		if !ok {
			return serialization("%s: expected an object, got %s", path, kindOf(val))
		}
		mp := m.Mutable(fd).Map()
		for k, ev := range obj {
			s, ok := ev.(string)
			if !ok || fd.MapValue().Kind() != protoreflect.StringKind {
				return serialization("%s.%s: expected a string, got %s", path, k, kindOf(ev))
			}
			mp.Set(protoreflect.ValueOfString(k).MapKey(), protoreflect.ValueOfString(s))
		}
		return nil
	case fd.IsList():
		arr, ok := val.([]any)
		if !ok {
			return serialization("%s: expected a list, got %s", path, kindOf(val))
		}
		list := m.Mutable(fd).List()
		for i, ev := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			if fd.Kind() == protoreflect.MessageKind {
				el := list.NewElement()
				if err := setMessage(el.Message(), ev, p, c); err != nil {
					return err
				}
				list.Append(el)
				continue
			}
			pv, err := scalar(fd, ev, p, c)
			if err != nil {
				return err
			}
			list.Append(pv)
		}
		return nil
	case fd.Kind() == protoreflect.MessageKind:
		return setMessage(m.Mutable(fd).Message(), val, path, c)
	}
	pv, err := scalar(fd, val, path, c)
	if err != nil {
		return err
	}
	m.Set(fd, pv)
	return nil
}

func setMessage(m protoreflect.Message, val any, path string, c codec) error {
	if m.Descriptor().FullName() == "google.protobuf.Timestamp" {
		t, err := timestamp(val, path)
		if err != nil {
			return err
		}
		ts := timestamppb.New(t)
		m.Set(m.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(ts.Seconds))
		m.Set(m.Descriptor().Fields().ByName("nanos"), protoreflect.ValueOfInt32(ts.Nanos))
		return nil
	}
	obj, ok := val.(map[string]any)
	if !ok {
		return serialization("%s: expected an object, got %s", path, kindOf(val))
	}
	return fromTree(m, obj, path, c)
}

// timestamp reads a timestamp member: a CBOR tag, or epoch seconds (JSON,
// and an untagged CBOR number).
func timestamp(val any, path string) (time.Time, error) {
	if t, ok := val.(time.Time); ok {
		return t, nil
	}
	f, ok := float(val)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, serialization("%s: expected a timestamp (epoch seconds), got %s", path, kindOf(val))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC(), nil
}

func float(val any) (float64, bool) {
	switch n := val.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// integer reads an integer member that fits in bits bits.
func integer(val any, bits int, path string) (int64, error) {
	var i int64
	switch n := val.(type) {
	case json.Number:
		v, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			f, ferr := n.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<62 {
				return 0, serialization("%s: expected an integer, got %s", path, n)
			}
			v = int64(f)
		}
		i = v
	case int64:
		i = n
	case uint64:
		if n > math.MaxInt64 {
			return 0, serialization("%s: %d is out of range", path, n)
		}
		i = int64(n)
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<62 {
			return 0, serialization("%s: expected an integer, got %v", path, n)
		}
		i = int64(n)
	default:
		return 0, serialization("%s: expected a number, got %s", path, kindOf(val))
	}
	if bits == 32 && (i > math.MaxInt32 || i < math.MinInt32) {
		return 0, serialization("%s: %d is out of range", path, i)
	}
	return i, nil
}

func scalar(fd protoreflect.FieldDescriptor, val any, path string, c codec) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s, ok := val.(string)
		if !ok {
			return protoreflect.Value{}, serialization("%s: expected a string, got %s", path, kindOf(val))
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		switch b := val.(type) {
		case []byte:
			return protoreflect.ValueOfBytes(b), nil
		case string:
			if c == jsonCodec {
				raw, err := base64.StdEncoding.DecodeString(b)
				if err != nil {
					return protoreflect.Value{}, serialization("%s: not base64: %v", path, err)
				}
				return protoreflect.ValueOfBytes(raw), nil
			}
		}
		return protoreflect.Value{}, serialization("%s: expected a blob, got %s", path, kindOf(val))
	case protoreflect.BoolKind:
		b, ok := val.(bool)
		if !ok {
			return protoreflect.Value{}, serialization("%s: expected a boolean, got %s", path, kindOf(val))
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		i, err := integer(val, 32, path)
		return protoreflect.ValueOfInt32(int32(i)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		i, err := integer(val, 64, path)
		return protoreflect.ValueOfInt64(i), err
	case protoreflect.EnumKind:
		s, ok := val.(string)
		if !ok {
			return protoreflect.Value{}, serialization("%s: expected a string, got %s", path, kindOf(val))
		}
		ed := fd.Enum()
		prefix := enumPrefix(ed)
		if ev := ed.Values().ByName(protoreflect.Name(prefix + s)); ev != nil && ev.Number() != 0 {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		var allowed []string
		for i := 1; i < ed.Values().Len(); i++ {
			allowed = append(allowed, strings.TrimPrefix(string(ed.Values().Get(i).Name()), prefix))
		}
		return protoreflect.Value{}, &gateway.Error{Exception: gateway.Validation, Outcome: gateway.NotApplied,
			Message: fmt.Sprintf("%s: %q is not one of %s", path, s, strings.Join(allowed, ", "))}
	}
	return protoreflect.Value{}, serialization("%s: members of kind %s are not supported", path, fd.Kind())
}

func kindOf(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case []byte:
		return "a blob"
	case bool:
		return "a boolean"
	case json.Number, int64, uint64, float64:
		return "a number"
	case time.Time:
		return "a timestamp"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// omitWhenEmpty are lists Kinesis leaves out of a response when they are
// empty; every other list is sent, empty or not ("Records": []).
var omitWhenEmpty = map[string]bool{"ChildShards": true}

// toTree turns a response message into the tree the encoders write. Empty
// strings, unset enums and unset messages are left out (Kinesis sends no
// EndingSequenceNumber for an open shard); numbers, booleans and lists are
// always sent.
func toTree(m protoreflect.Message) map[string]any {
	out := make(map[string]any)
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := memberName(fd)
		switch {
		case fd.IsMap():
			if m.Get(fd).Map().Len() == 0 {
				continue
			}
			obj := make(map[string]any)
			m.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				obj[k.String()] = v.String()
				return true
			})
			out[name] = obj
		case fd.IsList():
			list := m.Get(fd).List()
			if list.Len() == 0 && omitWhenEmpty[name] {
				continue
			}
			arr := make([]any, list.Len())
			for j := range arr {
				arr[j] = treeValue(fd, list.Get(j))
			}
			out[name] = arr
		case fd.Kind() == protoreflect.MessageKind:
			if m.Has(fd) {
				out[name] = treeValue(fd, m.Get(fd))
			}
		case fd.Kind() == protoreflect.StringKind:
			if s := m.Get(fd).String(); s != "" {
				out[name] = s
			}
		case fd.Kind() == protoreflect.EnumKind:
			if n := m.Get(fd).Enum(); n != 0 {
				out[name] = treeValue(fd, m.Get(fd))
			}
		default:
			out[name] = treeValue(fd, m.Get(fd))
		}
	}
	return out
}

func treeValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.MessageKind:
		msg := v.Message()
		if msg.Descriptor().FullName() == "google.protobuf.Timestamp" {
			d := msg.Descriptor().Fields()
			return time.Unix(msg.Get(d.ByName("seconds")).Int(), msg.Get(d.ByName("nanos")).Int()).UTC()
		}
		return toTree(msg)
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		return v.Bytes()
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.EnumKind:
		ev := fd.Enum().Values().ByNumber(v.Enum())
		if ev == nil {
			return strconv.Itoa(int(v.Enum()))
		}
		return strings.TrimPrefix(string(ev.Name()), enumPrefix(fd.Enum()))
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return v.Uint()
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float()
	}
	return v.Int()
}
