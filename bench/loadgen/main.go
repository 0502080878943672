// Command loadgen drives HTTP/1.1 webhook load for the whatsapp-relay benchmark.
//
//	loadgen run -url URL -payloads FILE -token T -mode closed -connections 64 -duration 20s
//	loadgen run -url URL -payloads FILE -token T -mode open -rate 5000 -connections 256 -duration 15s
//	loadgen null-server -listen 127.0.0.1:0
//
// closed: each connection sends its next request as soon as the previous one is answered
// (maximum throughput). open: requests are due at fixed intervals (1/rate) whatever the server
// does, and every latency is measured from the time the request was DUE, not from when it was
// actually written, so a server that stalls is charged for the requests queued behind the stall
// (no coordinated omission). Requests go round-robin over the payload file, so the file's mix is
// the offered mix.
//
// The result (JSON) counts answers per status code, 200s per payload (so the harness can
// compute how many Kafka records must exist), errors by kind, and latency percentiles over the
// measured window (after -warmup). Standard library only: building it needs no network.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type ticker interface {
	wait() (uint64, error)
	stop()
}

type alarm interface {
	sleep(d time.Duration) error
	stop()
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		if err := cmdRun(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	case "null-server":
		if err := cmdNullServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen run [flags] | loadgen null-server [-listen ADDR]  (-h for flags)")
	os.Exit(2)
}

// ---------------------------------------------------------------------------------------------
// Payloads

type payloadLine struct {
	Kind string `json:"kind"`
	Body []byte `json:"body"` // base64 in the file: bytes survive exactly
}

type payload struct {
	kind string
	req  []byte // the whole HTTP request
}

func loadPayloads(path, host, reqPath, token string) ([]payload, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []payload
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var pl payloadLine
		if err := json.Unmarshal([]byte(line), &pl); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
		head := "POST " + reqPath + " HTTP/1.1\r\n" +
			"Host: " + host + "\r\n" +
			"User-Agent: whatsapp-relay-loadgen\r\n" +
			"Authorization: Bearer " + token + "\r\n" +
			"Content-Type: application/json\r\n" +
			"Content-Length: " + strconv.Itoa(len(pl.Body)) + "\r\n\r\n"
		req := make([]byte, 0, len(head)+len(pl.Body))
		req = append(req, head...)
		req = append(req, pl.Body...)
		out = append(out, payload{kind: pl.Kind, req: req})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no payloads", path)
	}
	return out, nil
}

// ---------------------------------------------------------------------------------------------
// Per-worker accounting, merged at the end (no shared counters on the hot path).

type sample struct {
	lat    int64 // ns: answer time - due time (open) or - send time (closed)
	svc    int64 // ns: answer time - actual send time
	lag    int64 // ns: actual send time - due time (open loop only)
	done   int64 // ns since the start of the measured window
	status int32
}

type workerStats struct {
	samples  []sample
	byStatus map[int]int64
	errors   [numErrKinds]int64
	// Whole run, warm-up included: what reached the server and what it accepted.
	sent []int64
	ok   []int64
	// Measured window only.
	errorsMeasured int64
	late           int64
}

// answer counts one round trip: a failure of the given kind (kind >= 0), else a status for
// payload p. It reports whether a status came back, i.e. whether a latency sample is due.
func (st *workerStats) answer(p, status, kind int, measured bool) bool {
	if kind >= 0 {
		st.errors[kind]++
		if measured {
			st.errorsMeasured++
		}
		return false
	}
	st.byStatus[status]++
	if status == 200 {
		st.ok[p]++
	}
	return true
}

func newWorkerStats(nPayloads int, hint int) *workerStats {
	return &workerStats{
		samples:  make([]sample, 0, hint),
		byStatus: map[int]int64{},
		sent:     make([]int64, nPayloads),
		ok:       make([]int64, nPayloads),
	}
}

// ---------------------------------------------------------------------------------------------
// run

