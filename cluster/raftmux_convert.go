package cluster

import (
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// This file converts raft's RPC structs to the RaftTransport messages and
// back, field by field. TestRaftMuxConvertRoundTrip fills every field of
// every struct, so a field raft adds and this file forgets fails it.

func rpcHeaderToProto(h raft.RPCHeader) *internalv1.RaftRPCHeader {
	return &internalv1.RaftRPCHeader{
		ProtocolVersion: int64(h.ProtocolVersion),
		Id:              h.ID,
		Addr:            h.Addr,
	}
}

func rpcHeaderFromProto(h *internalv1.RaftRPCHeader) raft.RPCHeader {
	return raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersion(h.GetProtocolVersion()),
		ID:              h.GetId(),
		Addr:            h.GetAddr(),
	}
}

func logToProto(l *raft.Log) *internalv1.RaftLog {
	out := &internalv1.RaftLog{
		Index:      l.Index,
		Term:       l.Term,
		Type:       uint32(l.Type),
		Data:       l.Data,
		Extensions: l.Extensions,
	}
	if !l.AppendedAt.IsZero() {
		out.AppendedAt = timestamppb.New(l.AppendedAt)
	}
	return out
}

func logFromProto(l *internalv1.RaftLog) *raft.Log {
	out := &raft.Log{
		Index:      l.GetIndex(),
		Term:       l.GetTerm(),
		Type:       raft.LogType(l.GetType()),
		Data:       l.GetData(),
		Extensions: l.GetExtensions(),
	}
	if l.GetAppendedAt() != nil {
		out.AppendedAt = l.GetAppendedAt().AsTime()
	}
	return out
}

func appendEntriesRequestToProto(route *internalv1.RaftRoute, r *raft.AppendEntriesRequest) *internalv1.AppendEntriesRequest {
	out := &internalv1.AppendEntriesRequest{
		Route:             route,
		Header:            rpcHeaderToProto(r.RPCHeader),
		Term:              r.Term,
		Leader:            r.Leader,
		PrevLogEntry:      r.PrevLogEntry,
		PrevLogTerm:       r.PrevLogTerm,
		LeaderCommitIndex: r.LeaderCommitIndex,
	}
	if len(r.Entries) > 0 {
		out.Entries = make([]*internalv1.RaftLog, len(r.Entries))
		for i, l := range r.Entries {
			out.Entries[i] = logToProto(l)
		}
	}
	return out
}

func appendEntriesRequestFromProto(r *internalv1.AppendEntriesRequest) *raft.AppendEntriesRequest {
	out := &raft.AppendEntriesRequest{
		RPCHeader:         rpcHeaderFromProto(r.GetHeader()),
		Term:              r.GetTerm(),
		Leader:            r.GetLeader(),
		PrevLogEntry:      r.GetPrevLogEntry(),
		PrevLogTerm:       r.GetPrevLogTerm(),
		LeaderCommitIndex: r.GetLeaderCommitIndex(),
	}
	if len(r.GetEntries()) > 0 {
		out.Entries = make([]*raft.Log, len(r.GetEntries()))
		for i, l := range r.GetEntries() {
			out.Entries[i] = logFromProto(l)
		}
	}
	return out
}

func appendEntriesResponseToProto(r *raft.AppendEntriesResponse) *internalv1.AppendEntriesResponse {
	return &internalv1.AppendEntriesResponse{
		Header:         rpcHeaderToProto(r.RPCHeader),
		Term:           r.Term,
		LastLog:        r.LastLog,
		Success:        r.Success,
		NoRetryBackoff: r.NoRetryBackoff,
	}
}

// appendEntriesResponseFromProto fills out, which raft owns.
func appendEntriesResponseFromProto(r *internalv1.AppendEntriesResponse, out *raft.AppendEntriesResponse) {
	*out = raft.AppendEntriesResponse{
		RPCHeader:      rpcHeaderFromProto(r.GetHeader()),
		Term:           r.GetTerm(),
		LastLog:        r.GetLastLog(),
		Success:        r.GetSuccess(),
		NoRetryBackoff: r.GetNoRetryBackoff(),
	}
}

