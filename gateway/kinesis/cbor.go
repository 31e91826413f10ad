package kinesis

import (
	"encoding/binary"
	"math"
	"time"
	"unicode/utf8"
)

// CBOR (RFC 8949) as the AWS SDKs speak it for application/x-amz-cbor-1.1:
// maps with text keys, definite or indefinite lengths (the Java SDKs write
// indefinite ones), blobs as byte strings, timestamps as tag 1 holding epoch
// milliseconds as an integer (the AWS Java SDKs' convention; a float under
// tag 1 is read as seconds, as the RFC has it). Only what a Kinesis body
// can hold is decoded; anything else is a SerializationException.

// maxCBORDepth bounds nesting, so that a hostile body cannot exhaust the
// stack; Kinesis's deepest request (ShardFilter in ListShards) has 3 levels.
const maxCBORDepth = 32

type cborDecoder struct {
	b   []byte
	pos int
}

// decodeCBOR reads one CBOR map that is the whole body.
func decodeCBOR(body []byte) (map[string]any, error) {
	if len(body) == 0 {
		return map[string]any{}, nil
	}
	d := &cborDecoder{b: body}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.b) {
		return nil, serialization("CBOR: %d bytes after the body's value", len(d.b)-d.pos)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, serialization("CBOR: the body must be a map, got %s", kindOf(v))
	}
	return obj, nil
}

// breakCode ends an indefinite-length item.
type breakCode struct{}

func (d *cborDecoder) byte() (byte, error) {
	if d.pos >= len(d.b) {
		return 0, serialization("CBOR: unexpected end of body")
	}
	c := d.b[d.pos]
	d.pos++
	return c, nil
}

func (d *cborDecoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.pos) {
		return nil, serialization("CBOR: an item of %d bytes runs past the end of the body", n)
	}
	out := d.b[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return out, nil
}

// argument reads the argument of an initial byte's additional info; indef
// is set for additional info 31.
func (d *cborDecoder) argument(info byte) (arg uint64, indef bool, err error) {
	switch {
	case info < 24:
		return uint64(info), false, nil
	case info == 31:
		return 0, true, nil
	case info > 27:
		return 0, false, serialization("CBOR: reserved additional information %d", info)
	}
	b, err := d.take(1 << (info - 24))
	if err != nil {
		return 0, false, err
	}
	switch len(b) {
	case 1:
		return uint64(b[0]), false, nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), false, nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), false, nil
	}
	return binary.BigEndian.Uint64(b), false, nil
}

