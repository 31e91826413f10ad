//go:build faultclock

package node

// faultClockBuilt: this binary has the fault clock (faultclock.go).
const faultClockBuilt = true
