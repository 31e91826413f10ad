package kinesis

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// decodeJSON reads one JSON object (application/x-amz-json-1.1) keeping
// numbers as written.
func decodeJSON(body []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil // boto3 sends "{}", some clients nothing
	}
	v, err := parseJSON(body)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, serialization("the body must be a JSON object, got %s", kindOf(v))
	}
	return obj, nil
}

// encodeJSON writes a response tree: blobs as base64, timestamps as epoch
// seconds with milliseconds.
func encodeJSON(v map[string]any) []byte {
	b, err := json.Marshal(jsonReady(v))
	if err != nil {
		// Every value of a response tree marshals; this is a bug.
		panic("kinesis: encoding a response: " + err.Error())
	}
	return b
}

func jsonReady(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonReady(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonReady(e)
		}
		return out
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case time.Time:
		return json.Number(epochSeconds(x))
	}
	return v
}

// epochSeconds formats t as Kinesis does in JSON: 1733526345.123.
func epochSeconds(t time.Time) string {
	ms := t.UnixMilli()
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	s := strconv.FormatInt(sec, 10)
	if frac == 0 {
		return s
	}
	f := strconv.FormatInt(frac+1000, 10)[1:] // three digits
	for f[len(f)-1] == '0' {
		f = f[:len(f)-1]
	}
	return s + "." + f
}