type runConfig struct {
	mode          string
	target        *url.URL
	token         string
	payloadFile   string
	connections   int
	rate          float64
	duration      time.Duration
	warmup        time.Duration
	timeout       time.Duration
	lateThreshold time.Duration
	arrivals      string
	seed          int64
	out           string
	label         string
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var cfg runConfig
	rawURL := fs.String("url", "http://127.0.0.1:8080/webhook", "webhook URL (http only)")
	fs.StringVar(&cfg.token, "token", "", "bearer token sent in Authorization")
	fs.StringVar(&cfg.payloadFile, "payloads", "", "payload file: JSON lines {\"kind\":..., \"body\":<base64>}")
	fs.StringVar(&cfg.mode, "mode", "closed", "closed (max throughput) or open (fixed rate)")
	fs.IntVar(&cfg.connections, "connections", 64, "connections (closed: concurrency; open: pool size, upper bound on in-flight)")
	fs.Float64Var(&cfg.rate, "rate", 1000, "open loop: requests per second")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&cfg.warmup, "warmup", 0, "run this long before measuring (requests counted, latencies not)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "per-request timeout (connect, write and answer)")
	fs.DurationVar(&cfg.lateThreshold, "late-threshold", time.Millisecond, "open loop: a request written later than this after its due time counts as late")
	fs.StringVar(&cfg.arrivals, "arrivals", "uniform", "open loop: uniform (one request every 1/rate) or poisson (independent senders: exponential gaps of mean 1/rate)")
	fs.Int64Var(&cfg.seed, "seed", 1, "open loop, poisson: seed of the arrival times (the same seed, the same schedule)")
	fs.StringVar(&cfg.out, "out", "-", "result file (JSON); - for stdout")
	fs.StringVar(&cfg.label, "label", "", "free text copied into the result")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the generator here")
	fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url must be http://host:port/path, got %q", *rawURL)
	}
	cfg.target = u
	if cfg.payloadFile == "" {
		return errors.New("-payloads is required")
	}
	if cfg.connections < 1 {
		return errors.New("-connections must be at least 1")
	}
	if cfg.mode != "closed" && cfg.mode != "open" {
		return fmt.Errorf("-mode must be closed or open, got %q", cfg.mode)
	}
	if cfg.mode == "open" && (cfg.rate <= 0 || cfg.rate > 1e6) {
		return errors.New("-rate must be in (0, 1e6]")
	}
	if cfg.arrivals != "uniform" && cfg.arrivals != "poisson" {
		return fmt.Errorf("-arrivals must be uniform or poisson, got %q", cfg.arrivals)
	}
	if cfg.duration <= 0 {
		return errors.New("-duration must be positive")
	}

	addr := u.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "80")
	}
	reqPath := u.RequestURI()
	payloads, err := loadPayloads(cfg.payloadFile, u.Host, reqPath, cfg.token)
	if err != nil {
		return err
	}

	// The hot path allocates almost nothing; the sample slices are the heap. Collect rarely.
	debug.SetGCPercent(400)

	var res *result
	if cfg.mode == "closed" {
		res, err = runClosed(&cfg, addr, payloads)
	} else {
		res, err = runOpen(&cfg, addr, payloads)
	}
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.Loadgen.CPUUserSeconds = tvSeconds(ru.Utime)
		res.Loadgen.CPUSystemSeconds = tvSeconds(ru.Stime)
		res.Loadgen.MaxRSSKiB = int64(ru.Maxrss)
	}
	res.Loadgen.GoVersion = runtime.Version()
	res.Loadgen.GOMAXPROCS = runtime.GOMAXPROCS(0)
	res.Label = cfg.label

	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if cfg.out == "-" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(cfg.out, data, 0o644)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// preconnect opens every connection before the clock starts: senders keep connections alive,
// and connection setup is not what is being measured. Failures are left to the workers.
func preconnect(conns []*httpConn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c *httpConn) {
			defer wg.Done()
			_ = c.connect()
		}(c)
	}
	wg.Wait()
}