func requestVoteRequestToProto(route *internalv1.RaftRoute, r *raft.RequestVoteRequest) *internalv1.RequestVoteRequest {
	return &internalv1.RequestVoteRequest{
		Route:              route,
		Header:             rpcHeaderToProto(r.RPCHeader),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func requestVoteRequestFromProto(r *internalv1.RequestVoteRequest) *raft.RequestVoteRequest {
	return &raft.RequestVoteRequest{
		RPCHeader:          rpcHeaderFromProto(r.GetHeader()),
		Term:               r.GetTerm(),
		Candidate:          r.GetCandidate(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		LeadershipTransfer: r.GetLeadershipTransfer(),
	}
}

func requestVoteResponseToProto(r *raft.RequestVoteResponse) *internalv1.RequestVoteResponse {
	return &internalv1.RequestVoteResponse{
		Header:  rpcHeaderToProto(r.RPCHeader),
		Term:    r.Term,
		Peers:   r.Peers,
		Granted: r.Granted,
	}
}

func requestVoteResponseFromProto(r *internalv1.RequestVoteResponse, out *raft.RequestVoteResponse) {
	*out = raft.RequestVoteResponse{
		RPCHeader: rpcHeaderFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Peers:     r.GetPeers(),
		Granted:   r.GetGranted(),
	}
}

func requestPreVoteRequestToProto(route *internalv1.RaftRoute, r *raft.RequestPreVoteRequest) *internalv1.RequestPreVoteRequest {
	return &internalv1.RequestPreVoteRequest{
		Route:        route,
		Header:       rpcHeaderToProto(r.RPCHeader),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func requestPreVoteRequestFromProto(r *internalv1.RequestPreVoteRequest) *raft.RequestPreVoteRequest {
	return &raft.RequestPreVoteRequest{
		RPCHeader:    rpcHeaderFromProto(r.GetHeader()),
		Term:         r.GetTerm(),
		LastLogIndex: r.GetLastLogIndex(),
		LastLogTerm:  r.GetLastLogTerm(),
	}
}

func requestPreVoteResponseToProto(r *raft.RequestPreVoteResponse) *internalv1.RequestPreVoteResponse {
	return &internalv1.RequestPreVoteResponse{
		Header:  rpcHeaderToProto(r.RPCHeader),
		Term:    r.Term,
		Granted: r.Granted,
	}
}

func requestPreVoteResponseFromProto(r *internalv1.RequestPreVoteResponse, out *raft.RequestPreVoteResponse) {
	*out = raft.RequestPreVoteResponse{
		RPCHeader: rpcHeaderFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Granted:   r.GetGranted(),
	}
}

func installSnapshotRequestToProto(route *internalv1.RaftRoute, r *raft.InstallSnapshotRequest) *internalv1.InstallSnapshotRequest {
	return &internalv1.InstallSnapshotRequest{
		Route:              route,
		Header:             rpcHeaderToProto(r.RPCHeader),
		SnapshotVersion:    int64(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func installSnapshotRequestFromProto(r *internalv1.InstallSnapshotRequest) *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{
		RPCHeader:          rpcHeaderFromProto(r.GetHeader()),
		SnapshotVersion:    raft.SnapshotVersion(r.GetSnapshotVersion()),
		Term:               r.GetTerm(),
		Leader:             r.GetLeader(),
		LastLogIndex:       r.GetLastLogIndex(),
		LastLogTerm:        r.GetLastLogTerm(),
		Peers:              r.GetPeers(),
		Configuration:      r.GetConfiguration(),
		ConfigurationIndex: r.GetConfigurationIndex(),
		Size:               r.GetSize(),
	}
}

func installSnapshotResponseToProto(r *raft.InstallSnapshotResponse) *internalv1.InstallSnapshotResponse {
	return &internalv1.InstallSnapshotResponse{
		Header:  rpcHeaderToProto(r.RPCHeader),
		Term:    r.Term,
		Success: r.Success,
	}
}

func installSnapshotResponseFromProto(r *internalv1.InstallSnapshotResponse, out *raft.InstallSnapshotResponse) {
	*out = raft.InstallSnapshotResponse{
		RPCHeader: rpcHeaderFromProto(r.GetHeader()),
		Term:      r.GetTerm(),
		Success:   r.GetSuccess(),
	}
}

func timeoutNowRequestToProto(route *internalv1.RaftRoute, r *raft.TimeoutNowRequest) *internalv1.TimeoutNowRequest {
	return &internalv1.TimeoutNowRequest{
		Route:  route,
		Header: rpcHeaderToProto(r.RPCHeader),
	}
}

func timeoutNowRequestFromProto(r *internalv1.TimeoutNowRequest) *raft.TimeoutNowRequest {
	return &raft.TimeoutNowRequest{RPCHeader: rpcHeaderFromProto(r.GetHeader())}
}

func timeoutNowResponseToProto(r *raft.TimeoutNowResponse) *internalv1.TimeoutNowResponse {
	return &internalv1.TimeoutNowResponse{Header: rpcHeaderToProto(r.RPCHeader)}
}

func timeoutNowResponseFromProto(r *internalv1.TimeoutNowResponse, out *raft.TimeoutNowResponse) {
	*out = raft.TimeoutNowResponse{RPCHeader: rpcHeaderFromProto(r.GetHeader())}
}
