//go:build !faultclock

package node

// faultClockBuilt: this binary has no fault clock (faultclock.go).
const faultClockBuilt = false
