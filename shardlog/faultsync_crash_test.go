//go:build faultsync

package shardlog

import "github.com/riffle-streams/riffle/shardlog/internal/diskfile"

func crashUnsynced(dir string) { diskfile.CrashUnsynced(dir) }