func runClosed(cfg *runConfig, addr string, payloads []payload) (*result, error) {
	n := cfg.connections
	conns := make([]*httpConn, n)
	stats := make([]*workerStats, n)
	for i := range conns {
		conns[i] = newHTTPConn(addr, cfg.timeout)
		stats[i] = newWorkerStats(len(payloads), 1<<14)
	}
	preconnect(conns)

	var next atomic.Uint64
	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	end := measureFrom.Add(cfg.duration)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(c *httpConn, st *workerStats) {
			defer wg.Done()
			defer c.close()
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				p := int(next.Add(1)-1) % len(payloads)
				status, kind, attempted := c.roundTrip(payloads[p].req)
				t1 := time.Now()
				measured := !t0.Before(measureFrom)
				if attempted {
					st.sent[p]++
				}
				if !st.answer(p, status, kind, measured) {
					if kind == errConnect {
						time.Sleep(20 * time.Millisecond) // do not spin on a refused port
					}
					continue
				}
				if measured {
					d := int64(t1.Sub(t0))
					st.samples = append(st.samples, sample{lat: d, svc: d, done: int64(t1.Sub(measureFrom)), status: int32(status)})
				}
			}
		}(conns[w], stats[w])
	}
	wg.Wait()
	finished := time.Now()
	res := collect(cfg, payloads, stats, cfg.duration, finished.Sub(measureFrom))
	return res, nil
}

func runOpen(cfg *runConfig, addr string, payloads []payload) (*result, error) {
	interval := time.Duration(float64(time.Second) / cfg.rate)
	if interval <= 0 {
		interval = 1
	}
	total := int64(float64(cfg.warmup+cfg.duration) / float64(interval))
	measureFromSlot := int64(float64(cfg.warmup) / float64(interval))

	// When slot i is due, from the start. Uniform: every interval. Poisson: the sum of
	// exponential gaps of mean interval, which is how the requests of many independent senders
	// arrive (a sender fleet, an ingress in front): some alone, some close together.
	offsets := make([]time.Duration, total)
	rng := rand.New(rand.NewSource(cfg.seed))
	var at float64
	for i := range offsets {
		if cfg.arrivals == "poisson" {
			at += rng.ExpFloat64() * float64(interval)
			offsets[i] = time.Duration(at)
		} else {
			offsets[i] = time.Duration(i+1) * interval
		}
	}

	n := cfg.connections
	conns := make([]*httpConn, n)
	stats := make([]*workerStats, n)
	hint := int(total/int64(n)) + 16
	for i := range conns {
		conns[i] = newHTTPConn(addr, cfg.timeout)
		stats[i] = newWorkerStats(len(payloads), hint)
	}
	preconnect(conns)

	// Slots are handed to whichever connection is free. If none is, the slot waits in the
	// channel while its clock is already running: the queueing delay lands in its latency.
	jobs := make(chan int64, 1<<16)
	var t0 time.Time
	var measureFrom time.Time
	var inflight, maxInflight atomic.Int64
	var wg sync.WaitGroup
	startWorkers := func() {
		for w := 0; w < n; w++ {
			wg.Add(1)
			go func(c *httpConn, st *workerStats) {
				defer wg.Done()
				defer c.close()
				for slot := range jobs {
					due := t0.Add(offsets[slot])
					p := int(slot % int64(len(payloads)))
					cur := inflight.Add(1)
					for {
						m := maxInflight.Load()
						if cur <= m || maxInflight.CompareAndSwap(m, cur) {
							break
						}
					}
					sendAt := time.Now()
					measured := slot >= measureFromSlot
					if sendAt.Sub(due) > cfg.timeout {
						// Hopelessly behind (the server stopped answering): a sender would
						// have given up on this one, and sending it now would only make the
						// run last until the backlog drains.
						inflight.Add(-1)
						st.answer(p, 0, errExpired, measured)
						continue
					}
					status, kind, attempted := c.roundTrip(payloads[p].req)
					t1 := time.Now()
					inflight.Add(-1)
					if attempted {
						st.sent[p]++
					}
					if !st.answer(p, status, kind, measured) {
						continue
					}
					if measured {
						lag := int64(sendAt.Sub(due))
						if lag > int64(cfg.lateThreshold) {
							st.late++
						}
						st.samples = append(st.samples, sample{
							lat: int64(t1.Sub(due)), svc: int64(t1.Sub(sendAt)), lag: lag,
							done: int64(t1.Sub(measureFrom)), status: int32(status),
						})
					}
				}
			}(conns[w], stats[w])
		}
	}

	var slot int64
	if cfg.arrivals == "poisson" {
		// One wake-up per arrival, at its due time; whatever is due by then goes out.
		al, err := newAlarm()
		if err != nil {
			return nil, err
		}
		t0 = time.Now()
		measureFrom = measureStart(t0, offsets, measureFromSlot)
		startWorkers()
		for slot < total {
			if err := al.sleep(time.Until(t0.Add(offsets[slot]))); err != nil {
				al.stop()
				close(jobs)
				wg.Wait()
				return nil, fmt.Errorf("alarm: %w", err)
			}
			now := time.Since(t0)
			for slot < total && offsets[slot] <= now {
				jobs <- slot
				slot++
			}
		}
		al.stop()
	} else {
		tk, start, err := newTicker(interval)
		if err != nil {
			return nil, err
		}
		t0 = start
		measureFrom = measureStart(t0, offsets, measureFromSlot)
		startWorkers()
		for slot < total {
			due, err := tk.wait()
			if err != nil {
				tk.stop()
				close(jobs)
				wg.Wait()
				return nil, fmt.Errorf("ticker: %w", err)
			}
			for i := uint64(0); i < due && slot < total; i++ {
				jobs <- slot
				slot++
			}
		}
		tk.stop()
	}
	close(jobs)
	wg.Wait()
	finished := time.Now()

	window := time.Duration(total-measureFromSlot) * interval
	res := collect(cfg, payloads, stats, window, finished.Sub(measureFrom))
	res.Measured.MaxInflight = maxInflight.Load()
	res.Measured.PoolExhausted = maxInflight.Load() >= int64(n)
	res.Measured.Scheduled = total - measureFromSlot
	res.Scheduled = total
	return res, nil
}

