package kinesis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riffle-streams/riffle/gateway"
)

// Exceptions of the wire protocol itself, beside the operations' own
// (gateway's constants).
const (
	SerializationException    = "SerializationException"
	UnknownOperationException = "UnknownOperationException"
)

// OutcomeHeader, on every error response, is "not_applied" when the call
// changed nothing (sending it again cannot duplicate anything) or
// "unknown" when a write may have happened.
const OutcomeHeader = "X-Riffle-Outcome"

// TargetPrefix starts every X-Amz-Target header Kinesis takes.
const TargetPrefix = "Kinesis_20131202."

// Content types of the two body encodings.
const (
	ContentTypeJSON = "application/x-amz-json-1.1"
	ContentTypeCBOR = "application/x-amz-cbor-1.1"
)

// DefaultMaxBodyBytes bounds a request body: a PutRecords of 5 MiB of data
// and 500 partition keys of 256 bytes, base64-encoded in JSON, with room
// for the members' names.
const DefaultMaxBodyBytes = 8 << 20

// callTimeout bounds a unary call. HTTP clients, unlike gRPC ones, send no
// deadline; without one a call waiting for a replica to open could wait
// for ever.
const callTimeout = 30 * time.Second

// Options configures the Kinesis front end.
type Options struct {
	// Gateway is the node's gRPC gateway, whose operations this front end
	// calls: validation, limits, routing and errors are its.
	Gateway *gateway.Server
	// Registerer receives the front end's metrics.
	Registerer prometheus.Registerer
	// Logger receives structured logs.
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body; DefaultMaxBodyBytes when zero.
	MaxBodyBytes int64
	// Credentials are the access keys requests must be signed with; empty,
	// any well-formed signature is taken (a development default).
	Credentials Credentials
	// Region is the region signatures must name; DefaultRegion when empty.
	Region string
	// Now is the clock signatures are checked against; time.Now when nil.
	Now func() time.Time
}

// DefaultRegion is the region signatures name when none is configured.
const DefaultRegion = "us-east-1"

// Handler serves Kinesis's HTTP API (POST / with X-Amz-Target).
type Handler struct {
	gw      *gateway.Server
	logger  *slog.Logger
	maxBody int64
	metrics *metrics
	auth    verifier
}

// NewHandler returns the front end over opts.Gateway.
func NewHandler(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{gw: opts.Gateway, logger: opts.Logger, maxBody: opts.MaxBodyBytes, metrics: newMetrics(opts.Registerer),
		auth: verifier{creds: opts.Credentials, region: opts.Region, now: opts.Now}}
}

// call is one request in flight.
type call struct {
	w     http.ResponseWriter
	codec codec
	op    string
	id    string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{w: w, codec: jsonCodec, op: "unknown", id: requestID()}
	w.Header().Set("x-amzn-RequestId", c.id)
	err := h.serve(r, c)
	if err != nil {
		h.writeError(c, err)
	}
	exception := ""
	if err != nil {
		exception = gateway.AsError(err).Exception
	}
	h.metrics.observe(c.op, exception, time.Since(start))
}

func (h *Handler) serve(r *http.Request, c *call) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case ContentTypeJSON:
	case ContentTypeCBOR:
		c.codec = cborCodec
	default:
		return serialization("Content-Type %q is not %s or %s", r.Header.Get("Content-Type"), ContentTypeJSON, ContentTypeCBOR)
	}
	if r.Method != http.MethodPost {
		return serialization("Kinesis calls are POST /, not %s %s", r.Method, r.URL.Path)
	}
	body, err := readBody(c.w, r, h.maxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &gateway.Error{Exception: gateway.InvalidArgument, Outcome: gateway.NotApplied,
				Message: "the request body is larger than " + byteCount(h.maxBody)}
		}
		return serialization("reading the request body: %v", err)
	}
	if err := h.auth.verify(r, body); err != nil {
		return err
	}
	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, TargetPrefix)
	op, known := operations[name]
	if !ok || !known {
		return &gateway.Error{Exception: UnknownOperationException, Outcome: gateway.NotApplied,
			Message: "unknown X-Amz-Target " + quote(target) + "; Kinesis operations are " + TargetPrefix + "<Operation>"}
	}
	c.op = name
	var tree map[string]any
	if c.codec == cborCodec {
		tree, err = decodeCBOR(body)
	} else {
		tree, err = decodeJSON(body)
	}
	if err != nil {
		return err
	}
	if op.unsupported != "" {
		return &gateway.Error{Exception: gateway.InvalidArgument, Outcome: gateway.NotApplied, Message: op.unsupported}
	}
	req := op.request()
	if err := fromTree(req.ProtoReflect(), tree, "", c.codec); err != nil {
		return err
	}
	if op.stream != nil {
		return op.stream(r.Context(), h, c, req)
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	resp, err := op.call(ctx, h.gw, req)
	if err != nil {
		return err
	}
	out := toTree(resp.ProtoReflect())
	if op.complete != nil {
		op.complete(out)
	}
	h.write(c, http.StatusOK, out)
	return nil
}

// readBody reads the whole body, at most maxBody bytes, into a buffer of
// its announced length: io.ReadAll's doublings copied and zeroed a
// PutRecords body several times.
func readBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, maxBody)
	if n := r.ContentLength; n > 0 && n <= maxBody {
		body := make([]byte, n)
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, err
		}
		// Nothing may follow what Content-Length announced.
		if m, _ := rd.Read(make([]byte, 1)); m > 0 {
			return nil, errors.New("body longer than its Content-Length")
		}
		return body, nil
	}
	return io.ReadAll(rd)
}

// contentType is the response's, the request's own.
func (c *call) contentType() string {
	if c.codec == cborCodec {
		return ContentTypeCBOR
	}
	return ContentTypeJSON
}

func (h *Handler) write(c *call, status int, v map[string]any) {
	var body []byte
	if c.codec == cborCodec {
		body = encodeCBOR(v)
	} else {
		body = encodeJSON(v)
	}
	c.w.Header().Set("Content-Type", c.contentType())
	c.w.WriteHeader(status)
	c.w.Write(body)
}

// httpStatus is what Kinesis answers with for an exception.
func httpStatus(exception string) int {
	switch exception {
	case gateway.InternalFailure:
		return http.StatusInternalServerError
	case gateway.ServiceUnavailable:
		return http.StatusServiceUnavailable
	case MissingAuthenticationToken:
		return http.StatusForbidden
	}
	return http.StatusBadRequest
}

// writeError answers with the exception as the SDKs parse it: the name in
// __type and in X-Amzn-ErrorType, the text in message.
func (h *Handler) writeError(c *call, err error) {
	e := gateway.AsError(err)
	if e.Exception == gateway.InternalFailure {
		h.logger.Warn("kinesis request failed", "operation", c.op, "request_id", c.id, "err", err)
	}
	c.w.Header().Set("X-Amzn-ErrorType", e.Exception)
	// Riffle's own: whether the call may have taken effect, which Kinesis's
	// error bodies cannot say (a retried write of unknown outcome may be a
	// duplicate).
	c.w.Header().Set(OutcomeHeader, string(e.Outcome))
	h.write(c, httpStatus(e.Exception), map[string]any{"__type": e.Exception, "message": e.Message})
}

func requestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func quote(s string) string {
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return `"` + s + `"`
}

func byteCount(n int64) string {
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
