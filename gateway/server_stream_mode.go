package gateway

import (
	"context"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// UpdateStreamMode implements riffle.v1.Streams. As in Kinesis the stream
// is named by its ARN. It returns once the switch has started: the stream
// is UPDATING until the metadata leader confirms it. A switch to the mode
// the stream already has is refused with InvalidArgumentException (it
// contradicts the stream, like UpdateShardCount to the current count), a
// stream that is not ACTIVE with ResourceInUseException, a third switch in
// 24 hours with LimitExceededException.
func (s *Server) UpdateStreamMode(ctx context.Context, req *rifflev1.UpdateStreamModeRequest) (*rifflev1.UpdateStreamModeResponse, error) {
	if req.StreamArn == "" {
		return nil, validation("stream_arn is required")
	}
	var mode cluster.StreamMode
	switch req.GetStreamModeDetails().GetStreamMode() {
	case rifflev1.StreamMode_STREAM_MODE_PROVISIONED:
		mode = cluster.ModeProvisioned
	case rifflev1.StreamMode_STREAM_MODE_ON_DEMAND:
		mode = cluster.ModeOnDemand
	default:
		return nil, validation("stream_mode_details.stream_mode must be PROVISIONED or ON_DEMAND")
	}
	st, err := s.stream(ctx, "", req.StreamArn)
	if err != nil {
		return nil, err
	}
	if err := s.host.UpdateStreamMode(ctx, st.Name, mode); err != nil {
		return nil, err
	}
	s.logger.Info("stream mode switching", "stream", st.Name, "from", st.Mode, "to", mode)
	return &rifflev1.UpdateStreamModeResponse{}, nil
}