// measureStart is when the first measured slot is due (the end of the warm-up).
func measureStart(t0 time.Time, offsets []time.Duration, first int64) time.Time {
	if first >= int64(len(offsets)) {
		return t0.Add(offsets[len(offsets)-1])
	}
	return t0.Add(offsets[first])
}

// ---------------------------------------------------------------------------------------------
// Results

type percentiles struct {
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P75   float64 `json:"p75"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	P9999 float64 `json:"p99_99"`
	Max   float64 `json:"max"`
}

type bucket struct {
	LeMs  float64 `json:"le_ms"` // upper bound; 0 means +Inf
	Count int64   `json:"count"`
}

type second struct {
	T     int     `json:"t"`
	Done  int64   `json:"done"`
	OK    int64   `json:"ok"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

type measured struct {
	WindowSeconds  float64      `json:"window_seconds"`  // nominal measured duration
	ElapsedSeconds float64      `json:"elapsed_seconds"` // until the last answer came back
	Scheduled      int64        `json:"scheduled,omitempty"`
	Completed      int64        `json:"completed"` // answered, any status
	OK             int64        `json:"ok"`
	Errors         int64        `json:"errors"`
	ThroughputRPS  float64      `json:"throughput_rps"` // answers per second
	OKRPS          float64      `json:"ok_rps"`         // 200 answers per second
	LatencyMs      percentiles  `json:"latency_ms"`
	ServiceTimeMs  *percentiles `json:"service_time_ms,omitempty"`
	SendLagMs      *percentiles `json:"send_lag_ms,omitempty"`
	Late           *int64       `json:"late,omitempty"`
	LateThreshold  float64      `json:"late_threshold_ms,omitempty"`
	MaxInflight    int64        `json:"max_inflight,omitempty"`
	PoolExhausted  bool         `json:"pool_exhausted"`
	Histogram      []bucket     `json:"histogram"`
	PerSecond      []second     `json:"per_second"`
}

type loadgenInfo struct {
	GoVersion        string  `json:"go_version"`
	GOMAXPROCS       int     `json:"gomaxprocs"`
	CPUUserSeconds   float64 `json:"cpu_user_seconds"`
	CPUSystemSeconds float64 `json:"cpu_system_seconds"`
	MaxRSSKiB        int64   `json:"max_rss_kib"`
}

type result struct {
	Label         string           `json:"label,omitempty"`
	Mode          string           `json:"mode"`
	URL           string           `json:"url"`
	Connections   int              `json:"connections"`
	Rate          float64          `json:"rate,omitempty"`
	Arrivals      string           `json:"arrivals,omitempty"`
	Duration      float64          `json:"duration_seconds"`
	Warmup        float64          `json:"warmup_seconds"`
	Payloads      int              `json:"payloads"`
	Scheduled     int64            `json:"scheduled,omitempty"`
	Sent          int64            `json:"sent"`     // requests (partly) written, warm-up included
	Answered      int64            `json:"answered"` // responses received, warm-up included
	ByStatus      map[string]int64 `json:"by_status"`
	Errors        map[string]int64 `json:"errors"`
	OKByKind      map[string]int64 `json:"ok_by_kind"`
	SentByKind    map[string]int64 `json:"sent_by_kind"`
	SentByPayload []int64          `json:"sent_by_payload"`
	OKByPayload   []int64          `json:"ok_by_payload"`
	Measured      measured         `json:"measured"`
	Loadgen       loadgenInfo      `json:"loadgen"`
}

var bucketBoundsMs = []float64{0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 200, 500, 1000, 2000, 5000, 10000}

// collect merges the workers' accounting. Rates are over the longer of the nominal window and
// the time until the last answer arrived: a server that falls behind an open-loop schedule
// finishes late, and its rate must show that rather than the offered one.
func collect(cfg *runConfig, payloads []payload, stats []*workerStats, window, elapsed time.Duration) *result {
	res := &result{
		Mode:          cfg.mode,
		URL:           cfg.target.String(),
		Connections:   cfg.connections,
		Duration:      cfg.duration.Seconds(),
		Warmup:        cfg.warmup.Seconds(),
		Payloads:      len(payloads),
		ByStatus:      map[string]int64{},
		Errors:        map[string]int64{},
		OKByKind:      map[string]int64{},
		SentByKind:    map[string]int64{},
		SentByPayload: make([]int64, len(payloads)),
		OKByPayload:   make([]int64, len(payloads)),
	}
	if cfg.mode == "open" {
		res.Rate = cfg.rate
		res.Arrivals = cfg.arrivals
	}
	for _, name := range errKindNames {
		res.Errors[name] = 0
	}
	var all []sample
	var late int64
	for _, st := range stats {
		for code, c := range st.byStatus {
			res.ByStatus[strconv.Itoa(code)] += c
			res.Answered += c
		}
		for k, c := range st.errors {
			res.Errors[errKindNames[k]] += c
		}
		for p := range payloads {
			res.SentByPayload[p] += st.sent[p]
			res.OKByPayload[p] += st.ok[p]
		}
		res.Measured.Errors += st.errorsMeasured
		late += st.late
		all = append(all, st.samples...)
	}
	for p, pl := range payloads {
		res.OKByKind[pl.kind] += res.OKByPayload[p]
		res.SentByKind[pl.kind] += res.SentByPayload[p]
		res.Sent += res.SentByPayload[p]
	}

	m := &res.Measured
	m.WindowSeconds = window.Seconds()
	m.ElapsedSeconds = elapsed.Seconds()
	m.Completed = int64(len(all))
	for _, s := range all {
		if s.status == 200 {
			m.OK++
		}
	}
	if span := max(window, elapsed); span > 0 {
		m.ThroughputRPS = float64(m.Completed) / span.Seconds()
		m.OKRPS = float64(m.OK) / span.Seconds()
	}
	vals := make([]int64, len(all))
	for i, s := range all {
		vals[i] = s.lat
	}
	m.LatencyMs = percentilesOf(vals)
	m.Histogram = histogram(vals)
	if cfg.mode == "open" {
		for i, s := range all {
			vals[i] = s.svc
		}
		svc := percentilesOf(vals)
		m.ServiceTimeMs = &svc
		for i, s := range all {
			vals[i] = s.lag
		}
		lag := percentilesOf(vals)
		m.SendLagMs = &lag
		m.Late = &late
		m.LateThreshold = ms(int64(cfg.lateThreshold))
	}
	m.PerSecond = perSecond(all)
	return res
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// percentilesOf sorts vals in place; nearest-rank percentiles, in milliseconds.
func percentilesOf(vals []int64) percentiles {
	if len(vals) == 0 {
		return percentiles{}
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	var sum float64
	for _, v := range vals {
		sum += float64(v)
	}
	at := func(p float64) float64 {
		rank := int(p/100*float64(len(vals))+0.999999999) - 1
		if rank < 0 {
			rank = 0
		}
		if rank >= len(vals) {
			rank = len(vals) - 1
		}
		return ms(vals[rank])
	}
	return percentiles{
		Min: ms(vals[0]), Mean: sum / float64(len(vals)) / 1e6,
		P50: at(50), P75: at(75), P90: at(90), P99: at(99), P999: at(99.9), P9999: at(99.99),
		Max: ms(vals[len(vals)-1]),
	}
}

func histogram(sorted []int64) []bucket {
	out := make([]bucket, len(bucketBoundsMs)+1)
	for i, b := range bucketBoundsMs {
		out[i].LeMs = b
	}
	i := 0
	for _, v := range sorted {
		for i < len(bucketBoundsMs) && ms(v) > bucketBoundsMs[i] {
			i++
		}
		out[i].Count++
	}
	return out
}

func perSecond(all []sample) []second {
	if len(all) == 0 {
		return []second{}
	}
	groups := map[int][]int64{}
	oks := map[int]int64{}
	maxT := 0
	for _, s := range all {
		t := int(s.done / int64(time.Second))
		if t < 0 {
			t = 0
		}
		groups[t] = append(groups[t], s.lat)
		if s.status == 200 {
			oks[t]++
		}
		if t > maxT {
			maxT = t
		}
	}
	out := make([]second, 0, maxT+1)
	for t := 0; t <= maxT; t++ {
		g := groups[t]
		sec := second{T: t, Done: int64(len(g)), OK: oks[t]}
		if len(g) > 0 {
			p := percentilesOf(g)
			sec.P50Ms, sec.P99Ms, sec.MaxMs = p.P50, p.P99, p.Max
		}
		out = append(out, sec)
	}
	return out
}

// ---------------------------------------------------------------------------------------------
// null-server: answers 200 to every request, as cheaply as possible, to measure the generator's
// own ceiling (run it pinned to the other core).

func cmdNullServer(args []string) error {
	fs := flag.NewFlagSet("null-server", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveNull(conn)
	}
}

func serveNull(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReaderSize(conn, 16<<10)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	for {
		length := int64(0)
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		_ = line
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if colon := strings.IndexByte(string(line), ':'); colon > 0 &&
				strings.EqualFold(string(line[:colon]), "content-length") {
				if n, ok := parseDecimal([]byte(strings.TrimSpace(string(line[colon+1:])))); ok {
					length = n
				}
			}
		}
		if _, err := br.Discard(int(length)); err != nil {
			return
		}
		if _, err := conn.Write(resp); err != nil {
			return
		}
	}
}
