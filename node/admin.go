package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves health, readiness, metrics and pprof.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := n.NotReady(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	// Which raft groups this node leads, for tools that aim faults at a
	// leader (tests/fault); a snapshot that may be stale by the time it is read.
	mux.HandleFunc("GET /debug/leadership", func(w http.ResponseWriter, r *http.Request) {
		shards, meta := n.host.LedGroups()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Node   string   `json:"node"`
			Meta   bool     `json:"meta"`
			Shards []string `json:"shards"`
		}{n.host.NodeID(), meta, shards})
	})
	// Replicas left stopped because their raft state is damaged, with why.
	mux.HandleFunc("GET /debug/replicas/failed", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.host.FailedReplicas())
	})
	if n.clock != nil {
		mux.HandleFunc("/debug/clock", n.clock.handle)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{Registry: n.registry}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
