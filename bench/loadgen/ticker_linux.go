//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// On Linux the open-loop schedule is driven by a periodic timerfd read through Go's netpoller.
// Go's own timers sleep in epoll_wait with millisecond granularity when the process is idle
// (a 100 µs sleep can take 1 ms), which at low rates would add up to a millisecond of
// generator-made delay to every measured latency. A timerfd expires on the kernel's
// high-resolution clock, and each read also says how many periods have passed, so no slot is
// ever skipped even if the generator is descheduled for a while.

const (
	clockMonotonic = 1
	tfdNonblock    = syscall.O_NONBLOCK
	tfdCloexec     = syscall.O_CLOEXEC
)

type itimerspec struct {
	interval syscall.Timespec
	value    syscall.Timespec
}

type fdTicker struct {
	f   *os.File
	buf [8]byte
}

// newTicker arms a ticker whose k-th expiry (k >= 1) is due at t0 + k*interval.
func newTicker(interval time.Duration) (ticker, time.Time, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return nil, time.Time{}, fmt.Errorf("timerfd_create: %w", errno)
	}
	spec := itimerspec{
		interval: syscall.NsecToTimespec(int64(interval)),
		value:    syscall.NsecToTimespec(int64(interval)),
	}
	t0 := time.Now()
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0,
		uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		syscall.Close(int(fd))
		return nil, time.Time{}, fmt.Errorf("timerfd_settime: %w", errno)
	}
	// A non-blocking descriptor makes os.NewFile register it with the netpoller, so Read parks
	// the goroutine instead of blocking a thread.
	return &fdTicker{f: os.NewFile(fd, "timerfd")}, t0, nil
}

func (t *fdTicker) wait() (uint64, error) {
	if _, err := t.f.Read(t.buf[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(t.buf[:]), nil
}

func (t *fdTicker) stop() { _ = t.f.Close() }

// An alarm is a one-shot timerfd, re-armed for each wake-up: the Poisson schedule's gaps vary,
// so a periodic ticker does not fit it, and Go's own timers are too coarse (see above).
type fdAlarm struct {
	f   *os.File
	fd  uintptr
	buf [8]byte
}

func newAlarm() (alarm, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return nil, fmt.Errorf("timerfd_create: %w", errno)
	}
	return &fdAlarm{f: os.NewFile(fd, "timerfd"), fd: fd}, nil
}

// sleep returns once d has passed (at once for d <= 0).
func (a *fdAlarm) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, a.fd, 0,
		uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		return fmt.Errorf("timerfd_settime: %w", errno)
	}
	_, err := a.f.Read(a.buf[:])
	return err
}

func (a *fdAlarm) stop() { _ = a.f.Close() }