func (d *cborDecoder) value(depth int) (any, error) {
	if depth > maxCBORDepth {
		return nil, serialization("CBOR: nested deeper than %d", maxCBORDepth)
	}
	ib, err := d.byte()
	if err != nil {
		return nil, err
	}
	major, info := ib>>5, ib&0x1f
	if major == 7 {
		return d.simple(info)
	}
	arg, indef, err := d.argument(info)
	if err != nil {
		return nil, err
	}
	if indef && (major == 0 || major == 1 || major == 6) {
		return nil, serialization("CBOR: major type %d cannot have an indefinite length", major)
	}
	switch major {
	case 0:
		if arg <= math.MaxInt64 {
			return int64(arg), nil
		}
		return arg, nil
	case 1:
		if arg > math.MaxInt64 {
			return nil, serialization("CBOR: negative integer out of range")
		}
		return -1 - int64(arg), nil
	case 2, 3:
		var s []byte
		if indef {
			s, err = d.chunks(major)
		} else {
			s, err = d.take(arg)
		}
		if err != nil {
			return nil, err
		}
		if major == 2 {
			return append([]byte(nil), s...), nil
		}
		if !utf8.Valid(s) {
			return nil, serialization("CBOR: a text string is not UTF-8")
		}
		return string(s), nil
	case 4:
		var out []any
		for i := uint64(0); indef || i < arg; i++ {
			if !indef && arg > uint64(len(d.b)-d.pos) {
				return nil, serialization("CBOR: an array of %d items runs past the end of the body", arg)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if _, ok := v.(breakCode); ok {
				if !indef {
					return nil, serialization("CBOR: a break inside a definite-length array")
				}
				break
			}
			out = append(out, v)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	case 5:
		out := make(map[string]any)
		for i := uint64(0); indef || i < arg; i++ {
			if !indef && arg > uint64(len(d.b)-d.pos) {
				return nil, serialization("CBOR: a map of %d pairs runs past the end of the body", arg)
			}
			k, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if _, ok := k.(breakCode); ok {
				if !indef {
					return nil, serialization("CBOR: a break inside a definite-length map")
				}
				break
			}
			key, ok := k.(string)
			if !ok {
				return nil, serialization("CBOR: map keys must be text strings, got %s", kindOf(k))
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if _, ok := v.(breakCode); ok {
				return nil, serialization("CBOR: map key %q has no value", key)
			}
			if _, dup := out[key]; dup {
				return nil, serialization("CBOR: map key %q appears twice", key)
			}
			out[key] = v
		}
		return out, nil
	case 6:
		return d.tag(arg, depth)
	}
	return nil, serialization("CBOR: unknown major type %d", major)
}

// chunks reads an indefinite-length string: definite chunks of the same
// major type up to a break.
func (d *cborDecoder) chunks(major byte) ([]byte, error) {
	var out []byte
	for {
		ib, err := d.byte()
		if err != nil {
			return nil, err
		}
		if ib == 0xff {
			return out, nil
		}
		if ib>>5 != major {
			return nil, serialization("CBOR: a chunk of major type %d inside a string of type %d", ib>>5, major)
		}
		n, indef, err := d.argument(ib & 0x1f)
		if err != nil {
			return nil, err
		}
		if indef {
			return nil, serialization("CBOR: nested indefinite-length string")
		}
		chunk, err := d.take(n)
		if err != nil {
			return nil, err
		}
		out = append(out, chunk...)
	}
}

func (d *cborDecoder) tag(number uint64, depth int) (any, error) {
	v, err := d.value(depth + 1)
	if err != nil {
		return nil, err
	}
	switch number {
	case 1:
		switch n := v.(type) {
		case int64:
			return time.UnixMilli(n).UTC(), nil
		case uint64:
			return nil, serialization("CBOR: timestamp out of range")
		case float64:
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return nil, serialization("CBOR: timestamp is not a finite number")
			}
			sec, frac := math.Modf(n)
			return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
		}
		return nil, serialization("CBOR: tag 1 must hold a number, got %s", kindOf(v))
	case 0:
		s, ok := v.(string)
		if !ok {
			return nil, serialization("CBOR: tag 0 must hold a text string")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, serialization("CBOR: tag 0: %v", err)
		}
		return t.UTC(), nil
	}
	return nil, serialization("CBOR: tag %d is not supported", number)
}

func (d *cborDecoder) simple(info byte) (any, error) {
	switch info {
	case 20:
		return false, nil
	case 21:
		return true, nil
	case 22, 23: // null, undefined
		return nil, nil
	case 25:
		b, err := d.take(2)
		if err != nil {
			return nil, err
		}
		return halfFloat(binary.BigEndian.Uint16(b)), nil
	case 26:
		b, err := d.take(4)
		if err != nil {
			return nil, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 27:
		b, err := d.take(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	case 31:
		return breakCode{}, nil
	}
	return nil, serialization("CBOR: simple value %d is not supported", info)
}

// halfFloat decodes an IEEE 754 half-precision number.
func halfFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var f float64
	switch exp {
	case 0:
		f = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			f = math.Inf(1)
		} else {
			f = math.NaN()
		}
	default:
		f = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		return -f
	}
	return f
}

// encodeCBOR writes a response tree with definite lengths.
func encodeCBOR(v map[string]any) []byte {
	return appendCBOR(nil, v)
}

func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= math.MaxUint8:
		return append(b, m|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func appendInt(b []byte, n int64) []byte {
	if n >= 0 {
		return appendHead(b, 0, uint64(n))
	}
	return appendHead(b, 1, uint64(-1-n))
}

func appendCBOR(b []byte, v any) []byte {
	switch x := v.(type) {
	case map[string]any:
		b = appendHead(b, 5, uint64(len(x)))
		for _, k := range sortedKeys(x) {
			b = appendHead(b, 3, uint64(len(k)))
			b = append(b, k...)
			b = appendCBOR(b, x[k])
		}
		return b
	case []any:
		b = appendHead(b, 4, uint64(len(x)))
		for _, e := range x {
			b = appendCBOR(b, e)
		}
		return b
	case string:
		return append(appendHead(b, 3, uint64(len(x))), x...)
	case []byte:
		return append(appendHead(b, 2, uint64(len(x))), x...)
	case bool:
		if x {
			return append(b, 0xf5)
		}
		return append(b, 0xf4)
	case nil:
		return append(b, 0xf6)
	case int64:
		return appendInt(b, x)
	case uint64:
		return appendHead(b, 0, x)
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0xfb), math.Float64bits(x))
	case time.Time:
		return appendInt(append(b, 0xc1), x.UnixMilli())
	}
	panic("kinesis: no CBOR encoding for a response value of type " + kindOf(v))
}
