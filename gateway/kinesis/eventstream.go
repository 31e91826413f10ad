package kinesis

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/http"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/riffle-streams/riffle/gateway"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// SubscribeToShard answers with application/vnd.amazon.eventstream: a
// stream of binary messages, each
//
//	total length (4) | headers length (4) | CRC32 of those 8 bytes (4) |
//	headers | payload | CRC32 of everything before (4)
//
// with headers as name length (1), name, type (1, 7 = string), value length
// (2), value. The first event is an initial-response (aws-sdk-go-v2 waits
// for it), then one SubscribeToShardEvent per riffle.v1 event; a failure
// once events flow is an exception event, and the response ends.

// EventStreamContentType is the response type of SubscribeToShard.
const EventStreamContentType = "application/vnd.amazon.eventstream"

var subscribeToShard = operation{
	request: func() proto.Message { return new(rifflev1.SubscribeToShardRequest) },
	stream: func(ctx context.Context, h *Handler, c *call, req proto.Message) error {
		sink := &eventSink{ctx: ctx, c: c, rc: http.NewResponseController(c.w)}
		err := h.gw.SubscribeToShard(req.(*rifflev1.SubscribeToShardRequest), sink)
		switch {
		case err == nil && !sink.started:
			return sink.start() // ended before any event: still a valid stream
		case err == nil, ctx.Err() != nil && sink.started:
			return nil
		case !sink.started:
			return err // refused up front: an ordinary error response
		}
		e := gateway.AsError(err)
		name := e.Exception
		if name == gateway.InternalFailure {
			name = "InternalFailureException" // the event stream's name for it
		}
		h.metrics.observe(c.op, e.Exception, 0)
		return sink.message(exceptionHeaders(name, c.contentType()), c.encode(map[string]any{"message": e.Message}))
	},
}

// eventSink is the gRPC server stream the gateway's SubscribeToShard
// sends to, written out as event-stream messages.
type eventSink struct {
	ctx     context.Context
	c       *call
	rc      *http.ResponseController
	started bool
}

func (s *eventSink) start() error {
	if s.started {
		return nil
	}
	s.started = true
	s.c.w.Header().Set("Content-Type", EventStreamContentType)
	s.c.w.WriteHeader(http.StatusOK)
	return s.message(eventHeaders("initial-response", s.c.contentType()), s.c.encode(map[string]any{}))
}

func (s *eventSink) Send(ev *rifflev1.SubscribeToShardEvent) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.message(eventHeaders("SubscribeToShardEvent", s.c.contentType()), s.c.encode(toTree(ev.ProtoReflect())))
}

func (s *eventSink) message(headers []header, payload []byte) error {
	if _, err := s.c.w.Write(appendMessage(nil, headers, payload)); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// The rest of grpc.ServerStream: a subscription has no headers, trailers
// or messages from the client.
func (s *eventSink) Context() context.Context     { return s.ctx }
func (s *eventSink) SetHeader(metadata.MD) error  { return nil }
func (s *eventSink) SendHeader(metadata.MD) error { return nil }
func (s *eventSink) SetTrailer(metadata.MD)       {}
func (s *eventSink) SendMsg(m any) error          { return s.Send(m.(*rifflev1.SubscribeToShardEvent)) }
func (s *eventSink) RecvMsg(any) error {
	return errors.New("kinesis: SubscribeToShard takes no client messages")
}

func (c *call) encode(v map[string]any) []byte {
	if c.codec == cborCodec {
		return encodeCBOR(v)
	}
	return encodeJSON(v)
}

type header struct{ name, value string }

func eventHeaders(eventType, contentType string) []header {
	return []header{{":message-type", "event"}, {":event-type", eventType}, {":content-type", contentType}}
}

func exceptionHeaders(exceptionType, contentType string) []header {
	return []header{{":message-type", "exception"}, {":exception-type", exceptionType}, {":content-type", contentType}}
}

// headerString is the event-stream header value type of a UTF-8 string.
const headerString = 7

// appendMessage encodes one event-stream message.
func appendMessage(b []byte, headers []header, payload []byte) []byte {
	var hs []byte
	for _, h := range headers {
		hs = append(hs, byte(len(h.name)))
		hs = append(hs, h.name...)
		hs = append(hs, headerString)
		hs = binary.BigEndian.AppendUint16(hs, uint16(len(h.value)))
		hs = append(hs, h.value...)
	}
	start := len(b)
	total := 12 + len(hs) + len(payload) + 4
	b = binary.BigEndian.AppendUint32(b, uint32(total))
	b = binary.BigEndian.AppendUint32(b, uint32(len(hs)))
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:start+8]))
	b = append(b, hs...)
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}
