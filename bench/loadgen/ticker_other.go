//go:build !linux

package main

import "time"

// Portable fallback: Go timers. Coarser when the process is idle (see ticker_linux.go), so
// low-rate latencies carry up to about a millisecond of generator delay.

type sleepTicker struct {
	t0       time.Time
	interval time.Duration
	fired    uint64
}

func newTicker(interval time.Duration) (ticker, time.Time, error) {
	t0 := time.Now()
	return &sleepTicker{t0: t0, interval: interval}, t0, nil
}

func (t *sleepTicker) wait() (uint64, error) {
	next := t.t0.Add(time.Duration(t.fired+1) * t.interval)
	if d := time.Until(next); d > 0 {
		time.Sleep(d)
	}
	due := uint64(time.Since(t.t0) / t.interval)
	n := due - t.fired
	t.fired = due
	return n, nil
}

func (t *sleepTicker) stop() {}

type sleepAlarm struct{}

func newAlarm() (alarm, error) { return sleepAlarm{}, nil }

func (sleepAlarm) sleep(d time.Duration) error {
	if d > 0 {
		time.Sleep(d)
	}
	return nil
}

func (sleepAlarm) stop() {}
