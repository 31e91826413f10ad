// Package fault is a Jepsen-style test of the three-node docker-compose
// cluster (deploy/docker-compose.yml): clients on the host write and read a
// multi-shard stream through every node while a nemesis kills, pauses and
// partitions the nodes from outside, every operation goes to a JSON-lines
// history, and checkers read the whole history afterwards.
//
// The package itself holds what needs no cluster: the history format
// (history.go), the checkers (check.go, and linearizable.go for porcupine;
// each anomaly in its own function, each tested on a crafted history that
// contains it) and the run report
// (report.go, availability per fault and a latency plot). The driver that
// needs docker, the workload and the nemeses are tests behind the build tag
// fault (fault_test.go and its neighbours):
//
//	make fault                  # fresh cluster, the CI-sized run, teardown
//	make jepsen DURATION=30m    # fresh cluster, a soak with every nemesis
//
// Faults come from the host: docker kill/start/pause, and iptables and tc
// run with nsenter inside each container's network namespace (the
// node image is FROM scratch and has no tools). install-deps.sh installs
// iptables, iproute2 and util-linux when they are missing.
package fault
